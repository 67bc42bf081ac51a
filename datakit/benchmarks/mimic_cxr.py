"""MIMIC-CXR (Johnson et al. 2019) report generation, R2Gen layout: see ``r2gen``."""

from __future__ import annotations

from pathlib import Path

from datakit.benchmarks.items import BenchItem
from datakit.benchmarks.r2gen import SPLITS, read_reports

NAME = "mimic_cxr"
__all__ = ["NAME", "SPLITS", "read"]


def read(root: Path, split: str = "test") -> list[BenchItem]:
    return read_reports(NAME, root, split)
