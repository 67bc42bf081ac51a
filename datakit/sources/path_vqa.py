"""PathVQA (He et al. 2020; licence UNCONFIRMED): pathology questions on textbook and PEIR figures, its train
split as a training source.

Released layout (``docs/corpora.md``; parsed by ``datakit.benchmarks.path_vqa``, pickles read
with an unpickler that refuses every class)::

    pvqa/qas/{train,val,test}/<split>_qa.pkl     list of {image, question, answer}
    pvqa/images/{train,val,test}/<split>_NNNN.jpg

The train and test folders hold different files, but some are the same picture (the release
drew both from the same books): registered with ``datakit decontam add path_vqa DIR --benchmark
path_vqa``, the test pictures make the train records that show them ``contaminated`` (pixel
signatures, not names). The option ``splits`` may add ``val``. Row handling is
``benchmark_splits``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datakit.registry import register_source
from datakit.sources.benchmark_splits import BenchmarkSplitReader


@register_source
class PathVqaReader(BenchmarkSplitReader):
    name = "path_vqa"
    modality = "pathology"
    top_folder = "pvqa"
    benchmark = "path_vqa"
    options: dict[str, Any] = {"splits": ["train"]}

    def split_files(self, split: str) -> list[Path]:
        return [self.root / "qas" / split / f"{split}_qa.pkl"]
