"""Near-image thresholds against brute force over random signatures (hypothesis): a pair is a
near duplicate exactly when its coarse distance is at most ``coarse`` and its fine distance at
most ``fine`` (both inclusive), each distance being the smallest over the views of either image
against the whole view of the other."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.dedup.image_hash import FINE_BYTES, N_VIEWS
from datakit.dedup.image_index import NearImageConfig, SignatureTable, near_pairs, pair_distances


def popcount(x: int) -> int:
    return bin(int(x)).count("1")


def table(rng: np.random.Generator, base: SignatureTable | None, n: int, flips: int) -> SignatureTable:
    """n signatures; with a base, each is a base row with up to `flips` bits flipped per view."""
    if base is None:
        coarse = rng.integers(0, 2**63, (n, N_VIEWS), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        fine = rng.integers(0, 256, (n, N_VIEWS, FINE_BYTES), dtype=np.uint8)
        return SignatureTable(coarse, fine)
    rows = rng.integers(0, len(base), n)
    coarse, fine = base.coarse[rows].copy(), base.fine[rows].copy()
    for r in range(n):
        for v in range(N_VIEWS):
            for bit in rng.integers(0, 64, rng.integers(0, flips + 1)):
                coarse[r, v] ^= np.uint64(1) << np.uint64(bit)
            for bit in rng.integers(0, 8 * FINE_BYTES, rng.integers(0, 2 * flips + 1)):
                fine[r, v, bit // 8] ^= np.uint8(1 << (bit % 8))
    return SignatureTable(coarse, fine)


def distances(a: SignatureTable, i: int, b: SignatureTable, j: int) -> tuple[int, int]:
    coarse = min(min(popcount(a.coarse[i, v] ^ b.coarse[j, 0]) for v in range(N_VIEWS)),
                 min(popcount(b.coarse[j, v] ^ a.coarse[i, 0]) for v in range(N_VIEWS)))
    fine = min(min(sum(popcount(x) for x in a.fine[i, v] ^ b.fine[j, 0]) for v in range(N_VIEWS)),
               min(sum(popcount(x) for x in b.fine[j, v] ^ a.fine[i, 0]) for v in range(N_VIEWS)))
    return coarse, fine


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8), m=st.integers(1, 6), flips=st.integers(0, 6),
       coarse=st.integers(0, 12), fine=st.integers(0, 24), within=st.booleans())
def test_near_pairs_match_brute_force(seed, n, m, flips, coarse, fine, within) -> None:
    rng = np.random.default_rng(seed)
    base = table(rng, None, 3, 0)
    a = table(rng, base, n, flips)
    b = None if within else table(rng, base, m, flips)
    cfg = NearImageConfig(coarse=coarse, fine=fine)
    other = a if b is None else b
    pairs = [(i, j) for i in range(len(a)) for j in range(len(other)) if b is not None or i < j]
    want = {(i, j): distances(a, i, other, j) for i, j in pairs}
    want = {k: d for k, d in want.items() if d[0] <= coarse and d[1] <= fine}
    i, j, dist = near_pairs(a, b, cfg)
    assert dict(zip(zip(i.tolist(), j.tolist()), dist.tolist())) == {k: d[0] for k, d in want.items()}
    assert list(zip(i.tolist(), j.tolist())) == sorted(want) and dist.dtype == np.int64
    if pairs:
        ia, ib = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        got = pair_distances(a, ia, other, ib)
        assert [tuple(map(int, d)) for d in zip(*got)] == [distances(a, x, other, y) for x, y in pairs]


def test_thresholds_are_inclusive_and_empty_tables_give_no_pairs() -> None:
    rng = np.random.default_rng(3)
    a = table(rng, table(rng, None, 1, 0), 2, 4)  # two near copies of one signature
    c, f = distances(a, 0, a, 1)
    assert 0 < c <= 8 and 0 < f <= 16
    for dc, df, found in ((0, 0, True), (-1, 0, False), (0, -1, False)):
        cfg = NearImageConfig(coarse=c + dc, fine=f + df)
        assert (len(near_pairs(a, None, cfg)[0]) == 1) == found
    empty = SignatureTable(a.coarse[:0], a.fine[:0])
    single = SignatureTable(a.coarse[:1], a.fine[:1])
    for x, y in ((empty, None), (a, empty), (empty, a), (single, None)):
        out = near_pairs(x, y, NearImageConfig())
        assert all(len(v) == 0 and v.dtype == np.int64 for v in out)
    assert len(near_pairs(single, single, NearImageConfig(coarse=0, fine=0))[0]) == 1  # itself, across tables


@pytest.mark.parametrize("coarse, fine, ok", [(0, 0, True), (31, 71, True), (32, 16, False), (-1, 16, False),
                                              (8, 72, False), (8, -1, False)])
def test_threshold_bounds(coarse: int, fine: int, ok: bool) -> None:
    if ok:
        assert NearImageConfig(coarse=coarse, fine=fine).coarse == coarse
    else:
        with pytest.raises(ValueError, match=rf"^near-image thresholds coarse={coarse} fine={fine} out of range: "
                                             r"use 0 <= coarse < 32 \(of 64 bits\) and 0 <= fine < 72 \(of 144 bits\)$"):
            NearImageConfig(coarse=coarse, fine=fine)


@pytest.mark.parametrize("value,ok", [(1.0, True), (1e-9, True), (0.95, True), (0.0, False), (-0.1, False),
                                      (1.0 + 1e-9, False), (1.5, False)])
def test_min_similarity_bounds(value: float, ok: bool) -> None:
    if ok:
        assert NearImageConfig(min_similarity=value).min_similarity == value
    else:
        with pytest.raises(ValueError) as e:
            NearImageConfig(min_similarity=value)
        assert str(e.value) == f"near-image min_similarity={value} must be in (0, 1]"


CONFIGS = st.builds(NearImageConfig, coarse=st.integers(0, 31), fine=st.integers(0, 71),
                    min_similarity=st.floats(0.01, 1.0))


@settings(max_examples=60)
@given(a=CONFIGS, others=st.lists(CONFIGS, min_size=0, max_size=3))
def test_stricter_and_widest_take_each_threshold_on_its_own(a: NearImageConfig, others: list) -> None:
    """A pair of two modalities meets the tighter of each threshold; the search uses the widest
    of all, so it finds every pair any modality's thresholds accept."""
    for b in others:
        s = a.stricter(b)
        assert (s.coarse, s.fine, s.min_similarity) == \
            (min(a.coarse, b.coarse), min(a.fine, b.fine), max(a.min_similarity, b.min_similarity))
    w = a.widest(others)
    every = [a, *others]
    assert (w.coarse, w.fine, w.min_similarity) == \
        (max(c.coarse for c in every), max(c.fine for c in every), min(c.min_similarity for c in every))


def test_stricter_and_widest_by_hand() -> None:
    a = NearImageConfig(coarse=3, fine=20, min_similarity=0.9)
    b = NearImageConfig(coarse=9, fine=11, min_similarity=0.99)
    assert a.stricter(b) == NearImageConfig(coarse=3, fine=11, min_similarity=0.99) == b.stricter(a)
    assert a.widest([b]) == NearImageConfig(coarse=9, fine=20, min_similarity=0.9)
    assert a.widest([]) == a
