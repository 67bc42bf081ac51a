"""IU-Xray (Demner-Fushman et al. 2016) report generation, R2Gen layout: see ``r2gen``."""

from __future__ import annotations

from pathlib import Path

from datakit.benchmarks.items import BenchItem
from datakit.benchmarks.r2gen import SPLITS, read_reports

NAME = "iu_xray"
__all__ = ["NAME", "SPLITS", "read"]


def read(root: Path, split: str = "test") -> list[BenchItem]:
    return read_reports(NAME, root, split)
