"""M3D-VQA, questions over M3D-Cap's CT volumes (Bai et al. 2024, ``BAAI-DCAI/M3D``).

Released layout (``notes/source-layouts.md`` section 12; M3D's
``Data/process/m3d_vqa_data_generation.py`` writes the CSVs)::

    <data root>/M3D-VQA/M3D_VQA_{train,val,test,test5k}.csv
    <data root>/M3D_Cap_npy/ct_case/<caseID>/<series>.npy     (the volumes, as m3d_cap reads them)

CSV columns, by header name: ``Image Path`` (relative to the data root, e.g.
``M3D_Cap_npy/ct_case/007789/Axial_Zoomed___thin_cuts.npy``), ``Text`` (the report, unused),
``Question Type``, ``Question``, ``Choice A`` .. ``Choice D``, ``Answer``, ``Answer Choice``.
The generator asks nine questions per volume and numbers their type 1 plane, 2 phase, 3 organ,
4 abnormality (questions 4-6), 5 location (7-9); a choice it could not parse is the text ``NA``.

Decisions:

* One record per **volume**, holding its questions in CSV order: a volume is one input for
  dedup (all its samples share its images) and for the split. ``m3d_cap`` attaches the same
  questions to its report records (option ``vqa_csvs``), which is how a recipe with reports
  should read them; this reader is for questions without reports.
* A row that cannot form a question is refused at discovery, named ``M3D-VQA/<file>.csv:<line>``
  (relative to the data root): ``malformed_row`` (wrong field count), ``non_utf8``,
  ``missing_field``, ``unknown_question_type``, ``bad_answer_choice`` (not A-D, or pointing at
  an ``NA`` choice), ``too_few_choices`` (fewer than two parsed), ``answer_mismatch`` (the answer
  is not the text of its lettered choice), ``missing_image_file``. A file without the header
  columns is refused whole (``bad_header``), a listed file that is absent as ``missing_csv``.
* Only ``M3D_VQA_train.csv`` by default: val and test are M3D's evaluation sets, and M3D-VQA is
  one of the benchmarks a training build must not contain.
* ``NA`` choices are dropped from the options; the others keep their released order.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.volume import SliceOptions, as_volume, imaging_option, read_npy, slice_volume

M3D_SUBSETS = ("ct_case", "ct_quizze")
PLANES = ("axial", "coronal", "sagittal")
COLUMNS = ("Image Path", "Question Type", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
           "Answer", "Answer Choice")
LETTERS = "ABCD"
NOT_PARSED = "NA"
M3D_QUESTION_TYPES = {"1": "plane", "2": "phase", "3": "organ", "4": "abnormality", "5": "location"}

Row = tuple[str, dict[str, Any] | None, str, str]  # (file:line, question or None, reason, detail)


def m3d_volume_key(rel_path: str) -> str:
    """``ct_case/<case>/<series>``: a volume's name from its path under any data root."""
    parts = PurePosixPath(rel_path).with_suffix("").parts
    start = next((i for i, p in enumerate(parts) if p in M3D_SUBSETS), 0)
    return "/".join(parts[start:])


def series_plane(series: str) -> str | None:
    """The plane named by a series' first word (M3D keeps Radiopaedia's series names,
    ``Axial_C__portal_venous_phase``), or None."""
    first = re.split(r"[_\s]+", series.strip().lower(), maxsplit=1)[0]
    return first if first in PLANES else None


def _same_answer(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return " ".join(s.split()).strip().rstrip(".").lower()

    return norm(a) == norm(b)


def _question(row: list[str], width: int, col: dict[str, int], data_root: Path,
              types: Mapping[str, str]) -> dict[str, Any] | tuple[str, str]:
    """The question of one CSV row, or ``(reason, detail)`` saying why there is none."""
    if len(row) != width:
        return "malformed_row", f"{len(row)} fields, the header has {width}"
    bad = next((i for i, v in enumerate(row) if any("\udc80" <= ch <= "\udcff" for ch in v)), None)
    if bad is not None:
        return "non_utf8", f"column {bad + 1} has bytes that are not UTF-8"
    values = {name: row[i].strip() for name, i in col.items()}
    empty = [n for n in ("Image Path", "Question", "Answer", "Answer Choice") if not values[n]]
    if empty:
        return "missing_field", f"empty {empty}"
    qtype = types.get(values["Question Type"])
    if qtype is None:
        return "unknown_question_type", f"{values['Question Type']!r} not in {sorted(types)}"
    choices = [values[f"Choice {letter}"] for letter in LETTERS]
    letter = values["Answer Choice"].upper()
    if letter not in LETTERS or choices[LETTERS.index(letter)] in ("", NOT_PARSED):
        return "bad_answer_choice", f"answer choice {values['Answer Choice']!r} with choices {choices}"
    kept = [(lt, c) for lt, c in zip(LETTERS, choices) if c not in ("", NOT_PARSED)]
    if len(kept) < 2:
        return "too_few_choices", f"choices {choices}"
    lettered = choices[LETTERS.index(letter)]
    if not _same_answer(lettered, values["Answer"]):
        return "answer_mismatch", f"answer {values['Answer']!r} but choice {letter} is {lettered!r}"
    volume = Path(os.path.normpath(data_root / values["Image Path"]))
    if not volume.is_file():
        return "missing_image_file", values["Image Path"]
    return {"volume": volume, "question": values["Question"], "options": [c for _, c in kept],
            "answer_index": [lt for lt, _ in kept].index(letter), "answer": values["Answer"],
            "question_type": qtype}


def read_vqa_csv(path: Path, data_root: Path, types: Mapping[str, str] = M3D_QUESTION_TYPES) -> Iterator[Row]:
    """Every row of an M3D-VQA CSV as a question or a refusal, named ``<file>:<line>`` with the
    file relative to ``data_root`` (a row's line is where it starts; quoted fields may span
    lines)."""
    where = Path(os.path.relpath(path, data_root)).as_posix()
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None) or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            yield f"{where}:1", None, "bad_header", f"missing column(s) {missing}"
            return
        col = {name: header.index(name) for name in COLUMNS}
        line = reader.line_num + 1
        for row in reader:
            place = f"{where}:{line}"
            got = _question(row, len(header), col, data_root, types)
            if isinstance(got, tuple):
                yield place, None, *got
            else:
                yield place, {**got, "row": place}, "", ""
            line = reader.line_num + 1


def questions_by_volume(source: str, files: list[Path], data_root: Path, types: Mapping[str, str],
                        missing_ok: bool = False) -> tuple[dict[Path, list[dict[str, Any]]], list[Rejection]]:
    """The questions of several CSVs grouped by volume (file order, then row order), and the
    refused rows; an absent file is refused (``missing_csv``) unless ``missing_ok``."""
    grouped: dict[Path, list[dict[str, Any]]] = {}
    refused: list[Rejection] = []
    for path in files:
        if not path.is_file():
            if not missing_ok:
                where = Path(os.path.relpath(path, data_root)).as_posix()
                refused.append(Rejection(source=source, record_id=where, path=where, reason="missing_csv"))
            continue
        for place, question, reason, detail in read_vqa_csv(path, data_root, types):
            if question is None:
                refused.append(Rejection(source=source, record_id=place, path=place, reason=reason, detail=detail))
            else:
                grouped.setdefault(question.pop("volume"), []).append(question)
    return grouped, refused


@register_source
class M3DVQAReader(SourceReader):
    name = "m3d_vqa"
    modality = "volume"
    top_folder = "M3D-VQA"
    options: dict[str, Any] = {
        "csv_files": ["M3D_VQA_train.csv"],
        "data_root": "..",  # where `Image Path` starts, relative to the top folder
        "question_types": dict(M3D_QUESTION_TYPES),
        "imaging": "ct",
        **SliceOptions.reader_options(),
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.slicing = SliceOptions.from_options(self.opts)
        imaging_option(self.name, self.opts["imaging"])
        self.data_root = Path(os.path.normpath(self.root / self.opts["data_root"]))

    def index_files(self) -> list[Path]:
        return [self.root / name for name in self.opts["csv_files"]]

    def discover(self) -> Iterator[RawRecord | Rejection]:
        types = {str(k): str(v) for k, v in self.opts["question_types"].items()}
        files = [self.root / name for name in sorted(self.opts["csv_files"])]
        grouped, refused = questions_by_volume(self.name, files, self.data_root, types)
        yield from refused
        for volume in sorted(grouped, key=lambda p: p.as_posix()):
            rel = volume.relative_to(self.data_root).as_posix()
            key = m3d_volume_key(rel)
            yield RawRecord(source=self.name, record_id=key, modality=self.modality,
                            images=(volume,), meta={"questions": grouped[volume]}, root=self.data_root,
                            split_key=f"case/{key.rsplit('/', 1)[0]}")  # per case, not per series

    def load(self, record: RawRecord) -> LoadedRecord:
        volume = record.images[0]
        rel = record.rel(volume)
        arr, digest = read_npy(volume, rel)
        slices = slice_volume(as_volume(arr, rel, self.slicing.expected_shape), self.slicing)
        return LoadedRecord(
            record=record,
            media=slices.media,
            facts={
                "vqa": list(record.meta["questions"]),
                "plane": series_plane(PurePosixPath(rel).stem),
                "imaging": self.opts["imaging"],
                "provenance": {"slice_indices": list(slices.indices), "depth": slices.depth},
            },
            file_sha256={rel: digest},
        )
