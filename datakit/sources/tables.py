"""Reading a dataset's CSV tables row by row, with a rejection per bad row naming ``file:line``.

Label and caption sources (PAD-UFES-20, EyePACS, ROCOv2, FairVLMed, ...) ship their labels as
CSV: a row can lack a column, hold bytes that are not UTF-8 or name an unknown label, and each such
row must become one manifest rejection while the rest of the file is still read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from datakit.errors import Rejected
from datakit.sources.base import Rejection


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int  # 1-based line of the file where the row starts
    fields: dict[str, str]  # column -> value, surrounding whitespace stripped


@dataclass(frozen=True, slots=True)
class CsvProblem:
    line: int
    reason: str
    detail: str


def read_csv(path: Path, rel: str, required: Sequence[str]) -> Iterator[CsvRow | CsvProblem]:
    """Rows of a CSV file with a header, each tagged with its line number.

    Bytes that are not UTF-8 fail only the rows that hold them (the file is decoded with
    ``surrogateescape`` and rows carrying an escaped byte are reported). A file that cannot be
    read, has no header, or lacks a ``required`` column raises ``Rejected`` naming ``rel``.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Rejected("unreadable_file", rel, e.strerror or str(e)) from e
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as e:
        raise Rejected("malformed_csv", rel, f"no readable header: {e}") from None
    if _has_escaped_byte(header):
        raise Rejected("non_utf8", rel, "header line is not UTF-8")
    missing = [c for c in required if c not in header]
    if missing:
        raise Rejected("malformed_csv", rel, f"missing column(s) {missing}; header is {header}")
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # the parser cannot resynchronise after this: report and stop
            yield CsvProblem(line, "malformed_row", str(e))
            return
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if _has_escaped_byte(row):
            yield CsvProblem(line, "non_utf8", "the row holds bytes that are not UTF-8")
        elif len(row) != len(header):
            yield CsvProblem(line, "malformed_row", f"{len(row)} fields, the header has {len(header)}")
        else:
            yield CsvRow(line, {h: v.strip() for h, v in zip(header, row)})


def _has_escaped_byte(fields: list[str]) -> bool:
    return any("\udc80" <= ch <= "\udcff" for f in fields for ch in f)


def row_rejection(source: str, rel: str, line: int, reason: str, detail: str = "") -> Rejection:
    """A refused CSV/JSONL row: its path is ``<file>:<line>`` (unique per row in the manifest)."""
    where = f"{rel}:{line}"
    return Rejection(source=source, record_id=where, path=where, reason=reason, detail=detail)
