"""Brain Tumor MRI Dataset (M. Nickparvar, Kaggle ``masoudnickparvar/brain-tumor-mri-dataset``).

Released layout (``notes/source-layouts.md`` section 5)::

    <top>/{Training,Testing}/{glioma,meningioma,notumor,pituitary}/Tr-gl_0010.jpg | Te-gl_0010.jpg

The class folder is the label. Record ids keep the split and class (``Training/glioma/Tr-gl_0010``)
since numbers repeat across classes. Decisions and assumptions:

* Both released splits are read by default. Our own train/val split is drawn by the build, so an
  image of ``Testing`` may land in our training shards; a recipe that must keep the dataset's test
  images out sets ``splits: [Training]``.
* File names carry no patient id, so nothing groups slices of one patient (the dataset is a merge
  of figshare, SARTAJ and Br35H); near-duplicate slices are left to the dedup stage.
* The top folder name ``brain-tumor-mri-dataset`` (the Kaggle slug) is UNCONFIRMED; the archive
  itself holds ``Training/`` and ``Testing/`` at its root, so a recipe ``path`` may point anywhere.

``ClassFolderReader`` is the shared base of datasets whose label is an image's folder (this one and
the Digital Knee X-ray reader): one record per image, ``unreadable_dir`` for a missing class folder,
and names starting with a dot or with another extension skipped.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.splits import official_split


class ClassFolderReader(SourceReader):
    """A dataset whose label is the folder an image sits in."""

    body_part: ClassVar[str]

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._exts = {e.lower() for e in self.opts["image_exts"]}

    def folder_records(self, folder: Path, prefix: str, label: str,
                       meta: dict[str, Any]) -> Iterator[RawRecord | Rejection]:
        """One record per image of ``folder``, ids ``<prefix>/<stem>``, in natural order."""
        try:
            files = [p for p in folder.iterdir() if not p.name.startswith(".")]
        except OSError as e:
            yield self.reject(prefix, folder, "unreadable_dir", e.strerror or str(e))
            return
        images = sorted((p for p in files if p.suffix.lower() in self._exts and p.is_file()),
                        key=lambda p: natural_key(p.name))
        seen: dict[str, Path] = {}
        for p in images:
            if p.stem in seen:  # x.png next to x.jpg: two inputs, one id
                yield self.reject(f"{prefix}/{p.name}", p, "duplicate_stem", f"also {seen[p.stem].name}")
                continue
            seen[p.stem] = p
            yield RawRecord(source=self.name, record_id=f"{prefix}/{p.stem}", modality=self.modality,
                            images=(p,), label=label, meta=meta, root=self.root,
                            official_split=official_split(meta.get("split")))

    @abc.abstractmethod
    def labels(self) -> tuple[str, ...]:
        """Every label the configured folders can give, sorted."""

    def load(self, record: RawRecord) -> LoadedRecord:
        return self.load_labelled_image(record, label_set=self.labels(), body_part=self.body_part)


@register_source
class BrainTumorMriReader(ClassFolderReader):
    name = "brain_tumor_mri"
    modality = "mri"
    top_folder = "brain-tumor-mri-dataset"
    body_part = "brain"
    label_set = ("glioma", "meningioma", "notumor", "pituitary")
    options: dict[str, Any] = {
        "splits": ["Training", "Testing"],
        "classes": ["glioma", "meningioma", "notumor", "pituitary"],  # label = folder lower-cased
        "image_exts": [".jpg", ".jpeg", ".png"],
    }

    def labels(self) -> tuple[str, ...]:
        return tuple(sorted(c.lower() for c in self.opts["classes"]))

    def discover(self) -> Iterator[RawRecord | Rejection]:
        for split in sorted(self.opts["splits"], key=natural_key):
            for cls in sorted(self.opts["classes"], key=natural_key):
                yield from self.folder_records(self.root / split / cls, f"{split}/{cls}", cls.lower(),
                                               {"split": split})
