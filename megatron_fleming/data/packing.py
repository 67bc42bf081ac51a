"""Greedy sequence packing: which buffered samples share one packed sequence.

First-fit decreasing over the packing buffer: longest sample first, into the first pack with
room for its tokens (and, optionally, its tiles, which bound the ViT's memory). Deterministic:
equal lengths keep buffer order, and each pack lists its samples in buffer order.
"""

from __future__ import annotations

from typing import Sequence


def first_fit_decreasing(lengths: Sequence[int], capacity: int, *,
                         tiles: Sequence[int] | None = None,
                         max_tiles: int | None = None) -> list[list[int]]:
    """Indices grouped into packs of at most `capacity` tokens (and `max_tiles` tiles)."""
    if tiles is None:
        tiles = [0] * len(lengths)
    for i, n in enumerate(lengths):
        if n > capacity:
            raise ValueError(f"sample {i} has {n} tokens, more than the pack capacity {capacity}")
        if max_tiles is not None and tiles[i] > max_tiles:
            raise ValueError(f"sample {i} has {tiles[i]} tiles, more than max_tiles {max_tiles}")
    packs: list[list[int]] = []
    room: list[int] = []
    tile_room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        for p in range(len(packs)):
            if lengths[i] <= room[p] and (max_tiles is None or tiles[i] <= tile_room[p]):
                packs[p].append(i)
                room[p] -= lengths[i]
                tile_room[p] -= tiles[i]
                break
        else:
            packs.append([i])
            room.append(capacity - lengths[i])
            tile_room.append((max_tiles or 0) - tiles[i])
    return [sorted(p) for p in packs]
