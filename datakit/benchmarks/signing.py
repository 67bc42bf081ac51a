"""Signatures of the images a benchmark's items show the model, for decontamination.

``datakit decontam add NAME DIR --benchmark BENCH`` registers these instead of walking the
folder: every image file an item names, every slice the model sees of a volume, every frame it
sees of a clip — decoded by ``datakit.benchmarks.media``, the path evaluation takes. Each file is
decoded once however many questions share it.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from datakit.benchmarks import read_benchmark
from datakit.benchmarks.items import BenchItem
from datakit.benchmarks.media import load_media
from datakit.dedup.image_hash import ImageSignature, signature
from datakit.errors import Rejected

Entry = tuple[str, ImageSignature]


def unique_media(items: list[BenchItem]) -> list[BenchItem]:
    """One single-file item per distinct media file, in first-use order."""
    seen: dict[Path, BenchItem] = {}
    for item in items:
        for path in item.media:
            seen.setdefault(path, dataclasses.replace(item, media=(path,)))
    return list(seen.values())


def _sign(item: BenchItem) -> tuple[list[Entry], str | None]:
    try:
        return [(label, signature(im)) for label, im in load_media(item)], None
    except Rejected as e:
        return [], e.reason


def benchmark_entries(name: str, root: Path, split: str = "test",
                      workers: int = 1) -> tuple[int, list[Entry], dict[str, list[str]]]:
    """(files planned, entries in file order, skipped files and rows by reason)."""
    read = read_benchmark(name, root, split)
    files = unique_media(read.items)
    if workers > 1 and len(files) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_sign, files, chunksize=16))
    else:
        results = [_sign(f) for f in files]
    entries: list[Entry] = []
    skipped: dict[str, list[str]] = {}
    for item, (found, reason) in zip(files, results):
        entries.extend(found)
        if reason is not None:
            skipped.setdefault(reason, []).append(item.media_labels[0])
    for where, why in read.skipped:
        skipped.setdefault("row_not_an_item", []).append(f"{where} ({why})")
    return len(files), entries, skipped
