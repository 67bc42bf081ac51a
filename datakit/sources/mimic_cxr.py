"""MIMIC-CXR (Johnson et al. 2019, PhysioNet credentialed DUA) chest X-ray reports in R2Gen's
layout, its train split as report-generation samples.

Released layout (``docs/corpora.md``; parsed by ``datakit.benchmarks.r2gen``)::

    mimic_cxr/annotation.json                          {"train", "val", "test"}: id, report, image_path
    mimic_cxr/images/p10/p<subject>/s<study>/<dicom>.jpg

One record per entry (its listed images; R2Gen itself trains on the first); its ``report`` goes
to the ``captions`` converter (task ``report``). Nothing real is bundled (credentialed access).
Row handling is ``benchmark_splits``'s.
"""

from __future__ import annotations

from typing import Any

from datakit.registry import register_source
from datakit.sources.benchmark_splits import ReportSplitReader


@register_source
class MimicCxrReader(ReportSplitReader):
    name = "mimic_cxr"
    modality = "xray"
    top_folder = "mimic_cxr"
    benchmark = "mimic_cxr"
    options: dict[str, Any] = {"splits": ["train"]}
