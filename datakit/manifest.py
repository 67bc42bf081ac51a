"""The build manifest: one row per input record and per sample, and the accounting invariant.

Every input is accounted for. Records (every file under a source's top folder is one, or part
of one): inputs = emitted + rejected + duplicate + contaminated + label_conflict + balanced_out +
skipped_llm + skipped + ignored. Samples (question/answer items, or documents): planned = emitted
+ duplicate + contaminated + label_conflict + balanced_out (a recipe cap) + skipped_llm + skipped
+ rejected (skipped: mask tasks of a record read without masks; skipped_llm / rejected: LLM-derived
samples that could not be produced). Emitted items name the shard sample (``conversation``) and
``turn`` that hold them. ``check_accounting`` verifies both at the end of every build and the
summary prints them. ``docs/manifest.md`` lists the statuses and reasons.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

RECORD_STATUSES = ("emitted", "rejected", "duplicate", "contaminated", "label_conflict", "balanced_out",
                   "skipped_llm", "skipped", "ignored")
# skipped_llm / rejected samples are planned LLM-derived samples that were not produced; skipped
# ones are mask tasks of a record read without masks (``masks: optional``); label_conflict:
# near-identical images whose labels differ, both dropped (dedup.label_conflicts)
SAMPLE_STATUSES = ("emitted", "duplicate", "contaminated", "label_conflict", "balanced_out", "skipped_llm",
                   "skipped", "rejected")

SCHEMA = {
    "kind": pl.Utf8,  # "record" | "sample"
    "id": pl.Utf8,  # record uid or sample key
    "source": pl.Utf8,
    "record_uid": pl.Utf8,
    "path": pl.Utf8,  # file relative to the dataset top folder
    "status": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
    "task": pl.Utf8,
    "lang": pl.Utf8,
    "group": pl.Utf8,
    "split": pl.Utf8,
    "split_key": pl.Utf8,  # emitted samples: the patient/case/paper key their split was drawn by
    "conversation": pl.Utf8,  # emitted samples: the key of the shard sample holding them
    "turn": pl.Int64,  # ... and their turn in it (0 first)
    "shard": pl.Utf8,
    "duplicate_of": pl.Utf8,
    "stage": pl.Utf8,
    "distance": pl.Float64,
    "n_samples": pl.Int64,
}


class AccountingError(RuntimeError):
    """The build lost track of an input: a bug, never bad data."""


@dataclass
class Manifest:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        unknown = set(row) - set(SCHEMA)
        if unknown:
            raise KeyError(f"manifest: unknown column(s) {sorted(unknown)}")
        self.rows.append(row)

    def frame(self) -> pl.DataFrame:
        if not self.rows:
            return pl.DataFrame(schema=SCHEMA)
        return pl.DataFrame(self.rows, schema=SCHEMA).sort(["kind", "id"])

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        self.frame().write_parquet(tmp, statistics=False)
        tmp.replace(path)

    def counts(self, kind: str) -> Counter:
        return Counter(r["status"] for r in self.rows if r["kind"] == kind)


def check_accounting(manifest: Manifest, *, records_discovered: int, samples_converted: int) -> dict[str, Any]:
    """Raise ``AccountingError`` unless every record and sample has exactly one final status."""
    rec = manifest.counts("record")
    smp = manifest.counts("sample")
    for kind, counts, allowed in (("record", rec, RECORD_STATUSES), ("sample", smp, SAMPLE_STATUSES)):
        bad = set(counts) - set(allowed)
        if bad:
            raise AccountingError(f"{kind} rows with unknown status {sorted(bad)}")
    ids = [r["id"] for r in manifest.rows]
    if len(ids) != len(set(ids)):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise AccountingError(f"manifest has more than one row for {dup!r}")
    if sum(rec.values()) != records_discovered:
        raise AccountingError(
            f"records: discovered {records_discovered} != accounted {sum(rec.values())} ({dict(rec)})"
        )
    if sum(smp.values()) != samples_converted:
        raise AccountingError(
            f"samples: converted {samples_converted} != accounted {sum(smp.values())} ({dict(smp)})"
        )
    return {
        "records": {"inputs": records_discovered, **{s: rec.get(s, 0) for s in RECORD_STATUSES}},
        "samples": {"converted": samples_converted, **{s: smp.get(s, 0) for s in SAMPLE_STATUSES}},
    }


def accounting_line(acc: dict[str, Any]) -> str:
    r, s = acc["records"], acc["samples"]
    rec = " + ".join(f"{r[k]} {k}" for k in RECORD_STATUSES if r[k] or k in ("emitted", "rejected"))
    smp = " + ".join(f"{s[k]} {k}" for k in SAMPLE_STATUSES if s[k] or k == "emitted")
    return f"accounting OK: records {r['inputs']} = {rec}; samples {s['converted']} = {smp}"
