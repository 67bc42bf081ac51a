"""Finding and signing the images of an evaluation benchmark, in its released layout.

A layout is recognised from marker files (``notes/source-layouts.md``, "Evaluation
benchmarks"); with ``split="test"`` a layout that records its test split registers only those
images (PMC-VQA's training images are PubMed Central figures that training sources such as
ROCO and MedICaT legitimately share; only its test images must stay out). Any other folder is
walked whole. Readable forms: image files, ``.npy`` volumes (M3D: each depth slice, min-max
scaled to uint8 as the volume converter renders it), and Parquet files with an image column
(``{"bytes": ...}`` structs or binary, as the Hugging Face mirrors ship).

Each entry is (``file`` label, signature); labels are paths relative to the benchmark folder,
with ``#slice=K`` or ``#row=K`` for a part of a file.
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from datakit.dedup.image_hash import ImageSignature, signature
from datakit.errors import Rejected
from datakit.media import decode_image
from datakit.volume import as_volume, to_uint8

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
VOLUME_EXTS = frozenset({".npy"})
TABLE_EXTS = frozenset({".parquet"})


def _csv_column(path: Path, column: str) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [row[column] for row in csv.DictReader(f) if row.get(column)]


def _pmc_vqa_test(root: Path) -> list[str]:
    names = [n for p in ("test.csv", "test_2.csv") if (root / p).exists() for n in _csv_column(root / p, "Figure_path")]
    return sorted({f"images/{n}" for n in names})


def _slake_test(root: Path) -> list[str]:
    entries = json.loads((root / "test.json").read_text(encoding="utf-8"))
    return sorted({f"imgs/{e['img_name']}" for e in entries})


def _pathvqa_test(root: Path) -> list[str]:
    return sorted(f"images/test/{p.name}" for p in (root / "images/test").iterdir() if p.is_file())


def _r2gen_test(root: Path) -> list[str]:
    ann = json.loads((root / "annotation.json").read_text(encoding="utf-8"))
    return sorted({f"images/{p}" for e in ann.get("test", []) for p in e["image_path"]})


@dataclass(frozen=True, slots=True)
class Layout:
    """A released layout: ``markers`` (globs) that must all match, where its images are, and
    how to list its test split (relative paths), when the release records one."""

    name: str
    markers: tuple[str, ...]
    include: tuple[str, ...]
    test_files: Callable[[Path], list[str]] | None = None


LAYOUTS: tuple[Layout, ...] = (
    Layout("vqa_rad", ("VQA_RAD Image Folder",), ("VQA_RAD Image Folder/*",)),
    Layout("slake", ("imgs/xmlab*/source.jpg", "test.json"), ("imgs/xmlab*/source.jpg",), _slake_test),
    Layout("slake_imgs", ("xmlab*/source.jpg",), ("xmlab*/source.jpg",)),
    Layout("pathvqa", ("images/test",), ("images/**/*",), _pathvqa_test),
    Layout("pmc_vqa", ("images", "test*.csv"), ("images/**/*",), _pmc_vqa_test),
    Layout("omnimedvqa", ("Images", "QA_information"), ("Images/**/*",)),
    Layout("r2gen", ("images", "annotation.json"), ("images/**/*",), _r2gen_test),
)


def detect_layout(root: Path) -> Layout | None:
    for layout in LAYOUTS:
        if all(next(root.glob(m), None) is not None for m in layout.markers):
            return layout
    return None


@dataclass(slots=True)
class ScanPlan:
    """The files to read, what layout chose them, and the files passed over, by reason."""

    layout: str
    split: str
    files: list[str]
    skipped: dict[str, list[str]] = field(default_factory=dict)


def plan_scan(root: Path, split: str = "test") -> ScanPlan:
    """Which files of ``root`` to register. ``split="test"`` narrows a known layout to its test
    split; ``"all"`` takes every image the layout holds."""
    if split not in ("test", "all"):
        raise ValueError(f"split must be 'test' or 'all', got {split!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark folder {root} does not exist or is not a folder")
    layout = detect_layout(root)
    skipped: dict[str, list[str]] = {}
    if layout is not None and split == "test" and layout.test_files is not None:
        try:
            listed = layout.test_files(root)
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise ValueError(
                f"{root}: looks like {layout.name} but its test split list cannot be read ({e!r}); "
                "fix the file or register every image with split='all'"
            ) from e
        files = [f for f in listed if (root / f).is_file()]
        if len(files) < len(listed):
            skipped["listed_but_missing"] = sorted(set(listed) - set(files))
        return ScanPlan(layout.name, "test", files, skipped)
    patterns = layout.include if layout is not None else ("**/*",)
    found = sorted({p.relative_to(root).as_posix() for pat in patterns for p in root.glob(pat) if p.is_file()})
    readable = IMAGE_EXTS | VOLUME_EXTS | TABLE_EXTS
    files = [f for f in found if Path(f).suffix.lower() in readable]
    other = [f for f in found if Path(f).suffix.lower() not in readable]
    if other:
        skipped["not_an_image"] = other
    return ScanPlan(layout.name if layout else "folder", "all", files, skipped)


def _volume_entries(path: Path, rel: str) -> Iterator[tuple[str, ImageSignature]]:
    """Every depth slice, rendered exactly as the volume converter renders training slices
    (per-slice min-max, truncated to uint8), so a shared CT volume matches bit for bit."""
    vol = as_volume(np.load(path, mmap_mode="r", allow_pickle=False), rel)
    for k in range(vol.shape[0]):
        yield f"{rel}#slice={k}", signature(Image.fromarray(to_uint8(np.asarray(vol[k])), "L"))


def _table_entries(path: Path, rel: str) -> Iterator[tuple[str, ImageSignature]]:
    import polars as pl

    df = pl.read_parquet(path)
    cols = [c for c, t in df.schema.items() if t == pl.Binary or (isinstance(t, pl.Struct) and "bytes" in {f.name for f in t.fields})]
    if not cols:
        raise Rejected("no_image_column", rel, f"columns {df.columns} hold no image bytes")
    for col in cols:
        values = df[col].struct.field("bytes") if df.schema[col] != pl.Binary else df[col]
        for row, data in enumerate(values.to_list()):
            if data:
                yield f"{rel}#{col}/row={row}", signature(decode_image(data, f"{rel}#row={row}"))


def sign_file(root: Path, rel: str) -> tuple[list[tuple[str, ImageSignature]], str | None]:
    """The entries of one file, or ([], reason) when it cannot be read."""
    path = root / rel
    ext = path.suffix.lower()
    try:
        if ext in VOLUME_EXTS:
            return list(_volume_entries(path, rel)), None
        if ext in TABLE_EXTS:
            return list(_table_entries(path, rel)), None
        return [(rel, signature(decode_image(path.read_bytes(), rel)))], None
    except Rejected as e:
        return [], e.reason
    except (OSError, ValueError) as e:  # unreadable file, malformed npy or parquet
        return [], f"unreadable: {type(e).__name__}"


def _sign_chunk(args: tuple[str, list[str]]) -> list[tuple[list[tuple[str, ImageSignature]], str | None]]:
    root, rels = args
    return [sign_file(Path(root), rel) for rel in rels]


def scan(root: Path, plan: ScanPlan, workers: int = 1) -> tuple[list[tuple[str, ImageSignature]], dict[str, list[str]]]:
    """Sign every planned file (in a process pool when ``workers > 1``); entries in file order."""
    chunks = [(str(root), plan.files[i : i + 64]) for i in range(0, len(plan.files), 64)]
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = [r for chunk in pool.map(_sign_chunk, chunks) for r in chunk]
    else:
        results = [r for chunk in map(_sign_chunk, chunks) for r in chunk]
    entries: list[tuple[str, ImageSignature]] = []
    skipped = {k: list(v) for k, v in plan.skipped.items()}
    for rel, (found, reason) in zip(plan.files, results):
        entries.extend(found)
        if reason is not None:
            skipped.setdefault(reason, []).append(rel)
    return entries, skipped
