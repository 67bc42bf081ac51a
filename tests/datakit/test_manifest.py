"""The accounting invariant on hand-made manifests: balanced ones pass with exact counts, and each
way a build can lose track of an input (a record or sample missing, counted twice, or with a
status nobody knows) raises ``AccountingError`` naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from datakit.manifest import (
    RECORD_STATUSES,
    SAMPLE_STATUSES,
    AccountingError,
    Manifest,
    accounting_line,
    check_accounting,
)


def balanced() -> Manifest:
    """3 records (2 emitted, 1 rejected) and 4 samples (2 emitted, 1 duplicate, 1 skipped_llm)."""
    m = Manifest()
    m.add(kind="record", id="busi:a", status="emitted", n_samples=3)
    m.add(kind="record", id="busi:b", status="emitted", n_samples=1)
    m.add(kind="record", id="busi:c", status="rejected", reason="unreadable_image", n_samples=0)
    m.add(kind="sample", id="busi:a#spatial/lesion_count/en", status="emitted", split="train")
    m.add(kind="sample", id="busi:a#spatial/lesion_count/zh", status="emitted", split="train")
    m.add(kind="sample", id="busi:a#llm/caption/en", status="skipped_llm", reason="offline")
    m.add(kind="sample", id="busi:b#spatial/lesion_count/en", status="duplicate", duplicate_of="busi:a#spatial/lesion_count/en")
    return m


def test_balanced_manifest_gives_exact_counts() -> None:
    acc = check_accounting(balanced(), records_discovered=3, samples_converted=4)
    assert acc["records"] == {"inputs": 3, "emitted": 2, "rejected": 1, "duplicate": 0, "contaminated": 0,
                              "label_conflict": 0, "balanced_out": 0, "skipped_llm": 0, "skipped": 0,
                              "ignored": 0}
    assert acc["samples"] == {"converted": 4, "emitted": 2, "duplicate": 1, "contaminated": 0,
                              "label_conflict": 0, "balanced_out": 0, "skipped_llm": 1, "skipped": 0,
                              "rejected": 0}
    assert set(acc["records"]) == {"inputs", *RECORD_STATUSES}
    assert set(acc["samples"]) == {"converted", *SAMPLE_STATUSES}
    assert accounting_line(acc) == (
        "accounting OK: records 3 = 2 emitted + 1 rejected; samples 4 = 2 emitted + 1 duplicate + 1 skipped_llm"
    )


@pytest.mark.parametrize("discovered, converted, message", [
    (4, 4, r"records: discovered 4 != accounted 3"),  # a record the build lost
    (2, 4, r"records: discovered 2 != accounted 3"),  # a record accounted that was never found
    (3, 5, r"samples: converted 5 != accounted 4"),   # a sample lost between convert and merge
    (3, 3, r"samples: converted 3 != accounted 4"),
])
def test_counts_that_do_not_add_up_are_refused(discovered: int, converted: int, message: str) -> None:
    with pytest.raises(AccountingError, match=message):
        check_accounting(balanced(), records_discovered=discovered, samples_converted=converted)


def test_a_row_twice_is_refused() -> None:
    m = balanced()
    m.add(kind="sample", id="busi:a#spatial/lesion_count/en", status="duplicate")
    with pytest.raises(AccountingError, match=r"more than one row for 'busi:a#spatial/lesion_count/en'"):
        check_accounting(m, records_discovered=3, samples_converted=5)


@pytest.mark.parametrize("kind, status", [("record", "lost"), ("sample", "emited"), ("sample", "ignored")])
def test_unknown_status_is_refused(kind: str, status: str) -> None:
    m = balanced()
    m.add(kind=kind, id=f"busi:z/{kind}", status=status)
    n_rec, n_smp = (4, 4) if kind == "record" else (3, 5)
    with pytest.raises(AccountingError, match=rf"{kind} rows with unknown status \['{status}'\]"):
        check_accounting(m, records_discovered=n_rec, samples_converted=n_smp)


def test_each_status_is_counted_where_it_belongs() -> None:
    """A record's status never counts as a sample's (and the reverse)."""
    m = Manifest()
    for i, status in enumerate(RECORD_STATUSES):
        m.add(kind="record", id=f"r{i}", status=status)
    for i, status in enumerate(SAMPLE_STATUSES[:2]):
        m.add(kind="sample", id=f"s{i}", status=status)
    acc = check_accounting(m, records_discovered=len(RECORD_STATUSES), samples_converted=2)
    assert all(acc["records"][s] == 1 for s in RECORD_STATUSES)
    assert acc["samples"] == {"converted": 2, "emitted": 1, "duplicate": 1, "contaminated": 0,
                              "label_conflict": 0, "balanced_out": 0, "skipped_llm": 0, "skipped": 0,
                              "rejected": 0}
    with pytest.raises(AccountingError, match="records: discovered"):
        check_accounting(m, records_discovered=len(RECORD_STATUSES) + 2, samples_converted=0)


def test_unknown_column_is_refused_and_frame_round_trips(tmp_path: Path) -> None:
    m = balanced()
    with pytest.raises(KeyError, match="unknown column"):
        m.add(kind="record", id="x", status="emitted", colour="red")
    m.write(tmp_path / "manifest.parquet")
    frame = pl.read_parquet(tmp_path / "manifest.parquet")
    assert frame.height == 7 and frame["id"].to_list() == sorted(frame.filter(pl.col("kind") == "record")["id"]) + \
        sorted(frame.filter(pl.col("kind") == "sample")["id"])
    assert not list(tmp_path.glob("*.tmp"))
    assert Manifest().frame().height == 0


def test_accounting_line_always_names_emitted_and_rejected() -> None:
    m = Manifest()
    m.add(kind="record", id="a", status="duplicate")
    m.add(kind="sample", id="a#x", status="duplicate")
    line = accounting_line(check_accounting(m, records_discovered=1, samples_converted=1))
    assert line == ("accounting OK: records 1 = 0 emitted + 0 rejected + 1 duplicate; "
                    "samples 1 = 0 emitted + 1 duplicate")


def test_frame_has_the_schema_and_write_is_statistics_free(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from datakit.manifest import SCHEMA

    assert dict(Manifest().frame().schema) == SCHEMA
    m = Manifest()
    m.add(kind="record", id="a", status="emitted")  # no distance or n_samples given: typed anyway
    assert dict(m.frame().schema) == SCHEMA
    path = tmp_path / "nested" / "deeper" / "manifest.parquet"
    m.write(path)
    meta = pq.ParquetFile(path).metadata
    assert all(not meta.row_group(0).column(i).is_stats_set for i in range(meta.num_columns))
    first = path.read_bytes()
    m.write(path)
    assert path.read_bytes() == first
