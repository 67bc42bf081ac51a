"""M3D-VQA, questions over M3D-Cap's CT volumes (Bai et al. 2024, ``BAAI-DCAI/M3D``).

Released layout (``notes/source-layouts.md`` section 12; M3D's
``Data/process/m3d_vqa_data_generation.py`` writes the CSVs)::

    <data root>/M3D-VQA/M3D_VQA_{train,val,test,test5k}.csv
    <data root>/M3D_Cap_npy/ct_case/<caseID>/<series>.npy     (the volumes, read by m3d_cap)

CSV columns, by header name: ``Image Path`` (relative to the data root, e.g.
``M3D_Cap_npy/ct_case/007789/Axial_Zoomed___thin_cuts.npy``), ``Text`` (the report, unused),
``Question Type``, ``Question``, ``Choice A`` .. ``Choice D``, ``Answer``, ``Answer Choice``.
The generator asks nine questions per volume and numbers their type 1 plane, 2 phase, 3 organ,
4 abnormality (questions 4-6), 5 location (7-9); a choice it could not parse is the text ``NA``.

Decisions:

* One record per CSV row, ``<csv stem>/<line>``; a row that cannot form a question is refused
  at discovery with its place as ``M3D-VQA/<file>.csv:<line>`` and a reason: ``malformed_row``
  (wrong field count), ``non_utf8`` (undecodable bytes), ``missing_field``,
  ``bad_answer_choice`` (not A-D, or pointing at an ``NA`` choice), ``too_few_choices`` (fewer
  than two parsed choices), ``answer_mismatch`` (the
  answer is not the text of its lettered choice), ``unknown_question_type``,
  ``missing_image_file``. A file without the header columns is refused whole (``bad_header``).
* Only ``M3D_VQA_train.csv`` by default: val and test are M3D's evaluation sets, and M3D-VQA is
  one of the benchmarks a training build must not contain.
* ``NA`` choices are dropped from the options; the others keep their released order.
* Paths in manifests are relative to the data root (``data_root``, default the folder above
  ``M3D-VQA``), so they name the volume as the CSV does. Rows over one volume are consecutive,
  so the reader keeps the last few sliced volumes.
"""

from __future__ import annotations

import csv
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.m3d_cap import m3d_volume_key
from datakit.volume import SliceOptions, VolumeSlices, as_volume, read_npy, slice_volume

COLUMNS = ("Image Path", "Question Type", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
           "Answer", "Answer Choice")
LETTERS = "ABCD"
NOT_PARSED = "NA"
_CACHE_VOLUMES = 4


def _same_answer(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return " ".join(s.split()).strip().rstrip(".").lower()

    return norm(a) == norm(b)


@register_source
class M3DVQAReader(SourceReader):
    name = "m3d_vqa"
    modality = "volume"
    top_folder = "M3D-VQA"
    options: dict[str, Any] = {
        "csv_files": ["M3D_VQA_train.csv"],
        "data_root": "..",  # where `Image Path` starts, relative to the top folder
        "question_types": {"1": "plane", "2": "phase", "3": "organ", "4": "abnormality", "5": "location"},
        "imaging": "ct",
        # datakit.volume.SliceOptions
        "num_slices": 11,
        "window": None,
        "expected_shape": None,
        "png_compress_level": 1,
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.slicing = SliceOptions.from_options(self.opts)
        self.data_root = Path(os.path.normpath(self.root / self.opts["data_root"]))
        self._types = {str(k): str(v) for k, v in self.opts["question_types"].items()}
        self._volumes: OrderedDict[Path, tuple[VolumeSlices, str]] = OrderedDict()

    def _where(self, path: Path) -> str:
        return path.relative_to(self.data_root).as_posix()

    def _refuse(self, record_id: str, place: str, reason: str, detail: str = "") -> Rejection:
        return Rejection(source=self.name, record_id=record_id, path=place, reason=reason, detail=detail)

    def discover(self) -> Iterator[RawRecord | Rejection]:
        for name in sorted(self.opts["csv_files"]):
            path = self.root / name
            if not path.is_file():
                yield self._refuse(Path(name).stem, self._where(path), "missing_csv", "listed in csv_files")
                continue
            yield from self._discover_csv(path)

    def _discover_csv(self, path: Path) -> Iterator[RawRecord | Rejection]:
        stem, where = path.stem, self._where(path)
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None) or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                yield self._refuse(stem, f"{where}:1", "bad_header", f"missing column(s) {missing}")
                return
            col = {name: header.index(name) for name in COLUMNS}
            line = reader.line_num + 1
            for row in reader:
                record_id = f"{stem}/{line:07d}"
                item = self._row(row, len(header), col)
                if isinstance(item, tuple):
                    yield self._refuse(record_id, f"{where}:{line}", *item)
                else:
                    yield RawRecord(source=self.name, record_id=record_id, modality=self.modality,
                                    images=(item.pop("volume"),), meta={**item, "row": f"{where}:{line}"},
                                    root=self.data_root)
                line = reader.line_num + 1

    def _row(self, row: list[str], width: int, col: dict[str, int]) -> dict[str, Any] | tuple[str, str]:
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
        qtype = self._types.get(values["Question Type"])
        if qtype is None:
            return "unknown_question_type", f"{values['Question Type']!r} not in {sorted(self._types)}"
        choices = [values[f"Choice {letter}"] for letter in LETTERS]
        letter = values["Answer Choice"].upper()
        if letter not in LETTERS or choices[LETTERS.index(letter)] in ("", NOT_PARSED):
            return "bad_answer_choice", f"answer choice {values['Answer Choice']!r} with choices {choices}"
        if sum(c not in ("", NOT_PARSED) for c in choices) < 2:
            return "too_few_choices", f"choices {choices}"
        if not _same_answer(choices[LETTERS.index(letter)], values["Answer"]):
            return "answer_mismatch", f"answer {values['Answer']!r} but choice {letter} is {choices[LETTERS.index(letter)]!r}"
        volume = Path(os.path.normpath(self.data_root / values["Image Path"]))
        if not volume.is_file():
            return "missing_image_file", values["Image Path"]
        return {"volume": volume, "question": values["Question"], "choices": choices, "answer": values["Answer"],
                "answer_choice": letter, "question_type": qtype}

    def _sliced(self, path: Path, rel: str) -> tuple[VolumeSlices, str]:
        if path in self._volumes:
            self._volumes.move_to_end(path)
            return self._volumes[path]
        arr, digest = read_npy(path, rel)
        entry = (slice_volume(as_volume(arr, rel, self.slicing.expected_shape), self.slicing), digest)
        self._volumes[path] = entry
        if len(self._volumes) > _CACHE_VOLUMES:
            self._volumes.popitem(last=False)
        return entry

    def load(self, record: RawRecord) -> LoadedRecord:
        volume = record.images[0]
        rel = record.rel(volume)
        slices, digest = self._sliced(volume, rel)
        meta = record.meta
        kept = [(LETTERS[i], c) for i, c in enumerate(meta["choices"]) if c not in ("", NOT_PARSED)]
        options = [c for _, c in kept]
        return LoadedRecord(
            record=record,
            media=list(slices.media),
            facts={
                "vqa": {
                    "question": meta["question"],
                    "options": options,
                    "answer_index": [letter for letter, _ in kept].index(meta["answer_choice"]),
                    "answer": meta["answer"],
                    "question_type": meta["question_type"],
                },
                "imaging": self.opts["imaging"],
                "group": f"m3d:{m3d_volume_key(rel)}",
                "provenance": {"slice_indices": list(slices.indices), "depth": slices.depth, "row": meta["row"],
                               "m3d_question_type": meta["question_type"]},
            },
            file_sha256={rel: digest},
        )
