"""The GRPO objective per token, and how token losses become one number per mini-batch.

For a response token with log-probability ``logp`` under the policy being trained, ``old`` under
the policy that sampled it (the rollout's own log-prob, recorded at sampling time) and ``ref``
under the frozen reference, and its sequence's advantage ``A``::

    ratio = exp(logp - old)
    pg    = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)        (PPO's clipped surrogate)
    kl    = exp(ref - logp) - (ref - logp) - 1                         (k3, Schulman's estimator)
    loss  = pg + beta * kl

Both log-ratios are clamped to +-20 before ``exp`` (`MAX_LOG_RATIO`). k3 is unbiased for
KL(policy || reference), never negative, and what verl (``low_var_kl``),
NeMo-RL and Megatron-RL use; k1 (``logp - ref``) and k2 (``(logp - ref)^2 / 2``) are there for
comparison. Aggregation over a mini-batch:

* ``token-mean``: the sum of token losses over every response token of the mini-batch (all
  micro-batches, all data-parallel ranks) divided by their number (DAPO's choice; long answers
  weigh more);
* ``seq-mean-token-mean``: each sequence's mean token loss, averaged over sequences (the GRPO
  paper's 1/G sum_i 1/|o_i| sum_t).

Both are "a sum over this micro-batch, divided by a count summed over the global mini-batch", which
is exactly megatron's per-token-loss contract (``calculate_per_token_loss``): `aggregate` returns
the pair and megatron's `finalize_model_grads` divides by the global count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]
Aggregation = Literal["token-mean", "seq-mean-token-mean"]
KL_ESTIMATORS = ("k1", "k2", "k3")
AGGREGATIONS = ("token-mean", "seq-mean-token-mean")


#: Log-ratios are clamped to +-this before they are exponentiated (as verl does): a token the
#: policy has made 1e-9 times as likely as the reference would otherwise overflow fp32 to inf.
MAX_LOG_RATIO = 20.0


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
               estimator: KLEstimator = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the two log-probs of sampled tokens."""
    diff = (ref_logprobs - logprobs).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    if estimator == "k3":
        return torch.exp(diff) - diff - 1
    if estimator == "k2":
        return 0.5 * diff * diff
    if estimator == "k1":
        return -diff
    raise ValueError(f"KL estimator {estimator!r}: use one of {KL_ESTIMATORS}")


@dataclass(frozen=True)
class TokenLosses:
    """Per-token tensors, all shaped like the log-probs."""

    loss: torch.Tensor  # pg + beta * kl
    kl: torch.Tensor
    ratio: torch.Tensor
    clipped: torch.Tensor  # bool: the clipped term was the one taken (no gradient flows)


def grpo_token_losses(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                      ref_logprobs: torch.Tensor, advantages: torch.Tensor, *,
                      clip_eps: float, kl_coef: float,
                      kl_estimator: KLEstimator = "k3") -> TokenLosses:
    """The objective above, token by token; `advantages` broadcast against the log-probs."""
    ratio = torch.exp((logprobs - old_logprobs).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO))
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    pg = -torch.minimum(unclipped, clipped)
    kl = kl_penalty(logprobs, ref_logprobs, kl_estimator)
    loss = pg + kl_coef * kl if kl_coef else pg
    return TokenLosses(loss=loss, kl=kl, ratio=ratio, clipped=clipped < unclipped)


def aggregate(token_loss: torch.Tensor, mask: torch.Tensor, sequence: torch.Tensor,
              aggregation: Aggregation) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) of this micro-batch; the mini-batch loss is sum / count over all of it.

    `mask` (float, like `token_loss`) is 1 on the response tokens that count; `sequence` (long,
    same shape) numbers the sequences (0, 1, ...; packed rows hold several), -1 where no
    sequence. ``token-mean``: (sum of masked losses, masked tokens). ``seq-mean-token-mean``:
    (sum over sequences of their masked mean, sequences with at least one masked token).
    """
    if aggregation == "token-mean":
        return (token_loss * mask).sum(), mask.sum()
    if aggregation != "seq-mean-token-mean":
        raise ValueError(f"aggregation {aggregation!r}: use one of {AGGREGATIONS}")
    flat = sequence.reshape(-1)
    n = int(flat.max()) + 1 if flat.numel() else 0
    index = flat.clamp(min=0)
    weights = mask.reshape(-1) * (flat >= 0)
    sums = torch.zeros(n, dtype=token_loss.dtype, device=token_loss.device).index_add(
        0, index, (token_loss.reshape(-1) * weights))
    counts = torch.zeros(n, dtype=token_loss.dtype, device=token_loss.device).index_add(
        0, index, weights.to(token_loss.dtype))
    present = counts > 0
    per_sequence = sums[present] / counts[present]
    return per_sequence.sum(), present.sum().to(token_loss.dtype)
