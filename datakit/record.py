"""Raw and loaded records: what a source reader yields, before any conversion.

A ``RawRecord`` only names files (cheap to discover, cheap to ship to another process); a
``LoadedRecord`` holds the decoded, validated content a converter needs. Masks arrive as named
boolean arrays (``{"lesion": m}``, ``{"liver": m, "kidney": m}``) whatever their on-disk encoding
(binary PNG, RGB colour code, JSON polygons), so converters never see a dataset's quirks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True, slots=True, kw_only=True)
class RawRecord:
    """One input record of a source, as discovered on disk.

    ``record_id`` is unique and stable within the source (it is derived from the released
    relative path, never from discovery order), so seeds, keys and splits do not depend on
    which machine or slice discovered it.
    """

    source: str
    record_id: str
    modality: str
    images: tuple[Path, ...] = ()
    masks: tuple[Path, ...] = ()
    label: str | None = None
    text: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    root: Path | None = None  # dataset top folder; paths in the manifest are relative to it
    # Records sharing a split key always land in the same split (train/val): one patient's two
    # eyes, one lesion photographed several times, one case's images. None = the record alone.
    split_key: str | None = None
    # The release's own split of this record ("train", "val" or "test"; None: the release has
    # none). A record the release holds out (val/test) never lands in our train split.
    official_split: str | None = None

    @property
    def uid(self) -> str:
        return f"{self.source}:{self.record_id}"

    def rel(self, path: Path) -> str:
        """Path as written in manifests and provenance: relative to the dataset top folder."""
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return path.as_posix()

    @property
    def primary_file(self) -> str:
        files = self.images or self.masks
        return self.rel(files[0]) if files else self.record_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """One medium of a sample: encoded bytes stored as read (no re-encode where avoidable)."""

    data: bytes
    ext: str  # "png", "jpg", "mp4" ... (webdataset part extension, no dot)
    width: int = 0
    height: int = 0
    sha256: str = ""  # of ``data``; computed once here, since every sample of a record reuses it
    # The decoded pixels of an image, kept from the one decode at read time so that the dedup
    # signature does not decode ``data`` again; never written to a shard.
    pixels: Any = field(default=None, compare=False, repr=False)
    # How an image read from a file was stored (``datakit.normalise``): ``{"stored": "as_read"}``
    # or ``{"stored": "re-encoded", "from": ..., "steps": [...]}``; None for other media.
    normalisation: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    def release_pixels(self) -> None:
        """Drop the decoded pixels once they are no longer needed (a cache, not the value)."""
        object.__setattr__(self, "pixels", None)


@dataclass(slots=True, kw_only=True)
class LoadedRecord:
    """A record whose files were read, decoded and validated."""

    record: RawRecord
    media: list[Media]
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # name -> bool (H, W)
    # Facts from the source that converters may use (label set, metadata, ...).
    facts: dict[str, Any] = field(default_factory=dict)
    # sha256 of each source file read, by relative path, for provenance.
    file_sha256: dict[str, str] = field(default_factory=dict)
