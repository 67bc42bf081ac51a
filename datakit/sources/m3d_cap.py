"""M3D-Cap, CT volumes with radiology reports (Bai et al. 2024, ``BAAI-DCAI/M3D``), with the
M3D-VQA questions asked about them.

Released preprocessed layout (``notes/source-layouts.md`` section 12; M3D's
``Data/process/m3d_cap_data_prepare.py`` writes it)::

    M3D_Cap_npy/M3D_Cap.json                                {split: [{"image", "text"}, ...]}
    M3D_Cap_npy/{ct_case,ct_quizze}/<caseID>/<series>.npy   1×32×256×256 float in [0, 1]
    M3D_Cap_npy/{ct_case,ct_quizze}/<caseID>/text.txt       the case's report
    M3D-VQA/M3D_VQA_train.csv                               beside it (see ``m3d_vqa``)

One record per series volume, with the case's report and the M3D-VQA questions whose
``Image Path`` is that volume (``vqa_csvs``, read as ``m3d_vqa`` reads them). A volume is one
input: dedup compares records by their images and the split keeps a record together, so the
report and the questions of one volume are one record. Decisions:

* The report is the text after ``study_findings:``, or after ``discussion:`` when the findings
  are shorter than 5 characters, or the whole text (M3D's own rule, so the raw ``M3D_Cap``
  ``.txt`` files and the already-filtered ``text.txt`` read the same). An empty report is
  rejected (``empty_report``). A volume without a report still gives its questions.
* Series of a split in ``exclude_splits`` (default ``test``, ``test1k``: M3D's evaluation
  sets) are refused at discovery (``held_out_split``), and so are M3D-VQA rows about them, so a
  training build never holds them. Without a split file (``split_file: null``, or the file
  absent, which is logged) nothing is held out; a split file that is not the documented JSON is
  an error, because guessing would leak test cases into training.
* M3D-VQA rows are refused with their ``M3D-VQA/<file>.csv:<line>`` (relative to the folder
  above the top folder, where ``Image Path`` starts) as ``m3d_vqa`` refuses them, and also when
  their volume is not a record here (``volume_not_in_m3d_cap``: another subset). A listed CSV
  that is absent is logged and skipped: questions are an addition to M3D-Cap.
* The plane (axial, coronal, sagittal) comes from the series name's first word; other names
  have no plane.
* A case with a report but no volume yields ``report_without_volume``; a volume with neither a
  report nor a question ``missing_report``; several ``.txt`` files and none named ``text.txt``
  ``ambiguous_report``. A missing subset folder is skipped (M3D-Cap is often fetched in part).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.sources.m3d_vqa import M3D_QUESTION_TYPES, M3D_SUBSETS, m3d_volume_key, questions_by_volume, series_plane
from datakit.volume import SliceOptions, as_volume, imaging_option, read_bytes, read_npy, slice_volume

log = logging.getLogger(__name__)
REPORT_NAME = "text.txt"
_MIN_REPORT_CHARS = 5


_MARKERS = ("study_findings:", "discussion:")


def extract_report(text: str) -> str:
    """An M3D-Cap report as plain prose: its findings, then its discussion, without the raw
    ``study_findings:`` / ``discussion:`` markers (a model must never learn to write them);
    whitespace collapsed. A section shorter than a few characters is left out; a text without
    markers is kept whole."""
    found = sorted((text.find(m), m) for m in _MARKERS if text.find(m) != -1)
    if not found:
        return " ".join(text.split())
    sections: dict[str, str] = {}
    for (at, marker), nxt in zip(found, [*(a for a, _ in found[1:]), len(text)]):
        sections[marker] = " ".join(text[at + len(marker):nxt].split())
    parts = [sections[m] for m in _MARKERS
             if len(re.sub(r"\s", "", sections.get(m, ""))) >= _MIN_REPORT_CHARS]
    if not parts:
        return " ".join(text.split())
    prose = [p[0].upper() + p[1:] for p in parts]
    return " ".join(p if p.endswith((".", "!", "?")) or i == len(prose) - 1 else p + "." for i, p in enumerate(prose))


def read_report(path: Path, rel: str) -> tuple[str, str]:
    """A report's text (UTF-8, else ``non_utf8_report``) and the file's sha256."""
    data = read_bytes(path, rel)
    try:
        return data.decode("utf-8"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError as e:
        raise Rejected("non_utf8_report", rel, f"byte {e.start}: {e.reason}") from e


@register_source
class M3DCapReader(SourceReader):
    name = "m3d_cap"
    modality = "volume"
    top_folder = "M3D_Cap_npy"
    options: dict[str, Any] = {
        "subsets": list(M3D_SUBSETS),
        "volume_suffix": ".npy",
        "report_glob": "*.txt",
        "split_file": "M3D_Cap.json",  # relative to the top folder; null: no split file
        "exclude_splits": ["test", "test1k"],
        "vqa_csvs": ["../M3D-VQA/M3D_VQA_train.csv"],  # relative to the top folder
        "question_types": dict(M3D_QUESTION_TYPES),
        "imaging": "ct",
        **SliceOptions.reader_options(),
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.slicing = SliceOptions.from_options(self.opts)
        imaging_option(self.name, self.opts["imaging"])
        self.data_root = Path(os.path.normpath(self.root / ".."))

    def _held_out(self) -> dict[str, str]:
        """Volume key -> split name, for the splits in ``exclude_splits``."""
        name = self.opts["split_file"]
        path = self.root / name if name else None
        if path is None:
            return {}
        if not path.exists():
            log.warning("%s: no split file %s; nothing is held out of this build", self.name, path)
            return {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            entries = {split: [m3d_volume_key(e["image"]) for e in doc[split]]
                       for split in self.opts["exclude_splits"] if split in doc}
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not an M3D split file ({{split: [{{image, text}}]}}): {e!r}") from e
        return {key: split for split, keys in entries.items() for key in keys}

    def _questions(self) -> tuple[dict[str, list[dict[str, Any]]], list[Rejection]]:
        files = [Path(os.path.normpath(self.root / name)) for name in self.opts["vqa_csvs"]]
        for path in files:
            if not path.is_file():
                log.warning("%s: no M3D-VQA file %s; its questions are not attached", self.name, path)
        types = {str(k): str(v) for k, v in self.opts["question_types"].items()}
        grouped, refused = questions_by_volume(self.name, files, self.data_root, types, missing_ok=True)
        by_key = {m3d_volume_key(p.relative_to(self.data_root).as_posix()): qs for p, qs in grouped.items()}
        return by_key, refused

    def index_files(self) -> list[Path]:
        return [self.root / self.opts["split_file"]] if self.opts["split_file"] else []

    def record_files(self, record: RawRecord) -> tuple[Path, ...]:
        report = record.meta.get("report")
        return record.images + ((self.root / report,) if report else ())

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        if reason == "not_in_layout" and rel.suffix == ".txt" and len(rel.parts) == 3:
            return "ignored", "report_not_used", "the case's volumes gave no record (see their rows)"
        return status, reason, detail

    def discover(self) -> Iterator[RawRecord | Rejection]:
        held_out = self._held_out()
        questions, refused = self._questions()
        yield from refused
        for subset in sorted(self.opts["subsets"]):
            folder = self.root / subset
            if not folder.is_dir():
                continue
            for case in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
                yield from self._discover_case(subset, case, held_out, questions)
        for key, orphans in sorted(questions.items()):  # rows whose volume gave no record above
            reason = "held_out_split" if key in held_out else "volume_not_in_m3d_cap"
            for q in orphans:
                yield Rejection(source=self.name, record_id=q["row"], path=q["row"], reason=reason, detail=key)

    def _discover_case(self, subset: str, case: Path, held_out: dict[str, str],
                       questions: dict[str, list[dict[str, Any]]]) -> Iterator[RawRecord | Rejection]:
        suffix = self.opts["volume_suffix"]
        volumes = sorted((p for p in case.iterdir() if p.name.endswith(suffix) and not p.name.startswith(".")),
                         key=lambda p: natural_key(p.name))
        reports = sorted(p for p in case.glob(self.opts["report_glob"]) if not p.name.startswith("."))
        case_id = f"{subset}/{case.name}"
        if not volumes:
            for report in reports:
                yield self.reject(case_id, report, "report_without_volume")
            return
        named = [p for p in reports if p.name == REPORT_NAME]
        report = named[0] if named else (reports[0] if len(reports) == 1 else None)
        for volume in volumes:
            record_id = f"{case_id}/{volume.name[: -len(suffix)]}"
            split = held_out.get(record_id)
            if split is not None:
                yield self.reject(record_id, volume, "held_out_split", f"listed in {split!r} of the split file")
                continue
            asked = questions.pop(record_id, [])
            if report is None and reports:
                detail = f"{len(reports)} .txt files, none named {REPORT_NAME}"
                yield self.reject(record_id, volume, "ambiguous_report", detail)
            elif report is None and not asked:
                yield self.reject(record_id, volume, "missing_report", "and no M3D-VQA question")
            else:
                meta = {"report": report.relative_to(self.root).as_posix() if report else None, "questions": asked}
                # one case's series (phases, planes) share a split: per case, not per series
                yield RawRecord(source=self.name, record_id=record_id, modality=self.modality, images=(volume,),
                                meta=meta, root=self.root, split_key=f"case/{case_id}")

    def load(self, record: RawRecord) -> LoadedRecord:
        volume = record.images[0]
        rel = record.rel(volume)
        facts: dict[str, Any] = {"vqa": list(record.meta["questions"]), "imaging": self.opts["imaging"],
                                 "plane": series_plane(volume.name[: -len(self.opts["volume_suffix"])])}
        digests: dict[str, str] = {}
        report_rel = record.meta["report"]
        if report_rel is not None:
            raw_report, digests[report_rel] = read_report(self.root / report_rel, report_rel)
            facts["report"] = extract_report(raw_report)
            if not facts["report"]:
                raise Rejected("empty_report", report_rel)
        arr, digests[rel] = read_npy(volume, rel)
        slices = slice_volume(as_volume(arr, rel, self.slicing.expected_shape), self.slicing)
        facts["provenance"] = {"slice_indices": list(slices.indices), "depth": slices.depth,
                               **({"report_file": report_rel} if report_rel else {})}
        return LoadedRecord(record=record, media=slices.media, facts=facts, file_sha256=digests)
