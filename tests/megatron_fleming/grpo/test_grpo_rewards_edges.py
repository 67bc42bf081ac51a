"""Edges of the GRPO rewards without a judge (found by mutation testing): multi-line reasoning
fits the template, only multiple-choice prompts are read as letters, an unreadable reference
earns nothing and is counted, every count adds up, the tensors are float64."""

from __future__ import annotations

import pytest
import torch

from megatron_fleming.grpo.rewards import AnswerKey, RewardScorer

OPTIONS = ("pneumonia", "effusion")


def test_reasoning_over_several_lines_fits_the_template():
    scorer = RewardScorer(format_weight=1.0, accuracy_weight=0.0)
    out = scorer.score([AnswerKey("mcq", "A", OPTIONS)], ["<think>first line\nsecond line</think>\n<answer>A\n</answer>"])
    assert out.format.tolist() == [1.0]


def test_counts_and_dtypes():
    scorer = RewardScorer(format_weight=0.5, accuracy_weight=1.0)
    keys = [AnswerKey("mcq", "Z", OPTIONS)] * 2  # a reference that names no option
    keys += [AnswerKey("open", "pneumonia", OPTIONS)] * 2  # options, but not a multiple-choice prompt
    keys += [AnswerKey("open", "Left lung")] * 2
    responses = ["A", "B", "A", "pneumonia", "left lung", "right lung"]
    out = scorer.score(keys, responses)
    assert out.accuracy.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert out.counts == {"mcq_reference_unreadable": 2, "open_exact": 2, "open_unjudged": 2}
    assert out.format.dtype == out.accuracy.dtype == out.total.dtype == torch.float64
    with pytest.raises(ValueError, match=r"^1 answer keys for 2 responses$"):
        scorer.score(keys[:1], responses[:2])
