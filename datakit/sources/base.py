"""The source-reader interface: discover records in a released layout, then load one.

``discover`` is cheap (walks folders, pairs files) and yields ``RawRecord``s plus ``Rejection``s
for inputs that cannot form a record (a mask without its image, an unreadable folder...).
``load`` reads and validates one record's files and raises ``Rejected`` on bad content. Both
name the offending file so a data engineer can find it.

Every file under a source's top folder ends up in the manifest: after discovery the plan walks
the folder (``datakit.sources.walk``) and each file no record, rejection or index file claims
becomes an ``ignored`` or ``rejected`` row whose reason ``unclaimed`` gives (readers refine it:
wrong-case class folders, stray mask names, unexpected subfolders...).

Options every reader takes (``COMMON_OPTIONS``): ``max_pixels`` (an image above it is rejected
``too_large`` before decoding) and ``max_side`` (images and their masks downsized together);
images are read through ``datakit.normalise``.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np

from datakit.normalise import (DEFAULT_MAX_PIXELS, ImageLimits, NormalisedImage, normalise_image_bytes, read_image,
                               read_mask)
from datakit.record import LoadedRecord, RawRecord

COMMON_OPTIONS: dict[str, Any] = {"max_pixels": DEFAULT_MAX_PIXELS, "max_side": None}
MASKS_CHOICES = ("required", "optional")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """An input that was refused (``rejected``) or is not an input (``ignored``) at discovery
    time: it never became a record."""

    source: str
    record_id: str
    path: str
    reason: str
    detail: str = ""
    status: str = "rejected"  # or "ignored"

    @property
    def uid(self) -> str:
        return f"{self.source}:{self.record_id}"

    @property
    def manifest_id(self) -> str:
        """Unique per refused file (one record id may have several orphan files)."""
        return f"{self.source}:{self.path}"


class SourceReader(abc.ABC):
    """Base class of every dataset reader.

    Subclasses set ``name`` (registry key), ``modality``, ``top_folder`` (the released top
    folder a ``--sources DIR`` holds) and, for labelled data, ``label_set``. Options from the
    recipe (path patterns and the like) arrive as keyword arguments; unknown ones are an error.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    top_folder: ClassVar[str]
    label_set: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, Any]] = {}  # option name -> default

    def __init__(self, root: Path, **options: Any) -> None:
        self.check_options(options)
        self.root = Path(root)
        self.opts: dict[str, Any] = {**self.known_options(), **options}
        self.limits = ImageLimits.from_options(self.name, self.opts)
        self._set_aside: dict[str, tuple[str, str]] = {}  # rel path -> (reason, detail), see set_aside

    @classmethod
    def known_options(cls) -> dict[str, Any]:
        return {**COMMON_OPTIONS, **cls.options}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Refuse unknown options and bad common values (a recipe is checked with this too)."""
        unknown = set(options) - set(cls.known_options())
        if unknown:
            raise ValueError(f"source {cls.name}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(cls.known_options())}")
        ImageLimits.from_options(cls.name, {**COMMON_OPTIONS, **options})
        if "masks" in cls.options and options.get("masks", cls.options["masks"]) not in MASKS_CHOICES:
            raise ValueError(f"source {cls.name}: option masks must be one of {list(MASKS_CHOICES)}, "
                             f"got {options['masks']!r}")

    @abc.abstractmethod
    def discover(self) -> Iterator[RawRecord | Rejection]:
        """Yield every record (and refused input) in a stable, sorted order."""

    @abc.abstractmethod
    def load(self, record: RawRecord) -> LoadedRecord:
        """Read and validate one record; raise ``datakit.errors.Rejected`` on bad content."""

    # --- reading images: one normalisation for every reader ---
    def read_image(self, record: RawRecord, path: Path) -> NormalisedImage:
        return read_image(path, record.rel(path), self.limits)

    def read_image_bytes(self, data: bytes, where: str) -> NormalisedImage:
        """An image embedded in another file (a parquet cell), normalised as a file would be;
        ``where`` (``<file>:<row>``) names it in any refusal."""
        return normalise_image_bytes(data, where, self.limits)

    def read_mask(self, record: RawRecord, path: Path, image: NormalisedImage) -> tuple[np.ndarray, str]:
        """A binary mask of ``image`` (bool, at the image's final size) and the file's sha256."""
        return read_mask(path, record.rel(path), image, self.limits)

    def load_labelled_image(self, record: RawRecord, *, label_set: tuple[str, ...], body_part: str,
                            **extra_facts: Any) -> LoadedRecord:
        """``load`` of a classification record: one image file and a label (no masks)."""
        path = record.images[0]
        image = self.read_image(record, path)
        return LoadedRecord(
            record=record,
            media=[image.media],
            facts={"label": record.label, "label_set": label_set, "body_part": body_part,
                   "lesion_mask": None, "lesion_expected": None, **extra_facts},
            file_sha256={record.rel(path): image.file_sha256},
        )

    # --- accounting for every file under the top folder ---
    def index_files(self) -> Iterable[Path]:
        """Files the reader reads besides its records' own: CSV/JSON indexes, split lists."""
        return ()

    def record_files(self, record: RawRecord) -> tuple[Path, ...]:
        """The files one record reads (a reader with side files, e.g. reports, adds them)."""
        return record.images + record.masks

    def input_exts(self) -> frozenset[str]:
        """Extensions of the files this reader reads as inputs (lower case, with the dot)."""
        exts = [e for key in ("image_exts", "mask_exts", "image_ext") for e in _as_list(self.opts.get(key))]
        return frozenset(e.lower() for e in exts)

    def set_aside(self, path: Path, reason: str, detail: str) -> None:
        """Note a file discovery saw and did not use (an image only a refused row names, one
        trimmed from its document): unless a record claims it, its row is ``ignored`` with this
        reason. The first note of a file is kept (discovery order is stable)."""
        try:
            rel = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return  # outside the top folder: not a file the walk sees
        self._set_aside.setdefault(rel, (reason, detail))

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        """(status, reason, detail) of a file under the top folder that nothing claimed."""
        if rel.as_posix() in self._set_aside:
            return ("ignored", *self._set_aside[rel.as_posix()])
        if any(part.startswith(".") for part in rel.parts):
            return "ignored", "hidden_file", "names starting with a dot are not inputs"
        exts = self.input_exts()
        if exts and rel.suffix.lower() not in exts:
            return "ignored", "unknown_extension", f"{rel.suffix or 'no extension'!r} is not one of {sorted(exts)}"
        return "ignored", "not_in_layout", f"not a file of the {self.name} layout this reader reads"

    def reject(self, record_id: str, path: Path | str, reason: str, detail: str = "",
               status: str = "rejected") -> Rejection:
        p = Path(path)
        try:
            rel = p.relative_to(self.root).as_posix()
        except ValueError:
            rel = p.as_posix()
        return Rejection(source=self.name, record_id=record_id, path=rel, reason=reason, detail=detail,
                         status=status)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """``benign (2)`` sorts before ``benign (10)``; total and stable for any string."""
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", text))
