"""The source-reader interface: discover records in a released layout, then load one.

``discover`` is cheap (walks folders, pairs files) and yields ``RawRecord``s plus ``Rejection``s
for inputs that cannot form a record (a mask without its image, an unreadable folder...).
``load`` reads and validates one record's files and raises ``Rejected`` on bad content. Both
name the offending file so a data engineer can find it.
"""

from __future__ import annotations

import abc
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

from datakit.record import LoadedRecord, Media, RawRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """An input that was refused at discovery time (it never became a record)."""

    source: str
    record_id: str
    path: str
    reason: str
    detail: str = ""

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
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(
                f"source {self.name}: unknown option(s) {sorted(unknown)}; "
                f"known: {sorted(self.options)}"
            )
        self.root = Path(root)
        self.opts: dict[str, Any] = {**self.options, **options}

    @abc.abstractmethod
    def discover(self) -> Iterator[RawRecord | Rejection]:
        """Yield every record (and refused input) in a stable, sorted order."""

    @abc.abstractmethod
    def load(self, record: RawRecord) -> LoadedRecord:
        """Read and validate one record; raise ``datakit.errors.Rejected`` on bad content."""

    def load_labelled_image(self, record: RawRecord, *, label_set: tuple[str, ...], body_part: str,
                            **extra_facts: Any) -> LoadedRecord:
        """``load`` of a classification record: one image file and a label (no masks)."""
        from datakit.media import read_image

        image = record.images[0]
        media, im = read_image(image, record.rel(image))
        return LoadedRecord(
            record=record,
            media=[media],
            facts={"label": record.label, "label_set": label_set, "body_part": body_part,
                   "lesion_mask": None, "lesion_expected": None, **extra_facts},
            file_sha256={record.rel(image): file_sha256(media, im.format, image)},
        )

    def reject(self, record_id: str, path: Path | str, reason: str, detail: str = "") -> Rejection:
        p = Path(path)
        try:
            rel = p.relative_to(self.root).as_posix()
        except ValueError:
            rel = p.as_posix()
        return Rejection(source=self.name, record_id=record_id, path=rel, reason=reason, detail=detail)


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """``benign (2)`` sorts before ``benign (10)``; total and stable for any string."""
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", text))


def file_sha256(media: Media, fmt: str | None, path: Path) -> str:
    """sha256 of the file on disk. ``read_image`` keeps PNG and JPEG bytes as read, so their
    ``Media`` already holds the file; any other format was re-encoded and is hashed again."""
    if fmt in ("PNG", "JPEG"):
        return media.sha256
    return hashlib.sha256(path.read_bytes()).hexdigest()
