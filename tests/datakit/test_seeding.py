"""Seeds from names: the same parts give the same numbers in every process (never ``hash()``),
different parts give different ones, and ``unit_interval`` is uniform on [0, 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import datakit
from datakit.seeding import derive_seed, rng_for, unit_interval

PARTS = st.lists(st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=8)), min_size=1, max_size=4)


@settings(max_examples=100)
@given(parts=PARTS)
def test_seeds_are_64_bit_and_repeat(parts) -> None:
    seed = derive_seed(*parts)
    assert 0 <= seed < 2**64 and seed == derive_seed(*parts)
    assert 0.0 <= unit_interval(*parts) < 1.0
    assert unit_interval(*parts) == seed / 2**64
    assert rng_for(*parts).random() == rng_for(*parts).random()


def test_different_parts_give_different_seeds() -> None:
    seeds = {derive_seed(7, "split", f"patient/{i}") for i in range(2000)}
    seeds |= {derive_seed(8, "split", f"patient/{i}") for i in range(2000)}
    seeds |= {derive_seed(7, "order", f"patient/{i}") for i in range(2000)}
    assert len(seeds) == 6000
    assert derive_seed(7, "a", "b") != derive_seed(7, "b", "a")
    assert [rng_for(1, "x").random() for _ in range(3)] != [rng_for(2, "x").random() for _ in range(3)]


def test_unit_interval_is_uniform() -> None:
    values = [unit_interval(3, "split", i) for i in range(4000)]
    assert 0.0 <= min(values) < 0.01 and 0.99 < max(values) < 1.0
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):  # binomial sd <= 0.008 for 4000 draws
        assert abs(sum(v < q for v in values) / len(values) - q) < 0.03


def test_same_numbers_in_every_process() -> None:
    code = ("import json; from datakit.seeding import derive_seed, rng_for; "
            "print(json.dumps([derive_seed(7, 'split', 'busi:benign (3)'), rng_for(7, 'x', 'en').random()]))")
    env = {**os.environ, "PYTHONPATH": str(Path(datakit.__file__).parents[1])}
    outputs = {subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONHASHSEED": h},
                              capture_output=True, text=True, check=True).stdout for h in ("1", "2")}
    assert len(outputs) == 1
    assert json.loads(outputs.pop()) == [derive_seed(7, "split", "busi:benign (3)"), rng_for(7, "x", "en").random()]


def test_seed_is_the_documented_hash_of_the_parts() -> None:
    """The construction is part of the shard contract (locks pin its bytes): SHA-256 of the parts'
    ``str`` joined by U+001F, first 8 bytes big-endian. Another construction would be just as
    random, and every property above would still hold, but every lock would change."""
    import hashlib

    for parts in ((7, "split", "busi:benign (3)"), ("病灶", 0, -1), ("",)):
        digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
        assert derive_seed(*parts) == int.from_bytes(digest[:8], "big")
