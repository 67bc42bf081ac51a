"""Splits you can trust: related records together, releases' held-out splits never in train,
a val split in every build, and the split key in the manifest."""

from __future__ import annotations

import polars as pl
import pytest

from datakit.splits import assign_split, assign_splits, official_split


def test_official_split_names():
    assert [official_split(n) for n in ("Training", "valid", "Validation", "Testing", "test", "x", None)] == \
        ["train", "val", "val", "test", "test", None, None]


def test_held_out_keys_go_to_val_and_val_is_never_empty():
    keys = [(f"k{i}", "train") for i in range(30)] + [("case", "train"), ("case", "test"), ("free", None)]
    out = assign_splits(7, keys, 0.1)
    assert out["case"] == "val"  # one held-out record takes its whole key to val
    assert all(out[f"k{i}"] == assign_split(7, f"k{i}", 0.1) for i in range(30))
    # a fraction too small for the hash to pick anything still gives one key to val
    tiny = assign_splits(7, [(f"k{i}", None) for i in range(5)], 1e-9)
    assert list(tiny.values()).count("val") == 1
    assert set(assign_splits(7, [("only", None)], 0.5).values()) <= {"train", "val"}
    assert set(assign_splits(7, [(f"k{i}", None) for i in range(5)], 0.0).values()) == {"train"}


@pytest.fixture(scope="module")
def emitted(all_build):
    return pl.read_parquet(all_build.out / "manifest.parquet").filter(
        (pl.col("kind") == "sample") & (pl.col("status") == "emitted"))


def test_official_test_splits_are_never_in_train(emitted):
    held = emitted.filter(pl.col("record_uid").str.contains(
        r"^(brain_tumor_mri:Testing/|fairvlmed:(Testing|Validation)/|abdomen_us:(AUS|RUS)/test/)"))
    assert held.height > 0 and set(held["split"]) == {"val"}


def test_split_keys_group_cases_papers_and_patients(emitted):
    keys = dict(zip(emitted["record_uid"], emitted["split_key"]))
    m3d = {k: v for k, v in keys.items() if k.startswith("m3d_cap:")}
    assert m3d and all(v == "m3d_cap:case/" + k.split(":", 1)[1].rsplit("/", 1)[0] for k, v in m3d.items())
    medicat = {k: v for k, v in keys.items() if k.startswith("medicat:")}
    assert medicat and all(v.startswith("medicat:paper/") and k.split(":", 1)[1].startswith(v.split("/", 1)[1])
                           for k, v in medicat.items())
    # one split per key, whatever the record
    per_key = emitted.group_by("split_key").agg(pl.col("split").n_unique())
    assert per_key["split"].max() == 1 and emitted["split_key"].null_count() == 0
