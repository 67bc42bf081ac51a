"""The GRPO loss inside megatron's schedules: forward step, loss function, per-token statistics.

`forward_step` feeds a `MicroBatch` through the model (logits [1, T, V / TP] on the last pipeline
stage) and hands megatron `GRPOObjective` as the loss function: the policy's log-probs of the
sampled tokens at the rollout temperature (`generate.logprobs.token_logprobs`, the engine's
convention, vocabulary-parallel), the per-token loss of `loss`, and ``(sum, count)`` for
megatron's per-token-loss reduction. Tokens outside the mask (prompt, padding, stand-ins) see
the old log-prob in place of the policy's, so no inf or NaN from them can reach the gradient.

Alongside, each micro-batch reports sums for the step's metrics: masked tokens, k3 KL, clipped
tokens, entropy (of softmax(logits / T), under no_grad), the loss numerator and denominator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Iterator

import torch
from megatron.core import parallel_state

from megatron_fleming.generate.logprobs import token_logprobs
from megatron_fleming.generate.sampling import TokenMask
from megatron_fleming.grpo.batches import MicroBatch
from megatron_fleming.grpo.loss import Aggregation, KLEstimator, aggregate, grpo_token_losses

#: Name of the statistics vector each micro-batch reports to the schedule, and its entries.
STATS_KEY = "grpo"
STATS = ("tokens", "kl", "clipped", "entropy", "loss_sum", "loss_count")


@torch.no_grad()
def vocab_parallel_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy [b, s] of softmax over the whole vocabulary from its tensor-parallel shard [b, s,
    V / TP] (-inf columns allowed)."""
    group = parallel_state.get_tensor_model_parallel_group()
    top = logits.max(dim=-1, keepdim=True).values
    torch.distributed.all_reduce(top, op=torch.distributed.ReduceOp.MAX, group=group)
    shifted = logits - top
    weights = shifted.exp()
    total = weights.sum(dim=-1)
    weighted = torch.where(weights > 0, weights * shifted, torch.zeros_like(shifted)).sum(dim=-1)
    sums = torch.stack([total, weighted])
    torch.distributed.all_reduce(sums, group=group)
    return sums[0].log() - sums[1] / sums[0]


@dataclass(frozen=True)
class GRPOObjective:
    temperature: float
    mask: TokenMask
    clip_eps: float
    kl_coef: float
    kl_estimator: KLEstimator
    aggregation: Aggregation

    def __call__(self, mb: MicroBatch, logits: torch.Tensor):
        labels = mb.batch.labels
        logp = token_logprobs(logits, labels, self.temperature, self.mask)
        counted = mb.mask > 0
        logp = torch.where(counted, logp, mb.old_logprobs)
        out = grpo_token_losses(logp, mb.old_logprobs, mb.ref_logprobs, mb.advantages,
                                clip_eps=self.clip_eps, kl_coef=self.kl_coef,
                                kl_estimator=self.kl_estimator)
        total, count = aggregate(out.loss, mb.mask, mb.sequence, self.aggregation)
        with torch.no_grad():
            first = logits.shape[-1] * parallel_state.get_tensor_model_parallel_rank()
            scaled = self.mask.padding(logits.detach().float(), first) / self.temperature
            entropy = vocab_parallel_entropy(scaled)
            m = mb.mask
            stats = torch.stack([m.sum(), (out.kl * m).sum(), (out.clipped.float() * m).sum(),
                                 (entropy * m).sum(), total.detach(), count.detach()]).double()
        # megatron sums the counts into an int tensor; both aggregations count whole things.
        return total, count.round().to(torch.int), {STATS_KEY: stats}


def forward_step(objective: GRPOObjective, data_iterator: Iterator[MicroBatch],
                 model: torch.nn.Module):
    """megatron's forward-step contract for a GRPO update micro-batch."""
    mb = next(data_iterator)
    b = mb.batch
    logits = model(b.input_ids, b.pixel_values, position_ids=b.position_ids,
                   cu_seqlens=b.cu_seqlens)
    return logits, partial(objective, mb)


def objective_forward_step(objective: GRPOObjective):
    return partial(forward_step, objective)
