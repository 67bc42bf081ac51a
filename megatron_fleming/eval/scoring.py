"""The scoring rule of each item, and its score.

| item | rule | correct when |
|---|---|---|
| VQA, reference yes/no (是/否) | ``yes_no`` | exactly one polarity in the answer span, the reference's |
| VQA, any other reference | ``exact`` | the normalised answer span equals the normalised reference |
| — the same, with a judge configured | ``judge`` | the judge says ``<judge>0</judge>`` |
| multiple choice | ``mcq_letter`` / ``mcq_text`` / ``mcq_nearest`` | the picked option is the right one |
| report, video summary | ``report`` | (no accuracy: ROUGE-L per item, CIDEr over the set) |

The judge sees only questions the rule leaves to it (non-yes/no VQA answers): closed yes/no
questions keep their rule whether or not a judge is configured (MedEvalKit issue 30: its PathVQA
scores every closed question wrong with the judge on, its SLAKE sends every question to the
judge). A judge that gives no verdict scores the item wrong and is counted (``judge_failed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datakit.benchmarks.items import BenchItem
from megatron_fleming.eval.answers import exact_match, judge_yes_no, match_choice, polarity
from megatron_fleming.eval.metrics import rouge_l

RULES = ("yes_no", "exact", "judge", "mcq_letter", "mcq_text", "mcq_nearest", "mcq_none", "report")


@dataclass(slots=True, kw_only=True)
class ItemScore:
    rule: str
    parsed: str | None
    correct: bool | None  # None for reports and summaries
    metrics: dict[str, float] = field(default_factory=dict)
    judge: dict[str, Any] | None = None

    @property
    def score(self) -> float:
        if self.correct is not None:
            return float(self.correct)
        return self.metrics.get("rouge_l", 0.0)


def wants_judge(item: BenchItem) -> bool:
    """Whether a configured judge decides this item (non-yes/no VQA answers only)."""
    return item.task == "vqa" and polarity(item.answer) is None


def score_item(item: BenchItem, response: str) -> ItemScore:
    """The rule-based score (the judge, when configured, replaces ``exact`` afterwards)."""
    if item.task in ("report", "summary"):
        return ItemScore(rule="report", parsed=response.strip(), correct=None,
                         metrics={"rouge_l": rouge_l(response, item.answer)})
    if item.task == "mcq":
        choice = match_choice(response, item.options)
        extra = {"similarity": choice.similarity} if choice.similarity is not None else {}
        return ItemScore(rule=f"mcq_{choice.rule}", parsed=choice.letter,
                         correct=choice.letter == item.answer_letter, metrics=extra)
    if polarity(item.answer) is not None:
        ok, got = judge_yes_no(item.answer, response)
        return ItemScore(rule="yes_no", parsed=got, correct=ok)
    ok, got = exact_match(item.answer, response)
    return ItemScore(rule="exact", parsed=got, correct=ok)


def with_judge(base: ItemScore, verdict: bool | None, detail: dict[str, Any]) -> ItemScore:
    """The item's score once the judge has answered (``verdict`` None: no usable verdict)."""
    return ItemScore(rule="judge", parsed=base.parsed, correct=bool(verdict), metrics=dict(base.metrics),
                     judge={**detail, "verdict": verdict, "exact_match": base.correct})
