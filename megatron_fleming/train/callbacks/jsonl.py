"""Every step's metrics as one JSON line in ``<checkpoint.dir>/metrics.jsonl`` (rank 0 only):
what tests, benchmarks and plots read back. A resumed run appends."""

from __future__ import annotations

import json
from pathlib import Path

from megatron_fleming.train.callbacks.base import Callback, StepMetrics

METRICS_FILE = "metrics.jsonl"


class MetricsFile(Callback):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_step(self, m: StepMetrics) -> None:
        row = {"iteration": m.iteration, "step_time": m.step_time, "data_wait": m.data_wait,
               **m.values, "skipped": m.skipped, "counts": m.counts}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
