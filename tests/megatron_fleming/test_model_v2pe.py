"""V2PE: position ids (pure) and what the real model's rotary embedding does with them."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from megatron_fleming.model.v2pe import v2pe_position_ids

CTX = 5  # <IMG_CONTEXT> id in the tiny preset


def ids(*tokens: int) -> torch.Tensor:
    return torch.tensor([tokens])


def reference_positions(tokens: list[int], delta: float) -> list[float]:
    """InternVL's rule, written independently with exact fractions: text +1, image tokens +delta,
    the text after an image continues from ceil(last image position) + 1."""
    step = Fraction(delta).limit_denominator(1000)
    out, last, in_image = [], Fraction(-1), False
    for token in tokens:
        if token == CTX:
            last, in_image = last + step, True
        else:
            last = (Fraction(math.ceil(last)) if in_image else last) + 1
            in_image = False
        out.append(float(last))
    return out


def test_text_steps_one_image_steps_delta_then_ceil():
    got = v2pe_position_ids(ids(9, 9, CTX, CTX, CTX, 9, 9), CTX, 0.5)
    assert got.dtype == torch.float32
    assert got.tolist() == [[0.0, 1.0, 1.5, 2.0, 2.5, 4.0, 5.0]]


def test_image_ending_on_an_integer_continues_at_the_next():
    got = v2pe_position_ids(ids(9, CTX, CTX, CTX, CTX, 9), CTX, 0.25)
    assert got.tolist() == [[0.0, 0.25, 0.5, 0.75, 1.0, 2.0]]


@pytest.mark.parametrize("delta", [1 / 16, 0.1, 0.25, 1 / 3, 1.0])
def test_matches_exact_reference(delta):
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(6, 50, (1, 300), generator=gen)
    for start, length in [(4, 64), (100, 7), (120, 128), (290, 10)]:
        tokens[0, start:start + length] = CTX
    got = v2pe_position_ids(tokens, CTX, delta)[0].double()
    want = torch.tensor(reference_positions(tokens[0].tolist(), delta), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)  # fp32 linspace vs exact


def test_delta_one_is_arange():
    tokens = torch.randint(0, 12, (3, 40), generator=torch.Generator().manual_seed(1))
    tokens[:, 10:20] = CTX
    got = v2pe_position_ids(tokens, CTX, 1.0)
    assert torch.equal(got, torch.arange(40, dtype=torch.float32).expand(3, -1))


def test_packed_sequences_restart_at_zero():
    row = ids(9, CTX, CTX, 9, 9, 9, CTX, CTX, 9, 0, 0)
    got = v2pe_position_ids(row, CTX, 0.5, cu_seqlens=torch.tensor([0, 4, 9]))
    assert got.tolist() == [[0.0, 0.5, 1.0, 2.0, 0.0, 1.0, 1.5, 2.0, 3.0, 0.0, 0.0]]


@pytest.mark.parametrize("delta", [0.0, -0.5, 1.5])
def test_delta_outside_unit_interval_is_rejected(delta):
    with pytest.raises(ValueError, match="delta"):
        v2pe_position_ids(ids(9, CTX), CTX, delta)


def test_packing_needs_one_row():
    with pytest.raises(ValueError, match="one row"):
        v2pe_position_ids(torch.zeros(2, 4, dtype=torch.long), CTX, 1.0,
                          cu_seqlens=torch.tensor([0, 4]))


# -- the real model (megatron-core on the CPU shim): `model_checks` (conftest) runs it once --

def test_rotary_phases_equal_float64_reference(model_checks):
    meta, tensors = model_checks
    tokens = tensors["phase_input_ids"][0].tolist()
    positions = torch.tensor(reference_positions(tokens, meta["delta"]), dtype=torch.float64)
    ends = [i for i in range(len(tokens) - 1) if tokens[i] == CTX and tokens[i + 1] != CTX]
    assert ends and all(positions[i].frac() != 0 for i in ends), "images must end between integers"
    assert all(positions[i + 1] == positions[i].ceil() + 1 for i in ends)
    dim = meta["head_dim"]
    inv_freq = 1.0 / meta["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = torch.outer(positions, inv_freq)
    want = torch.cat([angles, angles], dim=-1)
    got = tensors["phases"][:, 0, 0, :].double()  # [seq, batch, 1, dim] as attention gets it
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    rounded = torch.outer(positions.round(), inv_freq)
    assert (torch.cat([rounded, rounded], -1) - got).abs().max() > 0.1, "positions were rounded"


def test_delta_one_equals_integer_position_rope_exactly(model_checks):
    _, tensors = model_checks
    assert torch.equal(tensors["logits_v2pe_delta1"], tensors["logits_integer_rope"])


def test_packed_row_equals_sequences_run_alone(model_checks):
    _, tensors = model_checks
    torch.testing.assert_close(tensors["logits_packed"], tensors["logits_separate"],
                               rtol=1e-5, atol=1e-5)


def test_input_checks_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"^input_ids must be \[batch, seq\], got shape \(4,\)$"):
        v2pe_position_ids(torch.zeros(4, dtype=torch.long), CTX, 1.0)
    with pytest.raises(ValueError, match=r"^packed sequences \(cu_seqlens\) need a batch of one row$"):
        v2pe_position_ids(torch.zeros(2, 4, dtype=torch.long), CTX, 1.0, cu_seqlens=torch.tensor([0, 4]))
    row = torch.zeros(1, 6, dtype=torch.long)
    for bounds in ([1, 6], [0, 7], [0, 4, 2, 6], [0, 2, 9]):
        with pytest.raises(ValueError, match=rf"^cu_seqlens \[[\d, ]+\] do not partition a row of 6$"):
            v2pe_position_ids(row, CTX, 1.0, cu_seqlens=torch.tensor(bounds))
    # a partition ending exactly at the row's end is fine; one token alone is position 0
    assert v2pe_position_ids(row, CTX, 0.5, cu_seqlens=torch.tensor([0, 1, 6])).tolist() == \
        [[0.0, 0.0, 1.0, 2.0, 3.0, 4.0]]
    assert v2pe_position_ids(ids(9), CTX, 0.5).tolist() == [[0.0]]
    assert v2pe_position_ids(ids(CTX), CTX, 0.5).tolist() == [[-0.5]]


def test_mrope_layout_keeps_fp32_positions():
    from megatron_fleming.model.v2pe import mrope_position_ids

    pos = v2pe_position_ids(ids(9, CTX, CTX, 9), CTX, 0.25)
    three = mrope_position_ids(pos)
    assert three.shape == (3, 1, 4) and three.dtype == torch.float32
    assert all(torch.equal(three[k], pos) for k in range(3))
    as_int = mrope_position_ids(torch.arange(10).view(2, 5))  # a batch of two rows
    assert as_int.shape == (3, 2, 5) and as_int.dtype == torch.float32
    assert as_int[2, 1].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
    with pytest.raises(TypeError, match=r"position_ids are torch.bfloat16; V2PE positions must stay fp32 "
                                        r"\(megatron's Float16Module casts positional inputs to bf16"):
        mrope_position_ids(pos.to(torch.bfloat16))
