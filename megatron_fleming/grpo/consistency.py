"""Rollout-vs-trainer log-prob consistency: measured every step instead of hoped for.

The rollout records each sampled token's log-prob as the engine computed it (KV cache, one token
per step); before the step's first update the trainer recomputes the same tokens' log-probs with
its own forward (packed sequences, the same weights). With the same V2PE positions and weights
these agree to float rounding; a position mismatch, a stale weight or a different temperature
shows up at once. Reported: mean and max |delta| and the token-probability error ratio
``mean(exp|delta|)`` (1 when identical; NeMo-RL's multiplicative probability error). Past
``grpo.max_logprob_error_ratio`` the run stops with `LogprobDriftError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class LogprobDriftError(RuntimeError):
    """The trainer and the rollout disagree on the sampled tokens' log-probs beyond the limit."""


@dataclass(frozen=True)
class Drift:
    tokens: int
    mean_abs: float
    max_abs: float
    error_ratio: float  # mean exp|delta|

    @classmethod
    def from_sums(cls, tokens: float, abs_sum: float, abs_max: float, exp_sum: float) -> Drift:
        if tokens <= 0:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(int(tokens), abs_sum / tokens, abs_max, exp_sum / tokens)


def drift_sums(trainer: torch.Tensor, rollout: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[tokens, sum |d|, max |d|, sum exp|d|] (float64) over the masked tokens."""
    counted = mask > 0
    delta = (trainer.double() - rollout.double()).abs()[counted]
    if delta.numel() == 0:
        return torch.zeros(4, dtype=torch.float64)
    return torch.stack([torch.tensor(float(delta.numel()), dtype=torch.float64), delta.sum(),
                        delta.max(), delta.exp().sum()])


def check_drift(drift: Drift, limit: float | None, iteration: int) -> None:
    if limit is None or drift.tokens == 0 or drift.error_ratio <= limit:
        return
    raise LogprobDriftError(
        f"iteration {iteration}: the trainer's log-probs of the sampled tokens differ from the "
        f"rollout's: mean |delta| {drift.mean_abs:.3e}, max {drift.max_abs:.3e}, error ratio "
        f"{drift.error_ratio:.7f} > grpo.max_logprob_error_ratio {limit} over {drift.tokens} "
        "tokens. Rollout and trainer no longer compute the same policy (positions, weights, "
        "temperature, precision); raise the limit only if this drift is understood")
