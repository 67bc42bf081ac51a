"""Packed-row boundaries as properties over random partitions (hypothesis): the THD boundaries
cover the row (the padding a segment of its own only when there is padding), every malformed
``cu_seqlens`` is refused, and the CPU attention mask is block-diagonal causal, token by token
against a brute-force reference. The real model on packed rows is test_model_packed.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_fleming.model.packed import block_causal_mask, packed_seq_params, segment_bounds


@st.composite
def partitions(draw, max_len: int = 40):
    """(cu_seqlens, seq_len): sequences back to back, then 0..max padding tokens."""
    lengths = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6))
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    pad = draw(st.integers(0, 8))
    dtype = draw(st.sampled_from([torch.int32, torch.int64]))
    return torch.tensor(cu, dtype=dtype), cu[-1] + pad


@settings(max_examples=120)
@given(partitions())
def test_boundaries_cover_the_row_with_padding_as_its_own_segment(case):
    cu, seq_len = case
    bounds = segment_bounds(cu, seq_len)
    assert bounds.dtype == torch.int32 and bounds.device == cu.device
    padding = seq_len - int(cu[-1])
    assert bounds.tolist() == cu.tolist() + ([seq_len] if padding else [])
    params = packed_seq_params(cu, seq_len)
    assert params.qkv_format == "thd"
    assert params.cu_seqlens_q.tolist() == params.cu_seqlens_kv.tolist() == bounds.tolist()
    assert params.cu_seqlens_q.dtype == torch.int32
    longest = max(b - a for a, b in zip(bounds.tolist(), bounds.tolist()[1:]))
    assert params.max_seqlen_q == params.max_seqlen_kv == longest
    assert type(params.max_seqlen_q) is int


@settings(max_examples=120)
@given(partitions(), st.data())
def test_malformed_boundaries_are_refused(case, data):
    cu, seq_len = case
    bad = cu.clone()
    kind = data.draw(st.sampled_from(["start", "past_end", "decreasing"]))
    if kind == "start":
        bad[0] = data.draw(st.integers(1, 3))
        bad = torch.maximum(bad, bad[0])  # still non-decreasing: only the start is wrong
    elif kind == "past_end":
        seq_len = int(bad[-1]) - data.draw(st.integers(1, 3))
        if seq_len < 0:
            return
    else:
        if len(bad) < 3 or int(bad[-2]) == 0:
            return
        i = data.draw(st.integers(1, len(bad) - 2))
        if int(bad[i]) == 0:
            return
        bad[i] = int(bad[i + 1]) + 1  # above the next boundary (or above the row: refused anyway)
    with pytest.raises(ValueError) as e:
        segment_bounds(bad, seq_len)
    assert str(e.value) == f"cu_seqlens {bad.to(torch.int32).tolist()} do not partition a row of {seq_len} tokens"


def test_empty_sequences_and_a_row_without_padding_are_accepted():
    assert segment_bounds(torch.tensor([0, 4, 4, 9]), 9).tolist() == [0, 4, 4, 9]
    assert segment_bounds(torch.tensor([0, 9]), 9).tolist() == [0, 9]
    assert segment_bounds(torch.tensor([0, 0]), 3).tolist() == [0, 0, 3]
    with pytest.raises(ValueError, match="partition"):
        segment_bounds(torch.tensor([0, 5, 4]), 9)


@settings(max_examples=80)
@given(partitions(max_len=24))
def test_mask_is_causal_within_each_segment_only(case):
    cu, seq_len = case
    if seq_len == 0:  # a packed row holds at least one token
        return
    bounds = segment_bounds(cu, seq_len)
    mask = block_causal_mask(bounds, seq_len)
    assert mask.shape == (1, 1, seq_len, seq_len) and mask.dtype == torch.bool
    edges = bounds.tolist()
    segment = [next(k for k in range(len(edges) - 1) if edges[k] <= t < edges[k + 1]) for t in range(seq_len)]
    want = torch.tensor([[not (segment[i] == segment[j] and j <= i) for j in range(seq_len)]
                         for i in range(seq_len)], dtype=torch.bool).reshape(1, 1, seq_len, seq_len)
    assert torch.equal(mask, want)
