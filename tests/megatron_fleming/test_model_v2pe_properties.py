"""V2PE positions as properties over random token sequences (hypothesis): positions rise
strictly, visual tokens advance by delta and text by one (after an image, from the ceiling of
its last position), delta = 1 is exactly the integer positions, and packed sequences each start
again at 0 as if run alone."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_fleming.model.v2pe import v2pe_position_ids

CTX = 5
# runs of text (ids 0-4, 6) and image context tokens, so images are contiguous runs of CTX
RUNS = st.lists(st.tuples(st.booleans(), st.integers(1, 12)), min_size=1, max_size=8)
DELTAS = st.sampled_from([1.0, 0.5, 0.25, 1 / 3, 0.0625, 1 / 7, 0.9])


def tokens_of(runs) -> list[int]:
    out: list[int] = []
    for visual, n in runs:
        out += [CTX] * n if visual else [(len(out) + i) % 5 for i in range(n)]
    return out


@settings(max_examples=120)
@given(runs=RUNS, delta=DELTAS)
def test_positions_rise_and_step_by_delta(runs, delta: float) -> None:
    tokens = tokens_of(runs)
    pos = v2pe_position_ids(torch.tensor([tokens]), CTX, delta)[0].tolist()
    assert math.isclose(pos[0], delta - 1 if tokens[0] == CTX else 0.0, rel_tol=0, abs_tol=1e-6)
    for k in range(1, len(tokens)):
        step = pos[k] - pos[k - 1]
        assert step > 0
        if tokens[k] == CTX:
            assert math.isclose(step, delta, rel_tol=0, abs_tol=1e-4)
        elif tokens[k - 1] == CTX:
            assert pos[k] == math.ceil(pos[k - 1] - 1e-4) + 1  # continues from the ceiling
        else:
            assert step == 1.0
    if delta == 1.0:
        assert pos == [float(i) for i in range(len(tokens))]


@settings(max_examples=80)
@given(runs=RUNS, delta=DELTAS, cuts=st.lists(st.integers(0, 96), max_size=4), pad=st.integers(0, 5))
def test_packed_sequences_equal_each_run_alone(runs, delta: float, cuts, pad: int) -> None:
    tokens = tokens_of(runs)
    bounds = sorted({0, len(tokens), *(c for c in cuts if c < len(tokens))})
    row = torch.tensor([tokens + [0] * pad])
    packed = v2pe_position_ids(row, CTX, delta, cu_seqlens=torch.tensor(bounds))[0]
    for a, b in zip(bounds[:-1], bounds[1:]):
        alone = v2pe_position_ids(torch.tensor([tokens[a:b]]), CTX, delta)[0]
        assert torch.equal(packed[a:b], alone)
    assert packed[len(tokens):].tolist() == [0.0] * pad
    # rows of a batch are independent too
    batch = v2pe_position_ids(torch.tensor([tokens, tokens[::-1]]), CTX, delta)
    assert torch.equal(batch[0], v2pe_position_ids(torch.tensor([tokens]), CTX, delta)[0])
    assert torch.equal(batch[1], v2pe_position_ids(torch.tensor([tokens[::-1]]), CTX, delta)[0])
