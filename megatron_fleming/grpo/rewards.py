"""Verifiable rewards of a rollout: a format reward plus an accuracy reward, weighted.

* format: 1 when the whole response fits the configured template — by default one
  ``<think>…</think>`` then one ``<answer>…</answer>``, nothing else — else 0.
* accuracy, by the prompt's question type, with the evaluation harness's own answer parsing
  (`megatron_fleming.eval.answers`, one parser for both):

  - multiple choice: the option letter read from the response (A–E..., alone or named by a
    common English or Chinese phrase) or an option's exact text, equal to the reference's; the
    evaluation's "most similar option" fallback is off here, so a guess earns nothing;
  - yes/no references: exactly one polarity stated, and it is the reference's;
  - open: 1 on an exact match after normalisation; otherwise the LLM judge decides (through
    datakit's LLM layer: any OpenAI-compatible endpoint, cached on disk, concurrent). A judge
    timeout, an error or a reply without a verdict gives 0 and is counted by reason; with no
    judge configured, a non-exact open answer gives 0 and is counted as ``open_unjudged``.

The total is ``format_weight * format + accuracy_weight * accuracy``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch

from megatron_fleming.eval.answers import (
    exact_match,
    judge_yes_no,
    match_choice,
    polarity,
    reference_letter,
)
from megatron_fleming.eval.judge import Judge

#: The default format: reasoning in <think>, then the answer in <answer>, each once, nothing else.
THINK_ANSWER = (r"\s*<think>(?:(?!</?think>|</?answer>).)+</think>\s*"
                r"<answer>(?:(?!</?think>|</?answer>).)+</answer>\s*")


@dataclass(frozen=True)
class AnswerKey:
    """What a response is scored against: the prompt's question type, reference answer, options
    (multiple choice) and question text (for the judge)."""

    question_type: str
    answer: str
    options: tuple[str, ...] = ()
    question: str = ""


@dataclass
class Rewards:
    """Per-response components and total, and how each accuracy was decided (counts)."""

    format: torch.Tensor  # [n] float64, 0 or 1
    accuracy: torch.Tensor  # [n] float64, 0 or 1
    total: torch.Tensor  # [n] float64
    counts: Counter = field(default_factory=Counter)


class RewardScorer:
    """Scores responses; one judge (client, cache, budget) for the whole run, or none."""

    def __init__(self, *, format_weight: float, accuracy_weight: float,
                 format_pattern: str = THINK_ANSWER, judge: Judge | None = None) -> None:
        self.format_weight = format_weight
        self.accuracy_weight = accuracy_weight
        self.template = re.compile(format_pattern, re.S)
        self.judge = judge

    def format_reward(self, response: str) -> float:
        return 1.0 if self.template.fullmatch(response) else 0.0

    def _direct(self, key: AnswerKey, response: str, counts: Counter) -> float | None:
        """Accuracy decided without the judge, or None when only the judge can decide."""
        if key.question_type == "mcq" and key.options:
            want = reference_letter(key.answer, key.options)
            if want is None:
                counts["mcq_reference_unreadable"] += 1
                return 0.0
            counts["mcq"] += 1
            return float(match_choice(response, key.options, nearest=False).letter == want)
        if polarity(key.answer) is not None:
            counts["yes_no"] += 1
            return float(judge_yes_no(key.answer, response)[0])
        if exact_match(key.answer, response)[0]:
            counts["open_exact"] += 1
            return 1.0
        if self.judge is None:
            counts["open_unjudged"] += 1
            return 0.0
        return None

    def score(self, keys: Sequence[AnswerKey], responses: Sequence[str]) -> Rewards:
        if len(keys) != len(responses):
            raise ValueError(f"{len(keys)} answer keys for {len(responses)} responses")
        counts: Counter = Counter()
        fmt = torch.tensor([self.format_reward(r) for r in responses], dtype=torch.float64)
        accuracy = torch.zeros(len(responses), dtype=torch.float64)
        to_judge = []
        for i, (key, response) in enumerate(zip(keys, responses)):
            direct = self._direct(key, response, counts)
            if direct is None:
                to_judge.append(i)
            else:
                accuracy[i] = direct
        if to_judge:
            triples = [(keys[i].question, keys[i].answer, responses[i]) for i in to_judge]
            for i, (verdict, detail) in zip(to_judge, self.judge.compare(triples)):
                if verdict is None:
                    counts[f"judge_failed_{detail.get('failure', 'unknown')}"] += 1
                else:
                    counts["judge_correct" if verdict else "judge_incorrect"] += 1
                    accuracy[i] = float(verdict)
        total = self.format_weight * fmt + self.accuracy_weight * accuracy
        return Rewards(format=fmt, accuracy=accuracy, total=total, counts=counts)
