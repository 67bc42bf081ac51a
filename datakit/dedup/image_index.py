"""Near-duplicate image search over many ``ImageSignature``s.

Candidates come from a multi-index over the 64-bit coarse hashes of every view: the hash is cut
into ``m`` bands, and by the pigeonhole principle two hashes within Hamming ``t`` agree within
``t // m`` bits on at least one band, so probing each band's bucket and its neighbours up to that
radius finds every pair, exactly. ``m`` is chosen per index from a cost model (few wide bands
with a small probe radius for large tables). Candidates are then verified on both hashes, each
as the best view of either image against the other's whole view (``image_hash`` explains why).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Iterable, Sequence

import numpy as np

from datakit.dedup.image_hash import FINE_BYTES, N_VIEWS, ImageSignature

_QUERY_CHUNK = 1 << 14
_DENSE_BITS = 22  # bands up to this wide get a dense bucket table (2^22 x 8 bytes = 32 MiB)


@dataclass(frozen=True, slots=True, kw_only=True)
class NearImageConfig:
    """Hamming thresholds: ``coarse`` of 64 bits (search), ``fine`` of 144 bits (verification);
    and ``min_similarity``, the pixel check a pair must pass before dedup drops one of them
    (``pixel_check.similarity``; decontamination matches on the hashes alone)."""

    coarse: int = 8
    fine: int = 16
    min_similarity: float = 0.95

    def __post_init__(self) -> None:
        if not 0 <= self.coarse < 32 or not 0 <= self.fine < 72:
            raise ValueError(
                f"near-image thresholds coarse={self.coarse} fine={self.fine} out of range: "
                "use 0 <= coarse < 32 (of 64 bits) and 0 <= fine < 72 (of 144 bits)"
            )
        if not 0.0 < self.min_similarity <= 1.0:
            raise ValueError(f"near-image min_similarity={self.min_similarity} must be in (0, 1]")

    def stricter(self, other: "NearImageConfig") -> "NearImageConfig":
        """The thresholds a pair of two modalities must meet: the tighter of each."""
        return NearImageConfig(coarse=min(self.coarse, other.coarse), fine=min(self.fine, other.fine),
                               min_similarity=max(self.min_similarity, other.min_similarity))

    def widest(self, others: "Iterable[NearImageConfig]") -> "NearImageConfig":
        """The search radius that finds every pair any of these thresholds accepts."""
        configs = [self, *others]
        return NearImageConfig(coarse=max(c.coarse for c in configs), fine=max(c.fine for c in configs),
                               min_similarity=min(c.min_similarity for c in configs))


@dataclass(frozen=True, slots=True)
class SignatureTable:
    """Columnar signatures: ``coarse`` (n, views) uint64, ``fine`` (n, views, 18) uint8."""

    coarse: np.ndarray
    fine: np.ndarray

    @classmethod
    def of(cls, sigs: Sequence[ImageSignature]) -> "SignatureTable":
        n = len(sigs)
        coarse = np.frombuffer(b"".join(s.coarse for s in sigs), dtype=">u8").astype(np.uint64)
        fine = np.frombuffer(b"".join(s.fine for s in sigs), dtype=np.uint8)
        return cls(coarse.reshape(n, N_VIEWS), fine.reshape(n, N_VIEWS, FINE_BYTES))

    def __len__(self) -> int:
        return self.coarse.shape[0]


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.int16)


def pair_distances(a: SignatureTable, ia: np.ndarray, b: SignatureTable, ib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coarse, fine) Hamming distances of pairs (a[ia], b[ib]): the smallest over the views of
    either image against the whole view of the other."""
    ca, cb = a.coarse[ia], b.coarse[ib]
    coarse = np.minimum(
        _popcount(ca ^ cb[:, :1]).min(axis=1), _popcount(cb ^ ca[:, :1]).min(axis=1)
    )
    fa, fb = a.fine[ia], b.fine[ib]
    fine = np.minimum(
        _popcount(fa ^ fb[:, :1]).sum(axis=2).min(axis=1),
        _popcount(fb ^ fa[:, :1]).sum(axis=2).min(axis=1),
    )
    return coarse, fine


class HammingIndex:
    """All entries within Hamming ``radius`` of a 64-bit query key, exactly (multi-index hashing)."""

    def __init__(self, keys: np.ndarray, radius: int, expected_queries: int | None = None) -> None:
        self.keys = np.ascontiguousarray(keys, dtype=np.uint64)
        self.radius = radius
        nq = expected_queries or len(self.keys)
        self.widths = self._choose_bands(len(self.keys), nq, radius)
        self.band_radius = radius // len(self.widths)
        self._bands = []
        shift = 0
        for w in self.widths:
            bk = (self.keys >> np.uint64(shift)) & np.uint64((1 << w) - 1)
            order = np.argsort(bk, kind="stable")
            masks = np.array(
                [sum(1 << i for i in c) for k in range(self.band_radius + 1) for c in combinations(range(w), k)],
                dtype=np.uint64,
            )
            # Bucket boundaries: a dense table when the band is narrow and the table not much
            # larger than the keys (one lookup per probe instead of a binary search, the
            # dominant cost), else the sorted keys.
            if w <= _DENSE_BITS and (1 << w) <= max(1 << 16, 32 * len(self.keys)):
                bounds = np.zeros((1 << w) + 1, dtype=np.int64)
                np.cumsum(np.bincount(bk.astype(np.int64), minlength=1 << w), out=bounds[1:])
                self._bands.append((shift, w, bounds, order, masks, True))
            else:
                self._bands.append((shift, w, bk[order], order, masks, False))
            shift += w

    @staticmethod
    def _choose_bands(n_entries: int, n_queries: int, radius: int) -> list[int]:
        best: tuple[float, int] | None = None
        for m in range(1, min(radius + 1, 16) + 1):
            w = 64 // m
            r = radius // m
            probes = sum(comb(w, k) for k in range(r + 1))
            cost = m * n_queries * probes * (1.0 + n_entries / 2.0**w)
            if best is None or cost < best[0]:
                best = (cost, m)
        m = best[1] if best else 1
        return [64 // m + (1 if i < 64 % m else 0) for i in range(m)]

    def query(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, entry index) of every pair within the radius, sorted, without repeats."""
        q_all = np.ascontiguousarray(queries, dtype=np.uint64)
        found_q, found_e = [], []
        for start in range(0, len(q_all), _QUERY_CHUNK):
            q = q_all[start : start + _QUERY_CHUNK]
            for shift, w, table, order, masks, dense in self._bands:
                qb = (q >> np.uint64(shift)) & np.uint64((1 << w) - 1)
                probes = (qb[:, None] ^ masks[None, :]).ravel()
                if dense:
                    p = probes.astype(np.intp)
                    lo, hi = table[p], table[p + 1]
                else:
                    lo = np.searchsorted(table, probes, "left")
                    hi = np.searchsorted(table, probes, "right")
                hit = np.flatnonzero(hi > lo)  # most probes land in empty buckets
                lo, counts = lo[hit], hi[hit] - lo[hit]
                total = int(counts.sum())
                if not total:
                    continue
                qi = np.repeat(hit // len(masks), counts)
                ei = order[np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(total)]
                ok = _popcount(q[qi] ^ self.keys[ei]) <= self.radius
                found_q.append(qi[ok] + start)
                found_e.append(ei[ok])
        if not found_q:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        code = np.unique(np.concatenate(found_q) * len(self.keys) + np.concatenate(found_e))
        return code // len(self.keys), code % len(self.keys)


def _view_candidates(entries: SignatureTable, queries: SignatureTable, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(query row, entry row) where any view of the entry is within ``radius`` of the query's
    whole-image hash."""
    index = HammingIndex(entries.coarse.ravel(), radius, expected_queries=len(queries))
    qi, ei = index.query(queries.coarse[:, 0])
    code = np.unique(qi * len(entries) + ei // N_VIEWS)
    return code // len(entries), code % len(entries)


def near_pairs(
    a: SignatureTable, b: SignatureTable | None, cfg: NearImageConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verified near-duplicate pairs: within ``a`` (``b is None``; ``i < j``) or between ``a``
    and ``b``. Returns (i, j, coarse distance), sorted by (i, j)."""
    if len(a) == 0 or (b is not None and len(b) == 0):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    if b is None:
        qi, ei = _view_candidates(a, a, cfg.coarse)
        i, j = np.minimum(qi, ei), np.maximum(qi, ei)
        keep = i != j
        i, j, other, n_other = i[keep], j[keep], a, len(a)
    else:
        qi, ei = _view_candidates(b, a, cfg.coarse)
        bj, ai = _view_candidates(a, b, cfg.coarse)
        i, j, other, n_other = np.concatenate([qi, ai]), np.concatenate([ei, bj]), b, len(b)
    code = np.unique(i * n_other + j)
    i, j = code // n_other, code % n_other
    coarse, fine = pair_distances(a, i, other, j)
    ok = (coarse <= cfg.coarse) & (fine <= cfg.fine)
    return i[ok], j[ok], coarse[ok].astype(np.int64)

