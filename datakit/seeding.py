"""Seeds derived from names, never from order or process state, so any slice on any machine
draws the same numbers for the same record."""

from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """64-bit seed from the recipe seed and any identifying parts (sample id, task, ...)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big")


def rng_for(*parts: object) -> random.Random:
    return random.Random(derive_seed(*parts))


def unit_interval(*parts: object) -> float:
    """A deterministic number in [0, 1) for the given parts (used for splits and ordering)."""
    return derive_seed(*parts) / 2.0**64
