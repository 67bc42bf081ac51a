"""The Hamming index must be exact (pigeonhole, not probabilistic), and the keep rule deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from datakit.dedup import image_index
from datakit.dedup.clusters import exact_groups, keep_first
from datakit.dedup.image_hash import signature
from datakit.dedup.image_index import HammingIndex, NearImageConfig, SignatureTable, near_pairs

from dedup_images import distinct_image, jpeg85, resize90


def clustered_keys(rng: np.random.Generator, n_centres: int, per_centre: int, max_flips: int) -> np.ndarray:
    """Keys scattered around random centres, so many pairs sit near any radius."""
    centres = rng.integers(0, 2**63, n_centres, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n_centres, dtype=np.uint64)
    keys = []
    for c in centres:
        for _ in range(per_centre):
            bits = rng.choice(64, int(rng.integers(0, max_flips + 1)), replace=False)
            keys.append(int(c) ^ sum(1 << int(b) for b in bits))
    return np.array(keys, dtype=np.uint64)


@pytest.mark.parametrize("dense", [True, False], ids=["dense_buckets", "sorted_buckets"])
@pytest.mark.parametrize("radius", [0, 3, 8, 12])
def test_index_matches_brute_force(radius: int, dense: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not dense:
        monkeypatch.setattr(image_index, "_DENSE_BITS", 0)
    rng = np.random.default_rng(radius)
    entries = clustered_keys(rng, 40, 12, 14)
    queries = np.concatenate([clustered_keys(rng, 10, 5, 14), entries[::7]])
    qi, ei = HammingIndex(entries, radius).query(queries)
    dist = np.bitwise_count(queries[:, None] ^ entries[None, :])
    want = np.argwhere(dist <= radius)
    assert len(want) > len(queries) // 2, "the data must exercise the radius"
    assert np.array_equal(np.stack([qi, ei], axis=1), want)


def test_band_choice_follows_table_size() -> None:
    small = HammingIndex(np.arange(10, dtype=np.uint64), 8)
    large = HammingIndex(np.random.default_rng(0).integers(0, 2**63, 200_000, dtype=np.uint64), 8)
    assert sum(small.widths) == sum(large.widths) == 64
    assert len(large.widths) * (large.band_radius + 1) > 8, "pigeonhole: some band within its radius"


def test_cross_pairs_agree_with_self_pairs() -> None:
    originals = [distinct_image(s) for s in range(60)]
    copies = [jpeg85(resize90(im)) for im in originals[:20]]
    a = SignatureTable.of([signature(im) for im in originals])
    b = SignatureTable.of([signature(im) for im in copies])
    i, j, _ = near_pairs(a, b, NearImageConfig())
    assert sorted(zip(i.tolist(), j.tolist())) == [(k, k) for k in range(20)]
    both = SignatureTable.of([signature(im) for im in originals + copies])
    si, sj, _ = near_pairs(both, None, NearImageConfig())
    assert sorted(zip(si.tolist(), sj.tolist())) == [(k, 60 + k) for k in range(20)]


def test_keep_first_never_chains() -> None:
    # 0 ~ 1 ~ 2 but 0 !~ 2: 1 goes (duplicate of 0), 2 stays (its only neighbour was dropped).
    d = keep_first(3, np.array([0, 1]), np.array([1, 2]), np.array([2.0, 2.0]))
    assert set(d) == {1} and d[1].kept == 0


def test_keep_first_picks_nearest_kept_then_best_rank() -> None:
    d = keep_first(4, np.array([3, 3, 3]), np.array([0, 1, 2]), np.array([5.0, 1.0, 1.0]))
    assert d[3].kept == 1 and d[3].distance == 1.0
    edges = (np.array([0, 2, 1]), np.array([3, 3, 3]), np.array([5.0, 1.0, 1.0]))
    assert keep_first(4, *edges) == keep_first(4, *(e[::-1] for e in edges)), "edge order is irrelevant"


def test_exact_groups_keep_best_rank() -> None:
    d = exact_groups(5, ["a", "b", "a", "c", "b"])
    assert {k: v.kept for k, v in d.items()} == {2: 0, 4: 1}
