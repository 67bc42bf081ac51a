"""Readers of the evaluation benchmarks' released layouts, one module per benchmark.

Each module has ``NAME``, ``SPLITS`` and ``read(root, split="test") -> list[BenchItem]``; a module
whose release has rows that cannot form an item also has ``read_all`` returning them with the
reason. Evaluation (``megatron_fleming.eval``), decontamination (``datakit decontam add
--benchmark``) and training sources built on a benchmark's train split all read through here,
so the images training drops are exactly the images evaluation shows the model.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from datakit.benchmarks.items import BenchItem, BenchmarkLayoutError

__all__ = ["BENCHMARKS", "BenchItem", "BenchmarkLayoutError", "BenchmarkRead", "module", "read_benchmark"]

#: Benchmark name -> module under ``datakit.benchmarks``.
BENCHMARKS = ("vqa_rad", "slake", "path_vqa", "pmc_vqa", "omnimedvqa", "iu_xray", "mimic_cxr", "m3d_vqa", "medvideo")


@dataclass(frozen=True, slots=True)
class BenchmarkRead:
    """The items of one split, and the released rows that could not become items (where, why)."""

    name: str
    split: str
    items: list[BenchItem]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def module(name: str) -> ModuleType:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return importlib.import_module(f"datakit.benchmarks.{name}")


def read_benchmark(name: str, root: str | Path, split: str = "test") -> BenchmarkRead:
    """Read ``split`` of benchmark ``name`` from its released folder ``root``; duplicate qids are
    refused (they would make a responses file ambiguous)."""
    mod = module(name)
    if hasattr(mod, "read_all"):
        items, skipped = mod.read_all(Path(root), split)
    else:
        items, skipped = mod.read(Path(root), split), []
    seen: set[str] = set()
    for item in items:
        if item.qid in seen:
            raise BenchmarkLayoutError(f"{name} ({root}): question id {item.qid!r} appears twice in split {split}")
        seen.add(item.qid)
    return BenchmarkRead(name, split, items, list(skipped))
