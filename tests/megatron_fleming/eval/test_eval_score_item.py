"""`score_item` and `with_judge` field by field on hand-made items (found by mutation testing:
the rule names, the parsed answer and the metrics each item's score row carries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.benchmarks.items import BenchItem
from megatron_fleming.eval.metrics import rouge_l
from megatron_fleming.eval.scoring import RULES, score_item, with_judge


def item(task: str, answer: str, **kw) -> BenchItem:
    return BenchItem(benchmark="b", qid="1", split="test", task=task, media=(Path("i.png"),),
                     question="q", answer=answer, **kw)


@pytest.mark.parametrize("task", ["report", "summary"])
def test_reports_and_summaries_are_scored_by_rouge(task):
    ref = "no acute findings in the chest"
    got = score_item(item(task, ref), "  no acute findings  \n")
    assert (got.rule, got.parsed, got.correct) == ("report", "no acute findings", None)
    assert got.metrics == {"rouge_l": rouge_l("  no acute findings  \n", ref)} and 0 < got.score < 1


def test_multiple_choice_keeps_the_letter_and_the_nearest_similarity():
    mcq = item("mcq", "B", options=("pneumonia", "pleural effusion", "fracture"), answer_letter="B")
    got = score_item(mcq, "The answer is B.")
    assert (got.rule, got.parsed, got.correct, got.metrics) == ("mcq_letter", "B", True, {})
    near = score_item(mcq, "pleural efusion present")
    assert (near.rule, near.parsed, near.correct) == ("mcq_nearest", "B", True)
    assert set(near.metrics) == {"similarity"} and 0 < near.metrics["similarity"] < 1


def test_yes_no_and_exact_keep_what_was_read():
    got = score_item(item("vqa", "yes"), "No, there is not.")
    assert (got.rule, got.parsed, got.correct) == ("yes_no", "no", False)
    got = score_item(item("vqa", "Left lung"), "left lung.")
    assert (got.rule, got.correct) == ("exact", True) and got.parsed == "left lung"
    assert set(RULES) >= {"report", "yes_no", "exact", "judge", "mcq_letter", "mcq_nearest"}


def test_the_judge_replaces_only_the_verdict():
    base = score_item(item("vqa", "Left lung"), "the right lung")
    judged = with_judge(base, True, {"raw": "<judge>0</judge>"})
    assert (judged.rule, judged.parsed, judged.correct) == ("judge", base.parsed, True)
    assert judged.metrics == base.metrics and judged.metrics is not base.metrics
    assert judged.judge == {"raw": "<judge>0</judge>", "verdict": True, "exact_match": False}
    assert with_judge(base, None, {}).correct is False  # no usable verdict: wrong


def test_metrics_of_nothing():
    from megatron_fleming.eval.metrics import cider, tokenize

    assert tokenize("") == [] and tokenize("CT: 3 肺结节") == ["ct", "3", "肺", "结", "节"]
    assert cider([], []) == (0.0, [])
    with pytest.raises(ValueError, match=r"^2 predictions for 1 references$"):
        cider(["a", "b"], ["a"])
