"""VQA-RAD (Lau et al. 2018, OSF 89kps; licence UNCONFIRMED): radiology questions on MedPix images, its train
split as a training source.

Released layout (``docs/corpora.md``; parsed by ``datakit.benchmarks.vqa_rad``)::

    VQA_RAD/VQA_RAD Dataset Public.json     2,248 questions (test: phrase_type test_*)
    VQA_RAD/VQA_RAD Image Folder/synpicNNNN.jpg

Train is every question whose ``phrase_type`` is not a test one, minus the paraphrases linked to
a test question (``qid_linked_id``), which the benchmark reader drops. Train and test questions
ask about the same images: registered with ``datakit decontam add vqa_rad DIR --benchmark
vqa_rad``, the test images make their train records ``contaminated``. The top folder name is
UNCONFIRMED (OSF ships loose files). Row handling is ``benchmark_splits``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datakit.benchmarks import vqa_rad
from datakit.registry import register_source
from datakit.sources.benchmark_splits import BenchmarkSplitReader


@register_source
class VqaRadReader(BenchmarkSplitReader):
    name = "vqa_rad"
    modality = "radiology"
    top_folder = "VQA_RAD"
    benchmark = "vqa_rad"
    options: dict[str, Any] = {"splits": ["train"]}

    def split_files(self, split: str) -> list[Path]:
        return [self.root / vqa_rad.QUESTIONS]
