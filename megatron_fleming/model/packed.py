"""Packed sequences as megatron-core and Transformer Engine take them: THD `PackedSeqParams`.

A packed batch is one row of several conversations back to back, delimited by ``cu_seqlens``,
then padding up to a multiple (16 for FP8, TP for sequence parallelism). megatron's packed RoPE
(`rope_utils._apply_rotary_pos_emb_thd`) splits the row by the boundaries it is given and, with
per-token positions (our V2PE freqs), maps them by offset only when the boundaries cover the
whole row (``cu_seqlens[-1]`` = row length); boundaries that stop before the padding make
``torch.split`` fail. So the padding becomes a final segment of its own: every kernel (TE's
fused and flash attention, megatron's RoPE) sees plain THD boundaries that cover the row, the
padding attends only to itself, and its labels are ignored.

`packed_seq_params` builds the one `PackedSeqParams` both layer implementations get. With
Transformer Engine, `TEDotProductAttention` consumes it; with local layers (CPU),
`PackedDotProductAttention` turns the same boundaries into a block-diagonal causal mask for
megatron's `DotProductAttention`, so the CPU runs the same RoPE path the GPU does.
"""

from __future__ import annotations

import torch
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.dot_product_attention import DotProductAttention


def segment_bounds(cu_seqlens: torch.Tensor, seq_len: int) -> torch.Tensor:
    """int32 boundaries covering all `seq_len` tokens: `cu_seqlens`, plus the padding as a final
    segment when the sequences stop short of the row's end."""
    cu = cu_seqlens.to(torch.int32)
    end = int(cu[-1])
    if int(cu[0]) != 0 or end > seq_len or bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(f"cu_seqlens {cu.tolist()} do not partition a row of {seq_len} tokens")
    if end < seq_len:
        cu = torch.cat([cu, torch.tensor([seq_len], dtype=torch.int32, device=cu.device)])
    return cu


def packed_seq_params(cu_seqlens: torch.Tensor, seq_len: int) -> PackedSeqParams:
    """THD params of a packed row of `seq_len` tokens (padding included)."""
    cu = segment_bounds(cu_seqlens, seq_len)
    longest = int((cu[1:] - cu[:-1]).max())
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                           max_seqlen_q=longest, max_seqlen_kv=longest)


def block_causal_mask(bounds: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[1, 1, s, s] boolean mask, True = masked: causal within each segment of `bounds`."""
    segment = torch.zeros(seq_len, dtype=torch.long, device=bounds.device)
    segment[bounds[1:-1].long()] = 1
    segment = segment.cumsum(0)
    idx = torch.arange(seq_len, device=bounds.device)
    allowed = (segment[:, None] == segment[None, :]) & (idx[None, :] <= idx[:, None])
    return ~allowed[None, None]


class PackedDotProductAttention(DotProductAttention):
    """megatron's local `DotProductAttention`, also taking THD `PackedSeqParams`.

    megatron's attention hands a packed row over as [t, heads, dim] (batch squeezed) after
    applying RoPE with the params' boundaries; here the same boundaries become a block-causal
    mask and the row runs through the parent's math as a batch of one.
    """

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params: PackedSeqParams | None = None):
        if packed_seq_params is None:
            return super().forward(query, key, value, attention_mask, attn_mask_type,
                                   attention_bias)
        if packed_seq_params.qkv_format != "thd":
            raise ValueError(f"packed qkv_format {packed_seq_params.qkv_format!r}; only 'thd'")
        bounds = packed_seq_params.cu_seqlens_q_padded
        if bounds is None:
            bounds = packed_seq_params.cu_seqlens_q
        if int(bounds[-1]) != query.shape[0]:
            raise ValueError(f"packed boundaries end at {int(bounds[-1])} but the row holds "
                             f"{query.shape[0]} tokens")
        mask = block_causal_mask(bounds, query.shape[0])
        out = super().forward(query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1), mask,
                              attn_mask_type, attention_bias)
        return out.squeeze(1)  # [t, heads * dim], as TE returns it
