"""Deterministic keep/drop decisions from duplicate edges, shared by every stage.

Units (records, groups) are numbered by priority rank: 0 is the most preferred (first source of
the recipe, then smallest id). Walking the ranks in order, a unit is dropped when it has an edge
to a unit already kept, and points at the nearest such unit (ties to the better rank); otherwise
it is kept. So every dropped unit lies within the threshold of the unit it names, chains
A~B~C never drop C for resembling a dropped B, and the result depends only on the ranks and the
edge set, never on input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Decision:
    """A dropped unit: the rank of the kept unit it duplicates and their distance."""

    kept: int
    distance: float


def keep_first(n: int, i: np.ndarray, j: np.ndarray, distance: np.ndarray) -> dict[int, Decision]:
    """Decisions for units ``0..n-1`` given undirected edges (i, j, distance); only dropped
    units appear in the result."""
    if len(i) == 0:
        return {}
    lo = np.minimum(i, j).astype(np.int64)
    hi = np.maximum(i, j).astype(np.int64)
    if lo.size and (lo.min() < 0 or hi.max() >= n):
        raise ValueError(f"keep_first: edge endpoint outside 0..{n - 1}")
    # Visit the later unit of each edge in rank order; within a unit, nearest then best rank.
    order = np.lexsort((lo, distance, hi))
    lo, hi, distance = lo[order], hi[order], np.asarray(distance)[order]
    dropped: dict[int, Decision] = {}
    for a, b, d in zip(lo.tolist(), hi.tolist(), distance.tolist()):
        if b in dropped or a in dropped:
            continue  # b already decided, or a is not kept
        dropped[b] = Decision(kept=a, distance=d)
    return dropped


def exact_groups(n: int, keys: list[str]) -> dict[int, Decision]:
    """Decisions for units with equal keys: all but the best-ranked copy are dropped."""
    first: dict[str, int] = {}
    dropped: dict[int, Decision] = {}
    for rank in range(n):
        k = keys[rank]
        if k in first:
            dropped[rank] = Decision(kept=first[k], distance=0.0)
        else:
            first[k] = rank
    return dropped
