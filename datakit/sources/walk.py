"""Every file under a source's top folder, and the symlinks that leave it.

The plan walks each source's top folder after discovery, so that every file is a manifest row:
a record's file, a discovery rejection, an index file the reader reads, or else an ``ignored`` /
``rejected`` row whose reason the reader gives (``SourceReader.unclaimed``). Symlinks are
followed only inside the tree: a file or folder that resolves outside the source's top folder is
``outside_source_tree`` (a link to another dataset, to a home folder, to ``/etc``), whether a
reader picked it up or not. Folder links inside the tree are not descended (their files are
walked where they live), so no file is counted twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from datakit.record import RawRecord
from datakit.sources.base import Rejection, SourceReader

OUTSIDE = "outside_source_tree"


def _inside(real: Path, real_root: Path) -> bool:
    return real == real_root or real.is_relative_to(real_root)


def outside_target(path: Path, root: Path) -> str | None:
    """The link text when ``path`` lies under ``root`` but resolves outside it; else None.

    A path that is not under ``root`` at all is a reader's choice (M3D-VQA reads the M3D-Cap
    volumes beside its own folder) and is not judged here.
    """
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    real_root = root.resolve()
    if _inside(path.resolve(), real_root):
        return None
    probe = root
    for part in rel.parts:  # name the first link on the way out
        probe = probe / part
        if probe.is_symlink():
            return f"{probe.relative_to(root).as_posix()} -> {os.readlink(probe)}"
    return rel.as_posix()


@dataclass(frozen=True, slots=True)
class TreeEntry:
    rel: PurePosixPath
    kind: str  # "file" | "outside" | "broken_link" | "unreadable_dir" | "linked_dir"
    detail: str = ""


def walk_tree(root: Path) -> Iterator[TreeEntry]:
    """Files under ``root`` in sorted order, plus the entries that cannot be walked."""
    real_root = root.resolve()

    def walk(folder: Path, rel: PurePosixPath) -> Iterator[TreeEntry]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            yield TreeEntry(rel, "unreadable_dir", e.strerror or str(e))
            return
        for entry in entries:
            path, sub = Path(entry.path), rel / entry.name
            if entry.is_symlink():
                link = os.readlink(path)
                real = path.resolve()
                if not real.exists():
                    yield TreeEntry(sub, "broken_link", f"symlink -> {link}")
                elif not _inside(real, real_root):
                    yield TreeEntry(sub, "outside", f"symlink -> {link}")
                elif real.is_dir():
                    yield TreeEntry(sub, "linked_dir", f"symlink -> {link}")
                else:
                    yield TreeEntry(sub, "file")
            elif entry.is_dir(follow_symlinks=False):
                yield from walk(path, sub)
            else:
                yield TreeEntry(sub, "file")

    yield from walk(root, PurePosixPath())


def claimed_paths(reader: SourceReader, records: list[RawRecord], rejections: list[Rejection]) -> set[str]:
    """Paths (relative to the reader's top folder) that a record, rejection or index file uses."""
    claimed = {j.path for j in rejections}
    for path in [*reader.index_files(), *(p for r in records for p in reader.record_files(r))]:
        try:
            claimed.add(Path(path).relative_to(reader.root).as_posix())
        except ValueError:
            pass  # read from outside the top folder on purpose (see ``outside_target``)
    return claimed


def unclaimed_files(reader: SourceReader, claimed: set[str]) -> Iterator[Rejection]:
    """One ``ignored``/``rejected`` row per file (or unwalkable entry) nothing claimed."""
    covered = {p.as_posix() for c in claimed for p in PurePosixPath(c).parents}  # folders of claimed files
    for entry in walk_tree(reader.root):
        rel = entry.rel.as_posix()
        if rel in claimed or any(p.as_posix() in claimed for p in entry.rel.parents):
            continue
        if entry.kind == "file":
            status, reason, detail = reader.unclaimed(entry.rel)
        elif rel in covered:
            continue  # a linked or unreadable folder whose files a reader already accounted for
        elif entry.kind == "outside":
            status, reason, detail = "rejected", OUTSIDE, f"{entry.detail}: resolves outside {reader.root.name}/"
        elif entry.kind == "broken_link":
            status, reason, detail = "ignored", "broken_symlink", entry.detail
        elif entry.kind == "linked_dir":
            status, reason, detail = "ignored", "linked_folder", f"{entry.detail} (its files are counted where they live)"
        else:
            status, reason, detail = "rejected", "unreadable_dir", entry.detail
        yield Rejection(source=reader.name, record_id=rel, path=rel, reason=reason, detail=detail, status=status)
