"""IU-Xray (Demner-Fushman et al. 2016, Open-i; licence UNCONFIRMED) chest X-ray reports in R2Gen's layout, its train
split as report-generation samples.

Released layout (``docs/corpora.md``; parsed by ``datakit.benchmarks.r2gen``)::

    iu_xray/annotation.json      {"train": [...], "val": [...], "test": [...]}: id, report, image_path
    iu_xray/images/CXR<n>_<k>_IM-<m>/{0,1}.png      a frontal and a lateral view

One record per study (both views, in the listed order); its ``report`` goes to the ``captions``
converter (task ``report``, option ``texts: {report: report}``). Row handling is
``benchmark_splits``'s.
"""

from __future__ import annotations

from typing import Any

from datakit.registry import register_source
from datakit.sources.benchmark_splits import ReportSplitReader


@register_source
class IuXrayReader(ReportSplitReader):
    name = "iu_xray"
    modality = "xray"
    top_folder = "iu_xray"
    benchmark = "iu_xray"
    options: dict[str, Any] = {"splits": ["train"]}
