"""BUSI, Breast Ultrasound Images (Al-Dhabyani et al., Data in Brief 28, 2020).

Released layout (``notes/source-layouts.md`` section 1)::

    Dataset_BUSI_with_GT/{benign,malignant,normal}/<class> (<n>).png
                                                  /<class> (<n>)_mask.png      (every image)
                                                  /<class> (<n>)_mask_1.png    (17 cases)
                                                  /<class> (<n>)_mask_2.png    (benign (195))

Decisions:

* Several masks of one image are OR-merged into one ``lesion`` mask. Lesions are the connected
  components of that union, so a ``_mask_1`` that marks a separate lesion becomes a second
  component and overlapping masks merge into one. The released extra masks are partial
  re-annotations or second lesions, never a different structure, so nothing is lost by merging.
* A ``normal`` image must have an empty mask (the release ships one per image). A non-empty mask
  on ``normal`` contradicts the label: it is rejected (``nonempty_mask_for_normal_label``) unless
  the option ``reject_nonempty_normal`` is false. An empty mask on ``benign``/``malignant`` is
  rejected (``empty_mask_for_lesion_label``).
* Names starting with a dot (``.DS_Store``, macOS ``._x.png`` forks) and files whose extension is
  not in ``image_exts`` are not inputs and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from datakit.errors import Rejected
from datakit.media import mask_array, read_image
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader, file_sha256, natural_key


@register_source
class BusiReader(SourceReader):
    name = "busi"
    modality = "ultrasound"
    top_folder = "Dataset_BUSI_with_GT"
    label_set = ("benign", "malignant", "normal")
    options: dict[str, Any] = {
        # Class folders; a record's label is its folder name lower-cased.
        "classes": ["benign", "malignant", "normal"],
        "no_lesion_labels": ["normal"],  # labels whose mask must be empty
        "image_exts": [".png"],
        # A mask's stem; group "image" is the stem of the image it belongs to.
        "mask_pattern": r"^(?P<image>.+)_mask(?:_\d+)?$",
        "require_mask": True,  # an image without any mask file is rejected
        "reject_nonempty_normal": True,
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._mask_re = re.compile(self.opts["mask_pattern"])
        self._exts = {e.lower() for e in self.opts["image_exts"]}
        self._labels = tuple(sorted(c.lower() for c in self.opts["classes"]))
        self._no_lesion = {c.lower() for c in self.opts["no_lesion_labels"]}

    def discover(self) -> Iterator[RawRecord | Rejection]:
        for cls in sorted(self.opts["classes"], key=natural_key):
            yield from self._discover_class(cls)

    def _discover_class(self, cls: str) -> Iterator[RawRecord | Rejection]:
        folder = self.root / cls
        try:
            files = [p for p in folder.iterdir() if not p.name.startswith(".")]
        except OSError as e:
            yield self.reject(cls, folder, "unreadable_dir", e.strerror or str(e))
            return
        images: dict[str, Path] = {}
        masks: dict[str, list[Path]] = {}
        for p in sorted(files, key=lambda p: natural_key(p.name)):
            if p.suffix.lower() not in self._exts or p.is_dir():
                continue
            m = self._mask_re.match(p.stem)
            if m:
                masks.setdefault(m.group("image"), []).append(p)
            else:
                images[p.stem] = p
        out: list[tuple[tuple, RawRecord | Rejection]] = []
        for stem in images.keys() | masks.keys():
            record_id = f"{cls}/{stem}"
            image, mask_files = images.get(stem), masks.get(stem, [])
            if image is None:
                for mask in mask_files:
                    out.append(
                        ((stem, mask.name), self.reject(record_id, mask, "mask_without_image"))
                    )
            elif not mask_files and self.opts["require_mask"]:
                out.append(((stem, ""), self.reject(record_id, image, "image_without_mask")))
            else:
                record = RawRecord(
                    source=self.name,
                    record_id=record_id,
                    modality=self.modality,
                    images=(image,),
                    masks=tuple(mask_files),
                    label=cls.lower(),
                    root=self.root,
                )
                out.append(((stem, ""), record))
        for _, item in sorted(out, key=lambda kv: (natural_key(kv[0][0]), natural_key(kv[0][1]))):
            yield item

    def load(self, record: RawRecord) -> LoadedRecord:
        image = record.images[0]
        media, im = read_image(image, record.rel(image))
        digests = {record.rel(image): file_sha256(media, im.format, image)}
        lesion = np.zeros((im.height, im.width), dtype=bool)
        marked: list[str] = []  # masks with foreground, to name the one contradicting a label
        for path in record.masks:
            rel = record.rel(path)
            mask_media, mask_im = read_image(path, rel)
            digests[rel] = file_sha256(mask_media, mask_im.format, path)
            if mask_im.size != im.size:
                raise Rejected(
                    "mask_size_mismatch",
                    rel,
                    f"mask {mask_im.size} vs image {im.size} (width, height)",
                )
            part = mask_array(mask_im)
            if part.any():
                marked.append(rel)
            lesion |= part

        expected = record.label not in self._no_lesion
        if expected and not marked:
            first = record.rel(record.masks[0]) if record.masks else record.rel(image)
            raise Rejected("empty_mask_for_lesion_label", first, f"label {record.label!r}")
        if not expected and marked and self.opts["reject_nonempty_normal"]:
            detail = f"label {record.label!r}, {int(lesion.sum())} foreground pixels"
            raise Rejected("nonempty_mask_for_normal_label", marked[0], detail)
        return LoadedRecord(
            record=record,
            media=[media],
            masks={"lesion": lesion},
            facts={
                "label": record.label,
                "label_set": self._labels,
                "body_part": "breast",
                "lesion_mask": "lesion",
                "lesion_expected": expected,
            },
            file_sha256=digests,
        )
