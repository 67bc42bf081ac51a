"""AbdomenUS, "US simulation & segmentation" (Vitale et al. 2020, Kaggle ``ussimandsegm``).

Released layout (``notes/source-layouts.md`` section 2)::

    abdominal_US/abdominal_US/{AUS,RUS}/images/{train,test}/<stem>.png|.jpg
                             /{AUS,RUS}/annotations/{train,test}/<stem>.png

AUS images are simulated (ray-cast from CT), RUS images are real scans. The archive unpacks with
the top folder nested twice; a single ``abdominal_US/{AUS,RUS}`` level is read the same way.
Images and masks pair by file stem. Masks are an RGB organ colour code (``ORGAN_COLOURS``); they
may carry a constant alpha channel or be grey, and are read through ``read_colour_mask``.

Decisions:

* Only part of the images are annotated, so an image without a mask is expected here; it is still
  accounted for as an ``image_without_mask`` rejection, never silently skipped. A split whose
  ``annotations`` folder is absent makes every image of that split such a rejection. A missing
  or unreadable ``images`` folder is one ``unreadable_dir``; set ``domains``/``splits`` for a
  copy that holds fewer.
* Colours are matched exactly by default (``colour_tolerance`` 0, per channel). A mask with any
  pixel outside the code is rejected (``unknown_mask_colour``, naming the most common stray
  colours) unless ``max_unknown_fraction`` allows some; the released masks are lossless PNGs.
* A mask with no organ pixel at all (some AUS masks are all background) gives nothing to ask
  about and is rejected as ``empty_annotation``.
* The stem pairing assumes one image and one mask per stem; a second file with the same stem is
  rejected as ``duplicate_stem`` rather than chosen arbitrarily.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from datakit.errors import Rejected
from datakit.normalise import read_colour_mask
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.splits import official_split

ORGAN_COLOURS: dict[str, tuple[int, int, int]] = {
    "liver": (100, 0, 100),
    "kidney": (255, 255, 0),
    "pancreas": (0, 0, 255),
    "vessels": (255, 0, 0),
    "adrenals": (0, 255, 255),
    "gallbladder": (0, 255, 0),
    "bones": (255, 255, 255),
    "spleen": (255, 0, 255),
}
# (0,0,0) outside the field of view; (10,10,10) background tissue, in simulated masks only.
BACKGROUND_COLOURS: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (10, 10, 10))


@register_source
class AbdomenUSReader(SourceReader):
    name = "abdomen_us"
    modality = "ultrasound"
    top_folder = "abdominal_US"
    label_set = ()
    options: dict[str, Any] = {
        "nested_folder": "abdominal_US",  # the second level of the released archive, if present
        "domains": ["AUS", "RUS"],
        "splits": ["train", "test"],
        "images_dir": "images",
        "masks_dir": "annotations",
        "image_exts": [".png", ".jpg", ".jpeg"],
        "mask_exts": [".png", ".jpg", ".jpeg", ".bmp"],
        "organ_colours": {k: list(v) for k, v in ORGAN_COLOURS.items()},
        "background_colours": [list(c) for c in BACKGROUND_COLOURS],
        "colour_tolerance": 0,
        "max_unknown_fraction": 0.0,
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._image_exts = {e.lower() for e in self.opts["image_exts"]}
        self._mask_exts = {e.lower() for e in self.opts["mask_exts"]}
        self._organs = {k: tuple(int(c) for c in v) for k, v in self.opts["organ_colours"].items()}
        self._background = [tuple(int(c) for c in v) for v in self.opts["background_colours"]]

    def _base(self) -> Path:
        nested = self.root / self.opts["nested_folder"]
        return nested if nested.is_dir() else self.root

    def discover(self) -> Iterator[RawRecord | Rejection]:
        base = self._base()
        for domain in sorted(self.opts["domains"], key=natural_key):
            for split in sorted(self.opts["splits"], key=natural_key):
                yield from self._discover_split(base, domain, split)

    def _list(
        self, folder: Path, exts: set[str], record_id: str
    ) -> tuple[dict[str, Path], list[Rejection]]:
        """Files of ``folder`` by stem, plus rejections for stems seen twice."""
        by_stem: dict[str, Path] = {}
        dup: list[Rejection] = []
        names = sorted(
            (p for p in folder.iterdir() if not p.name.startswith(".")),
            key=lambda p: natural_key(p.name),
        )
        for p in names:
            if p.suffix.lower() not in exts or p.is_dir():
                continue
            if p.stem in by_stem:
                dup.append(
                    self.reject(
                        f"{record_id}/{p.stem}", p, "duplicate_stem", f"also {by_stem[p.stem].name}"
                    )
                )
            else:
                by_stem[p.stem] = p
        return by_stem, dup

    def _discover_split(
        self, base: Path, domain: str, split: str
    ) -> Iterator[RawRecord | Rejection]:
        prefix = f"{domain}/{split}"
        image_dir = base / domain / self.opts["images_dir"] / split
        mask_dir = base / domain / self.opts["masks_dir"] / split
        try:
            images, rejections = self._list(image_dir, self._image_exts, prefix)
        except OSError as e:
            yield self.reject(prefix, image_dir, "unreadable_dir", e.strerror or str(e))
            return
        try:
            masks, mask_dups = self._list(mask_dir, self._mask_exts, prefix)
        except FileNotFoundError:
            masks, mask_dups = {}, []  # a split released without annotations
        except OSError as e:
            masks, mask_dups = {}, []
            rejections.append(self.reject(prefix, mask_dir, "unreadable_dir", e.strerror or str(e)))
        rejections += mask_dups

        items: list[tuple[str, RawRecord | Rejection]] = [(r.record_id, r) for r in rejections]
        for stem in images.keys() | masks.keys():
            record_id = f"{prefix}/{stem}"
            image, mask = images.get(stem), masks.get(stem)
            if image is None:
                items.append((record_id, self.reject(record_id, mask, "mask_without_image")))
            elif mask is None:
                items.append((record_id, self.reject(record_id, image, "image_without_mask")))
            else:
                record = RawRecord(
                    source=self.name,
                    record_id=record_id,
                    modality=self.modality,
                    images=(image,),
                    masks=(mask,),
                    meta={"domain": domain, "split": split},
                    root=self.root,
                    official_split=official_split(split),
                )
                items.append((record_id, record))
        for _, item in sorted(items, key=lambda kv: natural_key(kv[0])):
            yield item

    def load(self, record: RawRecord) -> LoadedRecord:
        image_path, mask = record.images[0], record.masks[0]
        image = self.read_image(record, image_path)
        rel = record.rel(mask)
        rgb, mask_sha = read_colour_mask(mask, rel, image, self.limits)
        digests = {record.rel(image_path): image.file_sha256, rel: mask_sha}
        organs = self._decode(rgb, rel)
        return LoadedRecord(
            record=record,
            media=[image.media],
            masks=organs,
            facts={
                "label": None,
                "label_set": (),
                "body_part": "abdomen",
                "lesion_mask": None,
                "lesion_expected": None,
                # The colour code annotates every organ, so an organ without pixels is absent:
                # this lets organ_presence answer "no" as well as "yes".
                "organs_annotated": tuple(sorted(self._organs)),
            },
            file_sha256=digests,
        )

    def _decode(self, rgb: np.ndarray, rel: str) -> dict[str, np.ndarray]:
        """Colour-coded (H, W, 3) mask -> {organ: bool mask} of the organs present."""
        tol = int(self.opts["colour_tolerance"])
        signed = rgb.astype(np.int16)

        def matches(colour: tuple[int, int, int]) -> np.ndarray:
            return (np.abs(signed - np.asarray(colour, dtype=np.int16)) <= tol).all(axis=-1)

        known = np.zeros(rgb.shape[:2], dtype=bool)
        for colour in self._background:
            known |= matches(colour)
        organs: dict[str, np.ndarray] = {}
        for name, colour in self._organs.items():
            hit = matches(colour)
            known |= hit
            if hit.any():
                organs[name] = hit
        unknown = ~known
        if unknown.mean() > float(self.opts["max_unknown_fraction"]):
            colours, counts = np.unique(rgb[unknown], axis=0, return_counts=True)
            top = [
                tuple(int(c) for c in colours[i]) for i in np.argsort(-counts, kind="stable")[:3]
            ]
            raise Rejected(
                "unknown_mask_colour",
                rel,
                f"{int(unknown.sum())} pixels outside the colour code, e.g. {top}",
            )
        if not organs:
            raise Rejected("empty_annotation", rel, "no organ colour in the mask")
        return organs
