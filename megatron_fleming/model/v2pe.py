"""V2PE (Variable Visual Position Encoding, InternVL3): position ids with fractional visual steps.

Text tokens advance the position by 1; the tokens of one image (a run of `<IMG_CONTEXT>`) advance
it by delta <= 1, computed as InternVL does it, in fp32 with `linspace(last, last + delta * n,
n + 1)[1:]`; the text token after an image continues from ceil(last visual position) + 1.
With delta = 1 this is exactly `arange`, i.e. standard RoPE positions. Positions restart at 0 at
every packed sequence.

The positions stay fp32 up to the rotary embedding: megatron's GPTModel with
`position_embedding_type='mrope'` passes `position_ids` of shape [3, batch, seq] to
`MultimodalRotaryEmbedding`, which multiplies them by the inverse frequencies in fp32 without
rounding; putting the whole rotary dimension in the first mRoPE section (`mrope_section =
[head_dim/2, 0, 0]`) makes that plain 1-D RoPE over our fractional positions.
"""

from __future__ import annotations

import math

import torch


def _runs(flags: torch.Tensor) -> list[tuple[int, int, bool]]:
    """Maximal runs of equal values in a 1-D bool tensor as (start, end, value)."""
    if flags.numel() == 0:
        return []
    change = torch.nonzero(flags[1:] != flags[:-1]).flatten() + 1
    bounds = [0, *change.tolist(), flags.numel()]
    values = flags[torch.tensor(bounds[:-1], device=flags.device)].tolist()
    return [(a, b, bool(v)) for a, b, v in zip(bounds[:-1], bounds[1:], values)]


def _sequence_positions(is_visual: torch.Tensor, delta: float) -> torch.Tensor:
    out = torch.empty(is_visual.numel(), dtype=torch.float32, device=is_visual.device)
    last = -1  # position of the previous token; always an integer between runs
    for start, end, visual in _runs(is_visual):
        n = end - start
        if visual:
            steps = torch.linspace(last, last + delta * n, n + 1, dtype=torch.float32,
                                   device=is_visual.device)[1:]
            out[start:end] = steps
            last = math.ceil(steps[-1].item())
        else:
            out[start:end] = torch.arange(last + 1, last + 1 + n, dtype=torch.float32,
                                          device=is_visual.device)
            last += n
    return out


def v2pe_position_ids(input_ids: torch.Tensor, image_context_token_id: int, delta: float,
                      cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
    """[batch, seq] token ids -> [batch, seq] fp32 V2PE positions.

    `cu_seqlens` ([n + 1] cumulative lengths, batch of one row) marks packed sequences; positions
    restart at each. delta = 1 gives `arange` per sequence.
    """
    if not 0 < delta <= 1:
        raise ValueError(f"V2PE delta must be in (0, 1], got {delta}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
    is_visual = input_ids == image_context_token_id
    positions = torch.empty(input_ids.shape, dtype=torch.float32, device=input_ids.device)
    if cu_seqlens is None:
        for row in range(input_ids.shape[0]):
            positions[row] = _sequence_positions(is_visual[row], delta)
        return positions
    if input_ids.shape[0] != 1:
        raise ValueError("packed sequences (cu_seqlens) need a batch of one row")
    bounds = cu_seqlens.tolist()
    if bounds[0] != 0 or bounds[-1] > input_ids.shape[1] or bounds != sorted(bounds):
        raise ValueError(f"cu_seqlens {bounds} do not partition a row of {input_ids.shape[1]}")
    positions[0, bounds[-1]:] = 0  # padding after the last packed sequence
    for start, end in zip(bounds[:-1], bounds[1:]):
        positions[0, start:end] = _sequence_positions(is_visual[0, start:end], delta)
    return positions


def mrope_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """[batch, seq] fp32 positions -> [3, batch, seq], the layout GPTModel's mRoPE path takes."""
    if position_ids.dtype not in (torch.float32, torch.float64, torch.int32, torch.int64):
        raise TypeError(
            f"position_ids are {position_ids.dtype}; V2PE positions must stay fp32 (megatron's "
            "Float16Module casts positional inputs to bf16: pass position_ids by keyword)")
    return position_ids.to(torch.float32).unsqueeze(0).expand(3, -1, -1)
