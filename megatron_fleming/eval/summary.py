"""``summary.json`` of one benchmark: accuracy overall and broken down, generation metrics.

Accuracy (questions: VQA and multiple choice) is given overall and per answer type
(``closed``/``open``, as the release labels them), language, modality, question type and scoring
rule, wherever items carry that field. Generation (reports, video summaries) is the mean
ROUGE-L and the corpus CIDEr. ``headline`` holds the numbers Table 3 reports, in percent.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

from datakit.benchmarks.items import BenchItem
from megatron_fleming.eval.scoring import ItemScore


def _accuracy(pairs: Sequence[tuple[BenchItem, ItemScore]]) -> dict[str, Any]:
    n = len(pairs)
    right = sum(bool(s.correct) for _, s in pairs)
    return {"n": n, "correct": right, "accuracy": right / n if n else None}


def _by(pairs: Sequence[tuple[BenchItem, ItemScore]], key: Callable[[BenchItem, ItemScore], Any]) -> dict[str, Any]:
    groups: dict[str, list] = defaultdict(list)
    for item, score in pairs:
        value = key(item, score)
        if value is not None:
            groups[str(value)].append((item, score))
    return {k: _accuracy(v) for k, v in sorted(groups.items())}


def summarise(name: str, split: str, items: Sequence[BenchItem], scores: Sequence[ItemScore], *,
              corpus_cider: dict[str, float], skipped: Sequence[tuple[str, str]] = (), missing: int = 0,
              judge: dict[str, Any] | None = None) -> dict[str, Any]:
    qa = [(i, s) for i, s in zip(items, scores) if s.correct is not None]
    gen = [(i, s) for i, s in zip(items, scores) if s.correct is None]
    out: dict[str, Any] = {"benchmark": name, "split": split, "n_items": len(items),
                           "skipped_rows": len(skipped), "skipped_examples": [f"{w}: {r}" for w, r in skipped[:5]],
                           "missing_responses": missing}
    headline: dict[str, float] = {}
    if qa:
        out["accuracy"] = _accuracy(qa)
        out["by_answer_type"] = _by(qa, lambda i, s: i.answer_type)
        out["by_lang"] = _by(qa, lambda i, s: i.lang)
        out["by_modality"] = _by(qa, lambda i, s: i.modality)
        out["by_question_type"] = _by(qa, lambda i, s: i.extra.get("question_type"))
        out["by_rule"] = _by(qa, lambda i, s: s.rule)
        out["judge_failed"] = sum(1 for _, s in qa if s.judge is not None and s.judge.get("verdict") is None)
        headline["accuracy"] = 100.0 * out["accuracy"]["accuracy"]
    if gen:
        by_task: dict[str, Any] = {}
        for task in sorted({i.task for i, _ in gen}):
            rows = [s for i, s in gen if i.task == task]
            by_task[task] = {"n": len(rows), "rouge_l": sum(s.metrics["rouge_l"] for s in rows) / len(rows),
                             "cider": corpus_cider[task]}
        out["generation"] = by_task
        for task, m in by_task.items():
            headline[f"{task}_rouge_l"] = 100.0 * m["rouge_l"]
            headline[f"{task}_cider"] = 100.0 * m["cider"]
    out["headline"] = headline
    out["judge"] = judge
    return out
