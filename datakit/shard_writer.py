"""Deterministic WebDataset tar writing and reading.

The same samples give the same bytes on every run and machine: members in a fixed order, every
header field fixed (mtime 0, uid/gid 0, no user/group names, mode 0644, GNU format so long names
are encoded the same way everywhere). A tar is written under a temporary name and renamed only
when complete, so a killed build never leaves a half-written tar under a final name.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

_FORMAT = tarfile.GNU_FORMAT


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


class AtomicTarWriter:
    """Write members to ``<path>.tmp-<pid>``; ``close()`` fsyncs and renames it to ``path``.

    Used as a context manager; an exception inside the block removes the temporary file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self._fh = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=_FORMAT)
        self.offsets: dict[str, tuple[int, int]] = {}  # member name -> (data offset, size)

    def add(self, name: str, data: bytes) -> None:
        ti = _tarinfo(name, len(data))
        self._tar.addfile(ti, io.BytesIO(data))
        # Data starts right after the header block(s) just written; the tar's offset now
        # points past the data rounded up to 512 bytes.
        end = self._tar.offset
        padded = (len(data) + 511) // 512 * 512
        self.offsets[name] = (end - padded, len(data))

    def add_sample(self, key: str, parts: Iterable[tuple[str, bytes]]) -> None:
        for part, data in parts:
            self.add(f"{key}.{part}", data)

    def close(self) -> None:
        self._tar.close()  # writes the end-of-archive blocks
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._tar.close()
            self._fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicTarWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_member(path: Path, offset: int, size: int) -> bytes:
    """Read one member's data by the offset recorded when it was written."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise OSError(f"{path}: short read at offset {offset} ({len(data)} of {size} bytes)")
    return data


def iter_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {part: bytes}) from a webdataset tar, in file order (for verify and tools)."""
    current: str | None = None
    parts: dict[str, bytes] = {}
    with tarfile.open(path, "r") as tar:
        for m in tar:
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            key, _, part = base.partition(".")
            fh = tar.extractfile(m)
            data = fh.read() if fh else b""
            if key != current and current is not None:
                yield current, parts
                parts = {}
            current = key
            parts[part] = data
    if current is not None:
        yield current, parts


def remove_stale_temporaries(folder: Path) -> int:
    """Remove ``*.tmp-*`` files a killed run left behind; returns how many."""
    n = 0
    if folder.exists():
        for p in folder.rglob("*.tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
    return n
