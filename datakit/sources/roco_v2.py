"""ROCOv2, Radiology Objects in COntext v2 (Rückert et al. 2024, Zenodo).

Released layout (``notes/source-layouts.md`` section 8), once the image zips are extracted::

    <top>/{train,valid,test}_captions.csv       ID,Caption
    <top>/{train,valid,test}/ROCOv2_2023_train_000001.jpg

One record per captions row; the caption goes to the ``captions`` converter unchanged (cleaning
and quality filters live there, so every drop is counted with its reason). Path patterns are
options: ``captions_csv`` and ``images_dir`` are formatted with ``{split}`` (some copies extract to
``train_images/``). Bad rows are rejections whose path is ``<csv>:<line>``: ``non_utf8``,
``malformed_row``, ``missing_image``, ``duplicate_row``; images no row names are
``image_without_caption``. An empty caption is not refused here: the converter counts it as
``empty_caption``. The concept (CUI) files are not read. The top folder ``ROCOv2`` is UNCONFIRMED
(Zenodo ships loose files). Licences are per image (``license_information.csv``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.sources.tables import CsvProblem, read_csv, row_rejection
from datakit.splits import official_split


def caption_facts(texts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The facts of a caption record: no label, the texts the ``captions`` converter reads."""
    return {"label": None, "label_set": (), "body_part": None, "lesion_mask": None,
            "lesion_expected": None, "texts": texts, **extra}


@register_source
class RocoV2Reader(SourceReader):
    name = "roco_v2"
    modality = "radiology"
    top_folder = "ROCOv2"
    options: dict[str, Any] = {
        "splits": ["train", "valid", "test"],
        "captions_csv": "{split}_captions.csv",
        "images_dir": "{split}",
        "image_ext": ".jpg",
        "id_column": "ID",
        "caption_column": "Caption",
    }

    def index_files(self) -> list[Path]:
        return [self.root / self.opts["captions_csv"].format(split=s) for s in self.opts["splits"]]

    def discover(self) -> Iterator[RawRecord | Rejection]:
        for split in sorted(self.opts["splits"], key=natural_key):
            yield from self._discover_split(split)

    def _discover_split(self, split: str) -> Iterator[RawRecord | Rejection]:
        rel = self.opts["captions_csv"].format(split=split)
        images_dir = self.opts["images_dir"].format(split=split)
        folder, ext = self.root / images_dir, self.opts["image_ext"]
        try:
            on_disk = {p.name[: -len(ext)]: p for p in folder.iterdir()
                       if p.name.endswith(ext) and not p.name.startswith(".")}
        except OSError as e:
            yield self.reject(images_dir, folder, "unreadable_dir", e.strerror or str(e))
            on_disk = {}
        id_col, caption_col = self.opts["id_column"], self.opts["caption_column"]
        try:
            rows = list(read_csv(self.root / rel, rel, (id_col, caption_col)))
        except Rejected as e:
            yield self.reject(rel, self.root / rel, e.reason, e.detail)
            rows = []
        out: list[RawRecord | Rejection] = []
        seen: dict[str, int] = {}
        for row in rows:
            if isinstance(row, CsvProblem):
                out.append(row_rejection(self.name, rel, row.line, row.reason, row.detail))
                continue
            image_id = row.fields[id_col]
            if not image_id:
                out.append(row_rejection(self.name, rel, row.line, "malformed_row", "empty ID"))
            elif image_id in seen:
                out.append(row_rejection(self.name, rel, row.line, "duplicate_row",
                                         f"ID {image_id!r} already on line {seen[image_id]}"))
            elif image_id not in on_disk:
                seen[image_id] = row.line
                out.append(row_rejection(self.name, rel, row.line, "missing_image",
                                         f"{images_dir}/{image_id}{ext} not found"))
            else:
                seen[image_id] = row.line
                out.append(RawRecord(source=self.name, record_id=image_id, modality=self.modality,
                                     images=(on_disk[image_id],), text=row.fields[caption_col],
                                     meta={"split": split, "row": f"{rel}:{row.line}"}, root=self.root,
                                     official_split=official_split(split)))
        for image_id, path in on_disk.items():
            if image_id not in seen:
                out.append(self.reject(image_id, path, "image_without_caption"))
        yield from sorted(out, key=lambda r: natural_key(r.record_id))

    def load(self, record: RawRecord) -> LoadedRecord:
        image = record.images[0]
        read = self.read_image(record, image)
        return LoadedRecord(
            record=record,
            media=[read.media],
            facts=caption_facts({"caption": record.text}, text_origin={"caption": record.meta["row"]}),
            file_sha256={record.rel(image): read.file_sha256},
        )
