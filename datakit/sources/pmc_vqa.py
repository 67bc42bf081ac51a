"""PMC-VQA (Zhang et al. 2023; licence UNCONFIRMED): multiple choice over PubMed Central figures, its
train split as a training source.

Released layout (``docs/corpora.md``; parsed by ``datakit.benchmarks.pmc_vqa``)::

    PMC-VQA/train_2.csv, test_2.csv   (v2; v1 train.csv/test.csv when v2 is absent)
    PMC-VQA/images/<Figure_path>

Each question becomes a multiple-choice sample: the options one a line (``A. text``, the
released letter prefixes and spaces removed by the benchmark reader), the reply ``B. text``.
Decontamination registers only PMC-VQA's test figures (its train figures are PubMed Central's,
which caption sources legitimately share). The top folder name is UNCONFIRMED. Row handling is
``benchmark_splits``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datakit.benchmarks import pmc_vqa
from datakit.registry import register_source
from datakit.sources.benchmark_splits import BenchmarkSplitReader


@register_source
class PmcVqaReader(BenchmarkSplitReader):
    name = "pmc_vqa"
    modality = "biomedical"
    top_folder = "PMC-VQA"
    benchmark = "pmc_vqa"
    options: dict[str, Any] = {"splits": ["train"]}

    def split_files(self, split: str) -> list[Path]:
        return [pmc_vqa.csv_file(self.root, split)]
