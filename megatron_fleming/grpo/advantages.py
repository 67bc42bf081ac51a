"""Group-relative advantages: each prompt's N rewards normalised within their own group.

GRPO has no value model; the baseline of a sample is the mean reward of the other samples drawn
for the same prompt, and the scale is their spread: ``A = (r - mean) / (std + eps)``. The std is
the population std (``ddof=0``, Megatron-RL's choice, with eps 1e-4) or the unbiased one
(``ddof=1``), by config. A group whose rewards are all equal carries no signal (every advantage
is 0): it is *skipped* — left out of the update, which then spends nothing on it — and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

StdKind = Literal["population", "unbiased"]


@dataclass(frozen=True)
class GroupAdvantages:
    """Advantages [P, N] (0 in skipped groups) and which groups were skipped [P] (bool)."""

    advantages: torch.Tensor
    skipped: torch.Tensor

    @property
    def num_skipped(self) -> int:
        return int(self.skipped.sum())


def group_advantages(rewards: torch.Tensor, *, std: StdKind = "population",
                     eps: float = 1e-4) -> GroupAdvantages:
    """`rewards` [P prompts, N samples] -> advantages normalised within each row.

    A row is skipped when all its rewards are exactly equal (its std is 0: no sample is better
    than another). Computed in float64, returned in the rewards' dtype.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [prompts, samples], got shape {tuple(rewards.shape)}")
    if std not in ("population", "unbiased"):
        raise ValueError(f"std {std!r}: use 'population' or 'unbiased'")
    n = rewards.shape[1]
    if std == "unbiased" and n < 2:
        raise ValueError("the unbiased std needs at least 2 samples per prompt")
    if eps < 0:
        raise ValueError(f"eps ({eps}) must be >= 0")
    r = rewards.double()
    mean = r.mean(dim=1, keepdim=True)
    spread = r.std(dim=1, keepdim=True, correction=1 if std == "unbiased" else 0)
    skipped = (r == r[:, :1]).all(dim=1)
    advantages = (r - mean) / (spread + eps)
    advantages[skipped] = 0.0
    return GroupAdvantages(advantages.to(rewards.dtype), skipped)
