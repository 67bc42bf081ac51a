"""The generation sampler against its stated rule, over random logits and parameters (hypothesis):
the token is the inverse CDF, at the request's one uniform draw, of the tempered distribution
without the never-sampled ids, cut to the top-k and then to the smallest top-p prefix (stable
descending order); greedy is the first of equal maxima; the masks follow a tensor-parallel
shard's first column; and every bad setting is refused with its message. The examples that show
each rule by hand are test_generate_units.py."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from megatron_fleming.generate.sampling import SamplingParams, TokenMask, request_seed, sample, scaled_logprobs

MASK = TokenMask(vocab_size=7, never_sampled=(2, 5))  # 9 logit columns: 7 and 8 are padding
ALLOWED = [0, 1, 3, 4, 6]
NEAR = 1e-4  # draws or top-p cuts this close to a boundary: float32 rounding may pick either side


def reference(row: list[float], params: SamplingParams, u: float) -> int | None:
    """The documented rule in float64; None when the float32 sampler may round either way."""
    if params.greedy:
        best = max(row[i] for i in ALLOWED)
        return next(i for i in ALLOWED if row[i] == best)
    scaled = {i: row[i] / params.temperature for i in ALLOWED}
    top = max(scaled.values())
    weights = {i: math.exp(v - top) for i, v in scaled.items()}
    total = sum(weights.values())
    order = sorted(ALLOWED, key=lambda i: -weights[i] / total)  # stable: equal mass keeps id order
    probs = [weights[i] / total for i in order]
    if len(set(probs)) < len(probs):
        return None  # ties: float32 may order them differently from float64
    kept, before = [], 0.0
    for rank, p in enumerate(probs):
        if rank and (rank >= (params.top_k or len(row)) or before >= params.top_p):
            break
        if rank and abs(before - params.top_p) < NEAR:
            return None
        kept.append(p)
        before += p
    target, cdf = u * sum(kept), 0.0
    for i, p in enumerate(kept):
        cdf += p
        if abs(cdf - target) < NEAR:
            return None
        if cdf > target:
            return order[i]
    return order[len(kept) - 1]


@settings(max_examples=200)
@given(row=st.lists(st.floats(-4, 4, width=32), min_size=9, max_size=9),
       temperature=st.sampled_from([0.0, 0.3, 1.0, 2.5]), top_k=st.integers(0, 6),
       top_p=st.sampled_from([1.0, 0.9, 0.5, 0.2, 0.01]), seed=st.integers(0, 2**32))
def test_a_token_is_the_inverse_cdf_of_the_filtered_distribution(row, temperature, top_k, top_p, seed):
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    u = float(torch.rand((), generator=torch.Generator().manual_seed(seed)))
    want = reference(row, params, u)
    assume(want is not None)
    logits = torch.tensor([row])
    generator = None if params.greedy else torch.Generator().manual_seed(seed)
    token, logprob = sample(logits, MASK, [params], [generator])
    assert int(token[0]) == want
    t = temperature or 1.0
    real = torch.log_softmax(torch.tensor(row[:7], dtype=torch.float64) / t, -1)  # padding out, id 2 and 5 in
    assert float(logprob[0]) == pytest.approx(float(real[want]), abs=1e-5)
    if generator is not None:  # exactly one draw from the request's generator
        again = torch.Generator().manual_seed(seed)
        torch.rand((), generator=again)
        assert torch.equal(generator.get_state(), again.get_state())


def test_greedy_takes_the_first_of_equal_maxima_and_never_a_banned_id():
    logits = torch.tensor([[0.0, 3.0, 9.0, 3.0, 1.0, 9.0, 3.0, 9.0, 9.0]])
    token, logprob = sample(logits, MASK, [SamplingParams()], [None])
    assert int(token[0]) == 1
    assert float(logprob[0]) == pytest.approx(float(torch.log_softmax(logits[0, :7], -1)[1]))


def test_rows_are_sampled_with_their_own_settings_in_one_batch():
    logits = torch.tensor([[0.0, 1.0, 0.0, 2.0, 0.5, 0.0, 0.1, 0.0, 0.0]] * 3)
    params = [SamplingParams(temperature=1.0, top_k=1), SamplingParams(),
              SamplingParams(temperature=1.0, top_p=0.01)]
    gens = [torch.Generator().manual_seed(1), None, torch.Generator().manual_seed(2)]
    tokens, logprobs = sample(logits, MASK, params, gens)
    assert tokens.tolist() == [3, 3, 3]
    want = torch.log_softmax(logits[0, :7], -1)[3]
    assert torch.allclose(logprobs, want.expand(3))


def test_masks_of_a_tensor_parallel_shard_start_at_its_first_column():
    logits = torch.zeros(2, 4)  # global ids 4..7 of a vocabulary padded to 12
    mask = TokenMask(vocab_size=6, never_sampled=(4, 9))
    pad = mask.padding(logits, first_column=4)
    assert torch.isinf(pad).tolist() == [[False, False, True, True]] * 2
    assert torch.isinf(mask.sampling(logits, first_column=4)).tolist() == [[True, False, True, True]] * 2
    assert torch.isinf(mask.sampling(logits)).tolist() == [[False, False, False, False]] * 2  # ids 0..3
    assert not torch.isinf(mask.padding(torch.zeros(1, 6))).any()
    assert (mask.padding(logits, 4) < 0).sum() == 4 and (pad[pad.isfinite()] == 0).all()


def test_scaled_logprobs_take_greedy_as_temperature_one_per_row():
    logits = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]], dtype=torch.float64)
    got = scaled_logprobs(logits, torch.tensor([0.0, 2.0]))
    assert got.dtype == torch.float32
    assert torch.allclose(got[0], torch.log_softmax(logits[0], -1).float())
    assert torch.allclose(got[1], torch.log_softmax(logits[1] / 2, -1).float())
    assert torch.allclose(scaled_logprobs(logits, 0.5), torch.log_softmax(logits / 0.5, -1).float())
    batch = torch.zeros(2, 3, 5)
    batch[1, :, 0] = 3.0
    per_row = scaled_logprobs(batch, torch.tensor([1.0, 3.0]))
    assert torch.allclose(per_row[1, 0], torch.log_softmax(batch[1, 0] / 3, -1))


def test_request_seed_is_the_documented_hash():
    """sha256 of ``"<seed>/<id>"``, first 8 bytes little-endian, 63 bits: the seed a rerun of any
    batch, on any rank and version, must give the same request."""
    for seed, rid in [(0, "q1"), (1, "q1"), (12345, "slake/77#zh"), (7, "")]:
        digest = hashlib.sha256(f"{seed}/{rid}".encode()).digest()
        assert request_seed(seed, rid) == int.from_bytes(digest[:8], "little") % (1 << 63)
    assert max(request_seed(0, f"r{i}") for i in range(200)) >= 1 << 62  # the 63rd bit is used


@pytest.mark.parametrize("kwargs,message", [
    ({"temperature": -0.1}, r"^SamplingParams: temperature \(-0.1\) must be >= 0 \(0 = greedy\)$"),
    ({"top_p": 0.0}, r"^SamplingParams: top_p \(0.0\) must be in \(0, 1\]$"),
    ({"top_p": 1.5}, r"^SamplingParams: top_p \(1.5\) must be in \(0, 1\]$"),
    ({"top_k": -1}, r"^SamplingParams: top_k \(-1\) must be >= 0 \(0 = off\)$"),
    ({"max_new_tokens": 0}, r"^SamplingParams: max_new_tokens \(0\) must be >= 1$"),
    ({"temperature": "1"}, r"^SamplingParams: temperature and top_p must be numbers, got '1' and 1.0$"),
    ({"top_p": True}, r"^SamplingParams: temperature and top_p must be numbers, got 0.0 and True$"),
    ({"top_k": 1.0}, r"^SamplingParams: top_k and max_new_tokens must be integers, got 1.0 and 256$"),
    ({"max_new_tokens": False}, r"^SamplingParams: top_k and max_new_tokens must be integers, got 0 and False$"),
    ({"ignore_eos": 1}, r"^SamplingParams: ignore_eos must be true or false, got 1$"),
])
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_the_edges_of_each_setting_are_accepted():
    edge = SamplingParams(temperature=0, top_p=1, top_k=0, max_new_tokens=1, ignore_eos=True)
    assert edge.greedy and not SamplingParams(temperature=1e-6).greedy
    assert SamplingParams().max_new_tokens == 256 and SamplingParams().ignore_eos is False
    assert SamplingParams(top_p=1e-9).top_p == 1e-9
