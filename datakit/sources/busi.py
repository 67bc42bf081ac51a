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
* A record without any mask file is rejected (``image_without_mask``) unless the option
  ``masks`` is ``optional``: the public images-only copies of BUSI then give label tasks, and the
  mask tasks are counted as ``skipped`` (``no_mask``).
* A name that is a mask name but for its case (``benign (1)_Mask.png``) is rejected as
  ``stray_mask_name``, never read as an image. Every other file under the top folder that no
  record uses gets a row (``unclaimed``): an unknown class folder, a class folder in the wrong case
  (``class_folder_case_mismatch``), a file in a subfolder of a class folder, another extension, a
  dot file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader, natural_key


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
        "masks": "required",  # or "optional": an image without a mask gives label tasks only
        "reject_nonempty_normal": True,
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._mask_re = re.compile(self.opts["mask_pattern"])
        self._mask_re_any_case = re.compile(self.opts["mask_pattern"], re.IGNORECASE)
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
            detail = e.strerror or str(e)
            variants = sorted(p.name for p in self.root.iterdir() if p.name.lower() == cls.lower()) \
                if self.root.is_dir() else []
            if variants:
                detail += f"; found {variants[0]!r}, which differs only in case"
            yield self.reject(cls, folder, "unreadable_dir", detail)
            return
        images: dict[str, Path] = {}
        masks: dict[str, list[Path]] = {}
        out: list[tuple[tuple, RawRecord | Rejection]] = []
        for p in sorted(files, key=lambda p: natural_key(p.name)):
            if p.suffix.lower() not in self._exts or p.is_dir():
                continue  # accounted for by the walk of the top folder (``unclaimed``)
            m = self._mask_re.match(p.stem)
            if m:
                masks.setdefault(m.group("image"), []).append(p)
            elif (stray := self._mask_re_any_case.match(p.stem)) is not None:
                detail = (f"a mask name but for its case (pattern {self.opts['mask_pattern']!r}); "
                          f"not read as a mask of {stray.group('image')!r} nor as an image")
                out.append(((stray.group("image"), p.name),
                            self.reject(f"{cls}/{p.stem}", p, "stray_mask_name", detail)))
            else:
                images[p.stem] = p
        for stem in images.keys() | masks.keys():
            record_id = f"{cls}/{stem}"
            image, mask_files = images.get(stem), masks.get(stem, [])
            if image is None:
                for mask in mask_files:
                    out.append(
                        ((stem, mask.name), self.reject(record_id, mask, "mask_without_image"))
                    )
            elif not mask_files and self.opts["masks"] == "required":
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

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        if reason == "hidden_file":
            return status, reason, detail
        folder = rel.parts[0] if len(rel.parts) > 1 else None
        classes = {c: c for c in self.opts["classes"]}
        if folder is None:
            return "ignored", "outside_class_folders", f"BUSI files live in the class folders {sorted(classes)}"
        if folder not in classes:
            same = [c for c in classes if c.lower() == folder.lower()]
            if same:
                return ("rejected", "class_folder_case_mismatch",
                        f"folder {folder!r} differs from class {same[0]!r} only in case; rename it "
                        f"or list it in the option classes")
            return (status if reason == "unknown_extension" else "rejected", "unknown_class_folder",
                    f"{folder!r} is not one of the classes {sorted(classes)} (option classes)")
        if len(rel.parts) > 2:
            return "rejected", "unexpected_subfolder", f"class folders hold files only; {rel.parent.as_posix()!r} is a subfolder"
        return status, reason, detail

    def load(self, record: RawRecord) -> LoadedRecord:
        image_path = record.images[0]
        image = self.read_image(record, image_path)
        digests = {record.rel(image_path): image.file_sha256}
        height, width = image.pixels.height, image.pixels.width
        lesion = np.zeros((height, width), dtype=bool)
        marked: list[str] = []  # masks with foreground, to name the one contradicting a label
        for path in record.masks:
            part, digests[record.rel(path)] = self.read_mask(record, path, image)
            if part.any():
                marked.append(record.rel(path))
            lesion |= part

        facts = {
            "label": record.label,
            "label_set": self._labels,
            "body_part": "breast",
            "lesion_mask": "lesion",
            "lesion_expected": record.label not in self._no_lesion,
        }
        if not record.masks:  # masks: optional and none released for this image
            facts.update(lesion_mask=None, lesion_expected=None,
                         masks_absent=f"no mask file for {record.rel(image_path)} (masks: optional)")
            return LoadedRecord(record=record, media=[image.media], facts=facts, file_sha256=digests)
        expected = facts["lesion_expected"]
        if expected and not marked:
            raise Rejected("empty_mask_for_lesion_label", record.rel(record.masks[0]), f"label {record.label!r}")
        if not expected and marked and self.opts["reject_nonempty_normal"]:
            detail = f"label {record.label!r}, {int(lesion.sum())} foreground pixels"
            raise Rejected("nonempty_mask_for_normal_label", marked[0], detail)
        return LoadedRecord(record=record, media=[image.media], masks={"lesion": lesion}, facts=facts,
                            file_sha256=digests)
