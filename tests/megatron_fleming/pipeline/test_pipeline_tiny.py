"""The whole tiny pipeline (`make pipeline`) on CPU, and the claim its report makes.

Slow (several minutes on two cores: `make test-slow`): data builds, the held-out fixture and its
decontamination, the shared tiny BPE, random initial weights, stages 1-4 each from the previous
stage's weights, evaluation after each on the held-out modality items, the report. The default
suite keeps the fast tests of the chain (test_pipeline_chain.py: planning, fingerprints, a real
data-only chain run twice) and the stage hand-off (test_train_handoff.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_claim import check_tiny_claim  # tests/megatron_fleming/pipeline/tiny_claim.py

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "megatron_fleming" / "configs" / "pipelines" / "tiny.yaml"


def _pipeline(out: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "megatron_fleming.cli", "pipeline", "--config", str(TINY),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_the_tiny_pipeline_beats_the_untrained_model_on_held_out_items_and_a_rerun_does_nothing(tmp_path):
    out = tmp_path / "out"
    res = _pipeline(out, timeout=1800)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    figures = json.loads((out / "report" / "report.json").read_text())
    check_tiny_claim(figures)
    report = (out / "report" / "report.md").read_text()
    assert "## Held-out items" in report and "| **balanced** |" in report
    for png in ("losses.png", "scores.png"):
        assert (out / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(p["series"] for p in figures["points"]), "a stage logged no loss"

    again = _pipeline(out, timeout=300)
    assert again.returncode == 0, again.stderr
    steps = len(json.loads((out / "pipeline.json").read_text())["steps"])
    assert f"{steps} of {steps} steps done, 0 to run" in again.stdout
