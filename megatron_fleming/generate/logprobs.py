"""Trainer-side log-probabilities of given tokens: the figure rollout log-probs are checked against.

`token_logprobs` works on the vocabulary-parallel logits a training forward produces on the last
pipeline stage (no gather of the vocabulary: megatron's `vocab_parallel_cross_entropy` of
logits / T, padded-vocabulary rows masked): the training cross-entropy at temperature T, which is
the convention of the log-probs the engine returns (see `sampling`), so for the tokens a rollout
produced the two are equal up to float rounding.
`sequence_logprobs` runs the training forward (megatron's forward-only schedule, any TP/PP) for a
batch and returns them.
"""

from __future__ import annotations

import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_fleming.generate.sampling import TokenMask
from megatron_fleming.model.parallel import unwrap

IGNORE_INDEX = -100


def token_mask(model: torch.nn.Module) -> TokenMask:
    cfg = unwrap(model).cfg
    return TokenMask(cfg.language.vocab_size, (cfg.image_context_token_id,))


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, temperature: float,
                   mask: TokenMask) -> torch.Tensor:
    """log softmax(logits / T)[label] for vocabulary-parallel logits [b, s, V / TP] and next-token
    targets [b, s]; 0 where the label is IGNORE_INDEX. T = 0 (greedy) counts as 1."""
    width = logits.shape[-1]
    first = width * parallel_state.get_tensor_model_parallel_rank()
    scaled = mask.padding(logits.float(), first) / (temperature if temperature > 0 else 1.0)
    targets = labels.clamp(min=0)
    loss = tensor_parallel.vocab_parallel_cross_entropy(
        scaled.transpose(0, 1).contiguous(), targets.transpose(0, 1).contiguous()).transpose(0, 1)
    return -loss * (labels != IGNORE_INDEX)


def sequence_logprobs(model: torch.nn.Module, input_ids: torch.Tensor,
                      pixel_values: torch.Tensor | None, labels: torch.Tensor, *,
                      temperature: float, **forward_kwargs) -> torch.Tensor | None:
    """Per-token log-probs [b, s] of `labels` (next-token targets aligned with `input_ids`,
    IGNORE_INDEX where not wanted) under the training forward at temperature T.

    Runs megatron's forward-only schedule over this rank's stage (`forward_kwargs`, e.g.
    `cu_seqlens` or `position_ids`, go to `FlemingVLM.forward`); the result is on the last
    pipeline stage, None on the others.
    """
    inner = unwrap(model)
    mask = token_mask(inner)
    first = parallel_state.is_pipeline_first_stage(ignore_virtual=True)
    last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)

    def step(data_iterator, chunk):
        ids, pixels = next(data_iterator)
        logits = chunk(ids, pixels if first else None, **forward_kwargs)
        return (token_logprobs(logits, labels, temperature, mask) if last else logits), None

    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad():
            outputs = get_forward_backward_func()(
                forward_step_func=step, data_iterator=iter([(input_ids, pixel_values)]),
                model=[model], num_microbatches=1, seq_length=input_ids.shape[1],
                micro_batch_size=input_ids.shape[0], forward_only=True)
    finally:
        inner.train(was_training)
    return outputs[0] if last else None
