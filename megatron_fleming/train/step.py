"""One micro-batch through `FlemingVLM` for megatron's schedules: forward step and per-token loss.

megatron's `get_forward_backward_func` calls `forward_step(data_iterator, model)` once per
micro-batch on every pipeline stage (each stage draws the same `VLMBatch`: the first uses tokens
and pixels, every stage the V2PE positions and packing bounds, the last the targets). The loss
function returns the *sum* of token losses, the number of loss tokens, and both for logging;
with ``calculate_per_token_loss`` megatron divides the gradients by the tokens of the whole
global batch (all micro-batches, all data-parallel ranks) in `finalize_model_grads`, so every
token weighs the same however sequences are packed or split into micro-batches.
"""

from __future__ import annotations

from functools import partial
from typing import Iterator

import torch

from megatron_fleming.data.batch import VLMBatch

#: Name of the [loss sum, loss tokens] pair each micro-batch reports to the schedule.
LOSS_KEY = "lm loss"


def batch_to_device(batch: VLMBatch, device: torch.device) -> VLMBatch:
    """The tensors the model reads, on `device` (a no-op on CPU)."""
    if device.type == "cpu":
        return batch
    for name in ("input_ids", "labels", "loss_mask", "position_ids", "pixel_values", "cu_seqlens"):
        value = getattr(batch, name)
        if value is not None:
            setattr(batch, name, value.to(device, non_blocking=True))
    return batch


def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Sum of per-token losses, the number of loss tokens, and the pair for logging."""
    loss = (output_tensor.float() * loss_mask).sum()
    tokens = loss_mask.sum().to(torch.int)
    return loss, tokens, {LOSS_KEY: torch.stack([loss.detach(), tokens.detach().float()])}


def forward_step(data_iterator: Iterator[VLMBatch], model: torch.nn.Module):
    """megatron's forward-step contract: (output tensor, loss function of it)."""
    batch = next(data_iterator)
    output = model(batch.input_ids, batch.pixel_values, position_ids=batch.position_ids,
                   labels=batch.labels, cu_seqlens=batch.cu_seqlens)
    return output, partial(loss_func, batch.loss_mask)
