"""MedPix-2.0, radiology teaching cases with per-image captions (Siragusa et al. 2025, CHILab1).

Released layout (``notes/source-layouts.md`` section 10)::

    MedPix-2-0/Descriptions.json      JSON array, one object per image
    MedPix-2-0/Case_topic.json        JSON array, one object per clinical case
    MedPix-2-0/images/<image>.png     <image> = "MPX1009_synpic46283" (no extension in the JSON)

A description is ``{"Type": "CT"|"MR", "U_id", "image", "Description": {"Caption", "Age", "Sex",
"Modality", "Plane", ...}, "Location", "Location Category"}``; a case is ``{"U_id", "TAC": [...],
"MRI": [...], "Case": {"Title", "History", "Findings", ...}, "Topic": {...}}``. One record per
description, id = ``image``. Texts handed to the ``captions`` converter:

* ``caption``: the image's own caption, as released. MedPix has placeholder captions ("IN
  PROGRESS") and one-word ones ("pelvis"); the converter's filters count them.
* ``findings``: the case's ``Findings``, when the case has a non-empty one. It describes the whole
  case, often across several images and modalities (a CT case's findings may cite the ultrasound),
  so it fits an image less well than its caption; the ``captions`` recipe does not use it.

Modality from ``Type``: CT -> ``ct``, MR/MRI -> ``mri``; other types are kept lower-cased. Bad
entries are rejections whose path is ``Descriptions.json#<index>`` (0-based array index):
``malformed_entry`` (not an object, or ``image``/``U_id`` missing), ``missing_image``,
``duplicate_row``. A file that is not a JSON array is one ``malformed_json`` rejection.
A description whose case is absent from ``Case_topic.json`` still gives its caption.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.sources.roco_v2 import caption_facts

_MODALITY = {"CT": "ct", "TAC": "ct", "MR": "mri", "MRI": "mri"}


@register_source
class MedPix2Reader(SourceReader):
    name = "medpix2"
    modality = "radiology"
    top_folder = "MedPix-2-0"
    options: dict[str, Any] = {
        "descriptions": "Descriptions.json",
        "cases": "Case_topic.json",
        "images_dir": "images",
        "image_ext": ".png",
    }

    def _array(self, rel: str) -> list[Any]:
        path = self.root / rel
        try:
            doc = json.loads(path.read_bytes())
        except OSError as e:
            raise Rejected("unreadable_file", rel, e.strerror or str(e)) from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise Rejected("malformed_json", rel, str(e)) from e
        if not isinstance(doc, list):
            raise Rejected("malformed_json", rel, f"a {type(doc).__name__}, not a JSON array")
        return doc

    def _findings(self) -> dict[str, str]:
        """Case id -> non-empty Findings. A cases file that cannot be read gives no findings."""
        try:
            cases = self._array(self.opts["cases"])
        except Rejected:
            return {}
        out: dict[str, str] = {}
        for case in cases:
            if isinstance(case, dict) and isinstance(case.get("Case"), dict):
                findings = case["Case"].get("Findings")
                if isinstance(case.get("U_id"), str) and isinstance(findings, str) and findings.strip():
                    out.setdefault(case["U_id"], findings)
        return out

    def index_files(self) -> list[Path]:
        return [self.root / self.opts["descriptions"], self.root / self.opts["cases"]]

    def discover(self) -> Iterator[RawRecord | Rejection]:
        rel = self.opts["descriptions"]
        try:
            entries = self._array(rel)
        except Rejected as e:
            yield self.reject(rel, self.root / rel, e.reason, e.detail)
            return
        findings = self._findings()
        out: list[RawRecord | Rejection] = []
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            where = f"{rel}#{index}"
            item = self._entry(entry, where, findings)
            if isinstance(item, RawRecord):
                if item.record_id in seen:
                    item = Rejection(source=self.name, record_id=where, path=where, reason="duplicate_row",
                                     detail=f"image {item.record_id!r} already at #{seen[item.record_id]}")
                else:
                    seen[item.record_id] = index
            out.append(item)
        yield from sorted(out, key=lambda r: natural_key(r.record_id))

    def _entry(self, entry: Any, where: str, findings: dict[str, str]) -> RawRecord | Rejection:
        def refuse(reason: str, detail: str) -> Rejection:
            return Rejection(source=self.name, record_id=where, path=where, reason=reason, detail=detail)

        if not isinstance(entry, dict):
            return refuse("malformed_entry", f"a {type(entry).__name__}, not an object")
        image_id, case_id = entry.get("image"), entry.get("U_id")
        if not (isinstance(image_id, str) and image_id and "/" not in image_id):
            return refuse("malformed_entry", f"image is {image_id!r}")
        if not isinstance(case_id, str):
            return refuse("malformed_entry", f"U_id is {case_id!r}")
        image = self.root / self.opts["images_dir"] / f"{image_id}{self.opts['image_ext']}"
        if not image.is_file():
            return refuse("missing_image", f"{image.relative_to(self.root).as_posix()} not found")
        description = entry.get("Description") if isinstance(entry.get("Description"), dict) else {}
        kind = str(entry.get("Type", "")).upper()
        texts: dict[str, Any] = {"caption": description.get("Caption")}
        if case_id in findings:
            texts["findings"] = findings[case_id]
        return RawRecord(source=self.name, record_id=image_id, images=(image,), root=self.root,
                         modality=_MODALITY.get(kind, kind.lower() or self.modality),
                         meta={"case": case_id, "texts": texts, "entry": where,
                               "cases_file": self.opts["cases"]},
                         split_key=f"case/{case_id}" if case_id else None)

    def load(self, record: RawRecord) -> LoadedRecord:
        image = record.images[0]
        read = self.read_image(record, image)
        texts = dict(record.meta["texts"])
        origin = {"caption": record.meta["entry"]}
        if "findings" in texts:
            origin["findings"] = f"{record.meta['cases_file']} U_id {record.meta['case']}"
        return LoadedRecord(
            record=record,
            media=[read.media],
            facts=caption_facts(texts, text_origin=origin),
            file_sha256={record.rel(image): read.file_sha256},
        )
