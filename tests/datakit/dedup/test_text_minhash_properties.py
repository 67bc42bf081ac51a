"""Near-text thresholds over random MinHash signatures (hypothesis): every pair reported has the
similarity it claims (the share of equal positions) and at least the threshold, inclusive; rows
that agree on a whole LSH band are never missed; empty rows never pair."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.dedup.text_minhash import EMPTY, MinHashConfig, lsh_params, near_duplicate_pairs


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 12), threshold=st.sampled_from([0.3, 0.5, 0.7, 0.9]),
       num_perm=st.sampled_from([16, 32, 64]), changes=st.integers(0, 16))
def test_reported_pairs_have_their_similarity(seed, n, threshold, num_perm, changes) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 50, (3, num_perm), dtype=np.uint32)
    sig = base[rng.integers(0, 3, n)].copy() if n else np.zeros((0, num_perm), np.uint32)
    for r in range(n):  # perturb some positions; some rows become empty
        sig[r, rng.integers(0, num_perm, rng.integers(0, changes + 1))] = rng.integers(0, 50)
        if rng.random() < 0.15:
            sig[r] = EMPTY
    cfg = MinHashConfig(threshold=threshold, num_perm=num_perm)
    i, j, sim = near_duplicate_pairs(sig, cfg)
    assert (i.dtype, j.dtype, sim.dtype) == (np.int64, np.int64, np.float64)
    pairs = list(zip(i.tolist(), j.tolist()))
    assert pairs == sorted(set(pairs)) and all(a < b for a, b in pairs)
    bands, rows = lsh_params(threshold, num_perm)
    valid = [r for r in range(n) if (sig[r] != EMPTY).any()]
    for a, b, s in zip(i.tolist(), j.tolist(), sim.tolist()):
        assert a in valid and b in valid
        assert s == (sig[a] == sig[b]).mean() and s >= threshold
    reported = set(pairs)
    for x in valid:  # a whole band equal makes a candidate; if similar enough it is reported
        for y in valid:
            same_band = any((sig[x, k * rows:(k + 1) * rows] == sig[y, k * rows:(k + 1) * rows]).all()
                            for k in range(bands))
            if x < y and same_band and (sig[x] == sig[y]).mean() >= threshold:
                assert (x, y) in reported


def test_similarity_exactly_at_the_threshold_is_a_duplicate() -> None:
    cfg = MinHashConfig(threshold=0.75, num_perm=16)
    a = np.arange(16, dtype=np.uint32)
    b = a.copy()
    b[-4:] += 100  # 12 of 16 positions equal, the first band untouched
    i, j, sim = near_duplicate_pairs(np.stack([a, b]), cfg)
    assert (i.tolist(), j.tolist(), sim.tolist()) == ([0], [1], [0.75])
    for few in (np.stack([a]), np.stack([a, np.full(16, EMPTY, np.uint32)]), np.zeros((0, 16), np.uint32)):
        out = near_duplicate_pairs(few, cfg)
        assert [len(v) for v in out] == [0, 0, 0] and [v.dtype for v in out] == [np.int64, np.int64, np.float64]


@pytest.mark.parametrize("options, ok", [
    ({"threshold": 0.0}, False), ({"threshold": 1.0}, False), ({"threshold": 0.01}, True),
    ({"num_perm": 16}, True), ({"num_perm": 15}, False), ({"num_perm": 1024}, True), ({"num_perm": 1025}, False),
    ({"ngram": 1}, True), ({"ngram": 0}, False), ({"ngram": 8}, True), ({"ngram": 9}, False),
])
def test_config_bounds(options: dict, ok: bool) -> None:
    if ok:
        assert MinHashConfig(**options)
        return
    (key, value), = options.items()
    message = {"threshold": rf"^text threshold {value} must be in \(0, 1\) \(Jaccard similarity\)$",
               "num_perm": rf"^num_perm {value} must be in \[16, 1024\]$",
               "ngram": rf"^ngram {value} must be in \[1, 8\]$"}[key]
    with pytest.raises(ValueError, match=message):
        MinHashConfig(**options)
