"""train/val assignment by split key, as properties over random record sets (hypothesis).

Whatever the records, their order, groups, tasks or languages: records that share a split key
land in one split; the split depends on the seed and key alone; raising ``val_fraction`` only
moves keys from train to val (so a larger validation set contains the smaller one); and the share
of keys in val follows ``val_fraction``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.merge import assign_split

KEYS = st.text(alphabet="abcdef/:_0123456789", min_size=1, max_size=12)
RECORDS = st.lists(
    st.tuples(KEYS, st.sampled_from(["en", "zh"]), st.sampled_from(["lesion_count", "diagnosis_mcq", "caption"])),
    min_size=1, max_size=60,
)


@settings(max_examples=100)
@given(records=RECORDS, seed=st.integers(0, 2**31), val_fraction=st.floats(0.05, 0.95))
def test_records_sharing_a_key_never_cross_splits(records, seed: int, val_fraction: float) -> None:
    splits: dict[str, set[str]] = {}
    for key, _lang, _task in records + records[::-1]:  # any order, twice
        splits.setdefault(key, set()).add(assign_split(seed, key, val_fraction))
    assert all(len(s) == 1 for s in splits.values())
    assert {s for (v,) in splits.values() for s in [v]} <= {"train", "val"}


@settings(max_examples=100)
@given(keys=st.lists(KEYS, min_size=1, max_size=40, unique=True), seed=st.integers(0, 2**31),
       low=st.floats(0.0, 1.0), high=st.floats(0.0, 1.0))
def test_a_larger_val_fraction_only_adds_keys_to_val(keys, seed: int, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    val_low = {k for k in keys if assign_split(seed, k, low) == "val"}
    val_high = {k for k in keys if assign_split(seed, k, high) == "val"}
    assert val_low <= val_high
    assert not {k for k in keys if assign_split(seed, k, 0.0) == "val"}
    assert {k for k in keys if assign_split(seed, k, 1.0) == "val"} == set(keys)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31), val_fraction=st.sampled_from([0.05, 0.1, 0.3, 0.5, 0.8]))
def test_val_share_follows_the_fraction_and_the_seed_matters(seed: int, val_fraction: float) -> None:
    keys = [f"patient/{i}" for i in range(1000)]
    split = [assign_split(seed, k, val_fraction) for k in keys]
    share = split.count("val") / len(keys)
    assert abs(share - val_fraction) < 0.06  # binomial sd <= 0.016 for 1000 keys
    other = [assign_split(seed + 1, k, val_fraction) for k in keys]
    assert sum(a != b for a, b in zip(split, other)) > 0.25 * 2 * val_fraction * (1 - val_fraction) * len(keys)


@settings(max_examples=50)
@given(key=KEYS, seed=st.integers(0, 2**31))
def test_val_is_the_half_open_interval_below_the_fraction(key: str, seed: int) -> None:
    """A key goes to val when its seeded draw (``unit_interval(seed, "split", key)``, the
    documented construction that locks depend on) is below ``val_fraction``: at exactly its
    draw it is still train."""
    import math

    from datakit.seeding import unit_interval

    draw = unit_interval(seed, "split", key)
    assert assign_split(seed, key, draw) == "train"
    assert assign_split(seed, key, math.nextafter(draw, 2.0)) == "val"
