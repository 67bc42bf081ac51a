"""MedICaT, medical figures with captions from open-access papers (Subramanian et al. 2020, allenai).

Released layout (``notes/source-layouts.md`` section 9; access by request, non-commercial)::

    <top>/release/s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl
    <top>/release/figures/<pdf_hash>_<fig_uri>            e.g. 57c9ad0f..._2-Figure1-1.png

Each JSON line is one figure: ``pdf_hash``, ``fig_uri``, ``s2_caption`` (the caption extracted by
Semantic Scholar), ``s2orc_caption`` (nullable), ``radiology``, ``oa_info`` and more. One record
per line, id ``<pdf_hash>_<fig_uri>`` (the figure's file name). The caption field is an option
(``caption_field``, default ``s2_caption``); a null or empty caption is passed on and counted by
the ``captions`` converter as ``empty_caption``. Captions keep their "Figure 2:" labels here; the
converter strips them. The ``release`` level is read when present (``nested_folder``).

Bad lines are rejections whose path is ``<jsonl>:<line>``: ``non_utf8``, ``malformed_json`` (not
JSON, or not an object), ``missing_field`` (``pdf_hash``/``fig_uri`` absent or not a string),
``missing_image``, ``duplicate_row``. Figures no line names are not looked for: the released
``figures/`` folder also holds the ROCO-overlap figures that this jsonl leaves out. The top folder
``medicat`` is UNCONFIRMED. Subfigure annotations (``subcaptions_public.jsonl``) are not read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.sources.tables import row_rejection
from datakit.sources.roco_v2 import caption_facts

_KEEP = ("radiology", "predicted_type")  # small descriptive fields carried in the record meta


@register_source
class MedicatReader(SourceReader):
    name = "medicat"
    modality = "mixed"
    top_folder = "medicat"
    options: dict[str, Any] = {
        "nested_folder": "release",
        "jsonl": "s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl",
        "figures_dir": "figures",
        "caption_field": "s2_caption",
    }

    def _base(self) -> Path:
        nested = self.root / self.opts["nested_folder"]
        return nested if nested.is_dir() else self.root

    def index_files(self) -> list[Path]:
        return [self._base() / self.opts["jsonl"]]

    def discover(self) -> Iterator[RawRecord | Rejection]:
        base = self._base()
        path = base / self.opts["jsonl"]
        rel = path.relative_to(self.root).as_posix()
        try:
            data = path.read_bytes()
        except OSError as e:
            yield self.reject(rel, path, "unreadable_file", e.strerror or str(e))
            return
        out: list[RawRecord | Rejection] = []
        seen: dict[str, int] = {}
        for line, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            item = self._line(raw, rel, line, base)
            if isinstance(item, RawRecord):
                if item.record_id in seen:
                    item = row_rejection(self.name, rel, line, "duplicate_row",
                                         f"{item.record_id} already on line {seen[item.record_id]}")
                else:
                    seen[item.record_id] = line
            out.append(item)
        yield from sorted(out, key=lambda r: natural_key(r.record_id))

    def _line(self, raw: bytes, rel: str, line: int, base: Path) -> RawRecord | Rejection:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return row_rejection(self.name, rel, line, "non_utf8", str(e))
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            return row_rejection(self.name, rel, line, "malformed_json", str(e))
        if not isinstance(doc, dict):
            return row_rejection(self.name, rel, line, "malformed_json", f"a {type(doc).__name__}, not an object")
        for key in ("pdf_hash", "fig_uri"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                return row_rejection(self.name, rel, line, "missing_field", f"{key} is {doc.get(key)!r}")
        name = f"{doc['pdf_hash']}_{doc['fig_uri']}"
        image = base / self.opts["figures_dir"] / name
        if "/" in name or not image.is_file():
            return row_rejection(self.name, rel, line, "missing_image",
                                 f"{self.opts['figures_dir']}/{name} not found")
        meta = {k: doc[k] for k in _KEEP if isinstance(doc.get(k), (str, bool))}
        # The caption is kept as the JSON value it is (string, null, or something odd), so the
        # converter can tell an empty caption from a non-text one.
        return RawRecord(source=self.name, record_id=name, modality=self.modality, images=(image,),
                         meta={**meta, "caption": doc.get(self.opts["caption_field"]),
                               "row": f"{rel}:{line}"},
                         root=self.root, split_key=f"paper/{doc['pdf_hash']}")  # a paper's figures together

    def load(self, record: RawRecord) -> LoadedRecord:
        image = record.images[0]
        read = self.read_image(record, image)
        return LoadedRecord(
            record=record,
            media=[read.media],
            facts=caption_facts({"caption": record.meta["caption"]}, text_origin={"caption": record.meta["row"]}),
            file_sha256={record.rel(image): read.file_sha256},
        )
