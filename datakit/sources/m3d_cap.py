"""M3D-Cap, CT volumes with radiology reports (Bai et al. 2024, ``BAAI-DCAI/M3D``).

Released preprocessed layout (``notes/source-layouts.md`` section 12; M3D's
``Data/process/m3d_cap_data_prepare.py`` writes it)::

    M3D_Cap_npy/M3D_Cap.json                                {split: [{"image", "text"}, ...]}
    M3D_Cap_npy/{ct_case,ct_quizze}/<caseID>/<series>.npy   1×32×256×256 float in [0, 1]
    M3D_Cap_npy/{ct_case,ct_quizze}/<caseID>/text.txt       the case's report

One record per series volume; every series of a case shares the case's report. Decisions:

* The report is the text after ``study_findings:``, or after ``discussion:`` when the findings
  are shorter than 5 characters, or the whole text (M3D's own rule, so the raw ``M3D_Cap``
  ``.txt`` files and the already-filtered ``text.txt`` read the same). An empty report is
  rejected (``empty_report``).
* Series of a split in ``exclude_splits`` (default ``test``, ``test1k``: M3D's evaluation
  sets) are refused at discovery (``held_out_split``), so a training build never holds them.
  Without ``split_file`` nothing is held out; a split file that is not the documented JSON is an
  error, because guessing would leak test cases into training.
* The plane (axial, coronal, sagittal) comes from the series name's first word (M3D names
  series after Radiopaedia's, ``Axial_C__portal_venous_phase``); other names have no plane.
* A case with a report but no volume yields ``report_without_volume``; a volume without a
  report ``missing_report``; several ``.txt`` files and none named ``text.txt``
  ``ambiguous_report``. A missing subset folder is skipped (M3D-Cap is often fetched in part).
* ``facts["group"]`` names the volume independently of the top folder, so M3D-VQA questions
  over the same volume (``m3d_vqa``) land in the same split as its report.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.busi import natural_key
from datakit.volume import SliceOptions, as_volume, read_bytes, read_npy, slice_volume

M3D_SUBSETS = ("ct_case", "ct_quizze")
REPORT_NAME = "text.txt"
PLANES = ("axial", "coronal", "sagittal")
_MIN_REPORT_CHARS = 5


def m3d_volume_key(rel_path: str) -> str:
    """``ct_case/<case>/<series>``: a volume's name from its path under any data root."""
    parts = PurePosixPath(rel_path).with_suffix("").parts
    start = next((i for i, p in enumerate(parts) if p in M3D_SUBSETS), 0)
    return "/".join(parts[start:])


def extract_report(text: str) -> str:
    """The findings part of an M3D-Cap report, whitespace collapsed (M3D's own rule)."""
    chosen = text
    for marker in ("study_findings:", "discussion:"):
        at = text.find(marker)
        if at != -1:
            chosen = text[at + len(marker):]
            if len(re.sub(r"\s", "", chosen)) >= _MIN_REPORT_CHARS:
                break
            chosen = text
    return " ".join(chosen.split())


def series_plane(series: str) -> str | None:
    first = re.split(r"[_\s]+", series.strip().lower(), maxsplit=1)[0]
    return first if first in PLANES else None


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

    def _held_out(self) -> dict[str, str]:
        """Volume key -> split name, for the splits in ``exclude_splits``."""
        name = self.opts["split_file"]
        path = self.root / name if name else None
        if path is None or not path.exists():
            return {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            entries = {split: [m3d_volume_key(e["image"]) for e in doc[split]]
                       for split in self.opts["exclude_splits"] if split in doc}
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not an M3D split file ({{split: [{{image, text}}]}}): {e!r}") from e
        return {key: split for split, keys in entries.items() for key in keys}

    def discover(self) -> Iterator[RawRecord | Rejection]:
        held_out = self._held_out()
        for subset in sorted(self.opts["subsets"]):
            folder = self.root / subset
            if not folder.is_dir():
                continue
            for case in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
                yield from self._discover_case(subset, case, held_out)

    def _discover_case(self, subset: str, case: Path, held_out: dict[str, str]) -> Iterator[RawRecord | Rejection]:
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
            split = held_out.get(m3d_volume_key(record_id))
            if split is not None:
                yield self.reject(record_id, volume, "held_out_split", f"listed in {split!r} of the split file")
            elif report is None:
                detail = f"{len(reports)} .txt files, none named {REPORT_NAME}" if reports else ""
                yield self.reject(record_id, volume, "ambiguous_report" if reports else "missing_report", detail)
            else:
                yield RawRecord(source=self.name, record_id=record_id, modality=self.modality, images=(volume,),
                                meta={"report": self.rel(report)}, root=self.root)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def load(self, record: RawRecord) -> LoadedRecord:
        volume = record.images[0]
        rel = record.rel(volume)
        arr, digest = read_npy(volume, rel)
        slices = slice_volume(as_volume(arr, rel, self.slicing.expected_shape), self.slicing)
        report_rel = record.meta["report"]
        raw_report, report_digest = read_report(self.root / report_rel, report_rel)
        report = extract_report(raw_report)
        if not report:
            raise Rejected("empty_report", report_rel)
        return LoadedRecord(
            record=record,
            media=slices.media,
            facts={
                "report": report,
                "plane": series_plane(volume.name[: -len(self.opts["volume_suffix"])]),
                "imaging": self.opts["imaging"],
                "group": f"m3d:{m3d_volume_key(rel)}",
                "provenance": {"slice_indices": list(slices.indices), "depth": slices.depth,
                               "report_file": report_rel},
            },
            file_sha256={rel: digest, report_rel: report_digest},
        )
