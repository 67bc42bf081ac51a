"""SLAKE (Liu et al. 2021; licence UNCONFIRMED): bilingual (English and Chinese) radiology VQA, its train
split as a training source.

Released layout (``docs/corpora.md``; parsed by ``datakit.benchmarks.slake``)::

    Slake1.0/train.json, validate.json (HF mirror: validation.json), test.json
    Slake1.0/imgs/xmlab<N>/source.jpg

Both languages are read: a Chinese question gives a Chinese sample (``lang`` from ``q_lang``).
Train and test ask about the same ``xmlab`` images: registered with ``datakit decontam add slake
DIR --benchmark slake``, the test images make their train records ``contaminated``. The option
``splits`` may add ``validation``. The top folder name ``Slake1.0`` (the released zip's) is
UNCONFIRMED. Per-image ``mask.png``/``detection.json`` are not read (``not_in_layout`` rows).
Row handling is ``benchmark_splits``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datakit.benchmarks import slake
from datakit.registry import register_source
from datakit.sources.benchmark_splits import BenchmarkSplitReader


@register_source
class SlakeReader(BenchmarkSplitReader):
    name = "slake"
    modality = "radiology"
    top_folder = "Slake1.0"
    benchmark = "slake"
    options: dict[str, Any] = {"splits": ["train"]}

    def split_files(self, split: str) -> list[Path]:
        return [slake.split_file(self.root, split)]
