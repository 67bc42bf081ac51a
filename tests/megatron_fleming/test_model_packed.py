"""Packed rows through the real model: every padding length a multiple of 16 can leave (0-15).

megatron's packed RoPE (`rope_utils._apply_rotary_pos_emb_thd`, the unfused path the CPU
reaches) splits a row by the boundaries it is given; boundaries that stop before the padding
raised `split_with_sizes expects split_sizes to sum exactly to ...` on ~15 of 16 batches. The
model now hands the same THD `PackedSeqParams` to Transformer Engine and to the local attention,
with the padding as a final segment; each packed row's per-token losses must equal those of the
sequences run alone.
"""

from __future__ import annotations

import torch

from megatron_fleming.model.packed import block_causal_mask, packed_seq_params

# fp32, the same math in a different matmul shape: ~1e-6 measured.
LOSS_ATOL = 1e-5


def test_every_pad_length_gives_the_unpacked_losses(model_checks):
    meta, tensors = model_checks
    used = meta["packed_used_tokens"]
    want = tensors["separate_losses"][0]
    assert want.shape[0] == used and (want > 0).sum() > used // 2
    assert [run["pad"] for run in meta["packed_runs"]] == list(range(16))
    for run in meta["packed_runs"]:
        pad = run["pad"]
        got = tensors[f"packed_losses_{pad}"][0]
        assert got.shape[0] == used + pad
        torch.testing.assert_close(got[:used], want, rtol=0, atol=LOSS_ATOL)
        assert not got[used:].any(), "padding tokens carry no loss"


def test_rope_and_attention_get_boundaries_that_cover_the_row(model_checks):
    meta, _ = model_checks
    used = meta["packed_used_tokens"]
    for run in meta["packed_runs"]:
        total = used + run["pad"]
        bounds = run["attention"][0]["q"]
        assert bounds[-1] == total and bounds[:3][-1] == used
        assert len(bounds) == (3 if run["pad"] == 0 else 4)  # the padding: a segment of its own
        assert all(call["format"] == "thd" and call["kv"] == bounds for call in run["attention"])
        # q and k of every layer through megatron's thd RoPE, mapped by offset (freqs per token).
        assert len(run["rope"]) == 2 * len(run["attention"]) > 0
        assert all(c["bounds"] == bounds and c["freqs"] == c["tokens"] == total
                   for c in run["rope"])


def test_packed_params_add_the_padding_segment_only_when_there_is_padding():
    cu = torch.tensor([0, 5, 9], dtype=torch.int32)
    assert packed_seq_params(cu, 9).cu_seqlens_q.tolist() == [0, 5, 9]
    params = packed_seq_params(cu, 16)
    assert params.cu_seqlens_q.tolist() == params.cu_seqlens_kv.tolist() == [0, 5, 9, 16]
    assert params.max_seqlen_q == 7 and params.qkv_format == "thd"
    mask = block_causal_mask(params.cu_seqlens_q, 16)[0, 0]
    assert not mask[12, 9] and mask[12, 8] and mask[6, 4] and mask[3, 4]


def test_boundaries_that_do_not_fit_the_row_are_rejected():
    import pytest

    with pytest.raises(ValueError, match="partition"):
        packed_seq_params(torch.tensor([0, 5, 20]), 16)
