"""Reading built sample tars (``<key>.json`` + ``<key>.<i>.<ext>``) in two steps: scan, then fetch.

A scan reads the parts a caller asks for (the JSON, say) and records where every other part
lies, so a second step fetches only the samples it chose by seeking, without parsing the tar
again. Writing is ``datakit.shard_writer.AtomicTarWriter``'s job.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator


@dataclass(frozen=True, slots=True)
class TarSample:
    key: str
    parts: dict[str, bytes]  # the parts that were read
    extents: dict[str, tuple[int, int]]  # every part: (data offset, size) in the tar file


def scan_sample_tar(path: Path, read: frozenset[str] | None = None) -> Iterator[TarSample]:
    """Samples in tar order (a sample's members are consecutive). Parts not in ``read`` (all,
    when None) are skipped unread but located, so a later ``read_extents`` fetches them without
    parsing the tar again."""
    key: str | None = None
    parts: dict[str, bytes] = {}
    extents: dict[str, tuple[int, int]] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            k, _, part = member.name.rsplit("/", 1)[-1].partition(".")
            if k != key:
                if key is not None:
                    yield TarSample(key, parts, extents)
                key, parts, extents = k, {}, {}
            extents[part] = (member.offset_data, member.size)
            if read is None or part in read:
                extracted = tar.extractfile(member)
                parts[part] = extracted.read() if extracted is not None else b""
    if key is not None:
        yield TarSample(key, parts, extents)


def read_extents(f: BinaryIO, extents: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """The parts at the given extents of an open tar file."""
    out = {}
    for part, (offset, size) in extents.items():
        f.seek(offset)
        out[part] = f.read(size)
    return out
