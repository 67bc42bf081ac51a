"""AUL, Annotated Ultrasound Liver images (Xu et al., Zenodo 7272660).

Released layout (``notes/source-layouts.md`` section 3), one folder per class::

    <top>/{Benign,Malignant,Normal}/image/<n>.jpg
                                   /segmentation/outline/<n>.json   (scan fan)
                                   /segmentation/liver/<n>.json
                                   /segmentation/mass/<n>.json      (not for Normal)

Each JSON file is one polygon, a list of ``[x, y]`` points in image pixels; it is rasterised with
``PIL.ImageDraw.polygon`` (edge pixels included). Numbers repeat across classes, so a record is
keyed on (class, n): ``Benign/12``.

Assumptions and decisions:

* The top folder name is UNCONFIRMED (the Zenodo record unpacks to per-class zips); the default
  is ``Annotated_Ultrasound_Liver`` and a recipe's ``path`` may name another.
* Masks are ``liver`` and ``mass``; the scan outline is not a structure a question is asked
  about and is read only where it stands in for the liver (below). ``Normal`` images have no
  mass polygon and get an all-False ``mass``. ``Benign``/``Malignant`` without one are rejected at
  discovery (``mask_missing_for_lesion_label``); a mass polygon on a ``Normal`` image is rejected
  at load (``nonempty_mask_for_normal_label``), as in BUSI.
* Image ``374`` has no liver polygon in the release: an image without one loads without a
  ``liver`` mask. For ``229`` and ``306`` the file under ``outline/`` is the liver (UltraBench's
  correction), listed in the option ``liver_in_outline`` and applied in every class.
* A polygon with fewer than 3 points, non-numeric points, or a point outside the image by more than
  ``polygon_margin`` pixels is ``malformed_polygon``, naming the JSON file.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from datakit.errors import Rejected
from datakit.media import read_file
from datakit.normalise import NormalisedImage
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key

_POLYGONS = ("outline", "liver", "mass")


@register_source
class AulReader(SourceReader):
    name = "aul"
    modality = "ultrasound"
    top_folder = "Annotated_Ultrasound_Liver"
    label_set = ("benign", "malignant", "normal")
    options: dict[str, Any] = {
        "classes": ["Benign", "Malignant", "Normal"],  # the label is the folder name lower-cased
        "no_lesion_labels": ["normal"],
        "image_dir": "image",
        "segmentation_dir": "segmentation",
        "image_exts": [".jpg", ".jpeg", ".png"],
        "liver_in_outline": ["229", "306"],
        "polygon_margin": 0.0,  # pixels a point may lie beyond the image edge
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._exts = {e.lower() for e in self.opts["image_exts"]}
        self._labels = tuple(sorted(c.lower() for c in self.opts["classes"]))
        self._no_lesion = {c.lower() for c in self.opts["no_lesion_labels"]}
        self._liver_in_outline = {str(n) for n in self.opts["liver_in_outline"]}

    def input_exts(self) -> frozenset[str]:
        return frozenset(self._exts | {".json"})

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        if reason == "not_in_layout" and rel.parts[1:3] == (self.opts["segmentation_dir"], "outline"):
            return "ignored", "unused_outline", "the scan outline is read only where it is the liver (option liver_in_outline)"
        return status, reason, detail

    def discover(self) -> Iterator[RawRecord | Rejection]:
        for cls in sorted(self.opts["classes"], key=natural_key):
            yield from self._discover_class(cls)

    def _stems(self, folder: Path, exts: set[str]) -> dict[str, Path]:
        files = (p for p in folder.iterdir() if not p.name.startswith("."))
        return {
            p.stem: p
            for p in sorted(files, key=lambda p: natural_key(p.name))
            if p.suffix.lower() in exts
        }

    def _discover_class(self, cls: str) -> Iterator[RawRecord | Rejection]:
        image_dir = self.root / cls / self.opts["image_dir"]
        seg = self.root / cls / self.opts["segmentation_dir"]
        try:
            images = self._stems(image_dir, self._exts)
        except OSError as e:
            yield self.reject(cls, image_dir, "unreadable_dir", e.strerror or str(e))
            return
        items: list[RawRecord | Rejection] = []
        polygons: dict[str, dict[str, Path]] = {}
        for kind in _POLYGONS:
            try:
                polygons[kind] = self._stems(seg / kind, {".json"})
            except FileNotFoundError:
                polygons[kind] = {}  # Normal has no mass folder
            except OSError as e:
                polygons[kind] = {}
                why = e.strerror or str(e)
                items.append(self.reject(f"{cls}/{kind}", seg / kind, "unreadable_dir", why))
            for n, path in polygons[kind].items():
                if n not in images:
                    items.append(self.reject(f"{cls}/{n}", path, "mask_without_image"))

        label = cls.lower()
        for n, image in images.items():
            record_id = f"{cls}/{n}"
            liver = polygons["outline" if n in self._liver_in_outline else "liver"].get(n)
            mass = polygons["mass"].get(n)
            if mass is None and label not in self._no_lesion:
                missing = seg / "mass" / f"{n}.json"
                items.append(self.reject(record_id, missing, "mask_missing_for_lesion_label"))
                continue
            present = [(name, path) for name, path in (("liver", liver), ("mass", mass)) if path]
            record = RawRecord(
                source=self.name,
                record_id=record_id,
                modality=self.modality,
                images=(image,),
                masks=tuple(path for _, path in present),
                label=label,
                meta={"mask_names": tuple(name for name, _ in present)},
                root=self.root,
            )
            items.append(record)
        yield from sorted(items, key=lambda item: natural_key(item.record_id))

    def load(self, record: RawRecord) -> LoadedRecord:
        image_path = record.images[0]
        image = self.read_image(record, image_path)
        digests = {record.rel(image_path): image.file_sha256}
        paths = dict(zip(record.meta["mask_names"], record.masks, strict=True))
        masks: dict[str, np.ndarray] = {}
        for name, path in paths.items():
            rel = record.rel(path)
            data = read_file(path, rel)
            digests[rel] = hashlib.sha256(data).hexdigest()
            masks[name] = self._rasterise(data, rel, image)

        expected = record.label not in self._no_lesion
        mass_rel = record.rel(paths.get("mass", image_path))
        if "mass" not in masks:
            masks["mass"] = np.zeros((image.pixels.height, image.pixels.width), dtype=bool)
        if expected and not masks["mass"].any():
            raise Rejected("empty_mask_for_lesion_label", mass_rel, f"label {record.label!r}")
        if not expected and masks["mass"].any():
            raise Rejected("nonempty_mask_for_normal_label", mass_rel, f"label {record.label!r}")
        return LoadedRecord(
            record=record,
            media=[image.media],
            masks=masks,
            facts={
                "label": record.label,
                "label_set": self._labels,
                "body_part": "liver",
                "lesion_mask": "mass",
                "lesion_expected": expected,
            },
            file_sha256=digests,
        )

    def _rasterise(self, data: bytes, rel: str, image: NormalisedImage) -> np.ndarray:
        """Validate one JSON polygon and fill it at the image's final size. Points are in the
        image's display frame (EXIF orientation applied, as annotation tools show it), scaled
        with the image when ``max_side`` downsized it."""
        if not data:
            raise Rejected("empty_file", rel)
        try:
            points = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise Rejected("malformed_polygon", rel, f"not JSON: {e}") from e
        if not isinstance(points, list) or len(points) < 3:
            raise Rejected("malformed_polygon", rel, "expected a list of at least 3 [x, y] points")
        width, height = image.oriented_size
        sx, sy = image.pixels.width / width, image.pixels.height / height
        margin = float(self.opts["polygon_margin"])
        flat: list[float] = []
        for i, pt in enumerate(points):
            if not (isinstance(pt, list) and len(pt) == 2 and all(_is_number(v) for v in pt)):
                raise Rejected("malformed_polygon", rel, f"point {i} is {pt!r}, not [x, y]")
            x, y = float(pt[0]), float(pt[1])
            if not (-margin <= x <= width + margin and -margin <= y <= height + margin):
                raise Rejected(
                    "malformed_polygon",
                    rel,
                    f"point {i} ({x}, {y}) outside the {width}x{height} image",
                )
            flat += (x * sx, y * sy)
        canvas = Image.new("L", image.pixels.size, 0)
        ImageDraw.Draw(canvas).polygon(flat, fill=1, outline=1)
        return np.asarray(canvas, dtype=np.uint8).astype(bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

