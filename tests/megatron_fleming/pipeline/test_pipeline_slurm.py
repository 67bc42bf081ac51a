"""`fleming pipeline --slurm` on the one-node Slurm CI starts (scripts/slurm/start_local_slurm.sh).

Default suite: a reduced chain — a datakit build as plan -> array of slices -> merge, the shared
tiny BPE, one training stage through scripts/slurm/train_launch.sh (its completion marker
written by the launcher's FLEMING_ON_FINISH hook), the report — submitted at once with afterok
links and waited for; resubmitting submits nothing. Slow: the whole tiny pipeline as Slurm jobs,
to a report that holds the same claim as the local run's (tiny_claim.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_claim import check_tiny_claim  # tests/megatron_fleming/pipeline/tiny_claim.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_train_slurm import _slurm_up  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "megatron_fleming" / "configs" / "pipelines" / "tiny.yaml"


pytestmark = pytest.mark.skipif(
    not _slurm_up(), reason="no Slurm node up here (CI starts one with scripts/slurm/start_local_slurm.sh)")


def _pipeline(config: Path, out: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "megatron_fleming.cli", "pipeline", "--config", str(config),
                           "--out", str(out), "--slurm", *extra], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def _logs(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((out / "logs").glob("*")))


def test_a_reduced_chain_runs_as_dependent_jobs_and_a_resubmission_submits_nothing(tmp_path):
    config = tmp_path / "mini.yaml"
    config.write_text(yaml.safe_dump({
        "name": "slurm-mini",
        "data": {"builds": {"stage1": "stage1"}},
        "tokenizer": {"tiny_bpe_vocab": 512, "builds": ["stage1"]},
        "stages": [{"name": "stage1", "command": "train", "config": "megatron_fleming/configs/tiny_stage1.yaml",
                    "data": "stage1", "overrides": ["train.conversations=8"]}],
        "slurm": {"device": "cpu", "array": 2, "build": {"time": "00:10:00"}, "job": {"time": "00:10:00"},
                  "stage": {"time": "00:10:00"}}}))
    out = tmp_path / "out"
    res = _pipeline(config, out, "--wait", timeout=420)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{_logs(out)}"
    submitted = [line for line in res.stdout.splitlines() if ": job " in line]
    assert [line.split(":")[0].strip() for line in submitted] == [
        "build-stage1-plan", "build-stage1-slices", "build-stage1-merge", "tokenizer", "stage1", "report"]
    assert "(afterok: build-stage1-plan)" in submitted[1] and "(afterok: build-stage1-merge, tokenizer)" in submitted[4]
    assert len(list((out / "logs").glob("build-stage1-slices-*_*.out"))) == 2  # the array's two tasks
    build = json.loads((out / "data" / "stage1" / "build.json").read_text())
    assert build["summary"]["splits"] == {"train": 4, "val": 1}
    launch_log = next((out / "logs").glob("stage1-*.out")).read_text()
    assert "training stopped at iteration" in launch_log and "finished" in launch_log
    done = json.loads((out / ".steps" / "stage1.done").read_text())  # written by FLEMING_ON_FINISH
    plan = json.loads((out / "pipeline.json").read_text())
    assert done["fingerprint"] == next(s["fingerprint"] for s in plan["steps"] if s["name"] == "stage1")
    assert "| stage1 | train |" in (out / "report" / "report.md").read_text()

    again = _pipeline(config, out, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "4 of 4 steps done; 0 Slurm jobs" in again.stdout and ": job " not in again.stdout


@pytest.mark.slow
def test_the_tiny_pipeline_on_slurm_reaches_the_same_report(tmp_path):
    out = tmp_path / "out"
    res = _pipeline(TINY, out, "--wait", timeout=3000)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{_logs(out)}"
    figures = json.loads((out / "report" / "report.json").read_text())
    check_tiny_claim(figures)  # the claim of the local run's report (test_pipeline_tiny.py)
    assert all(p["series"] for p in figures["points"])
    assert (out / "report" / "losses.png").stat().st_size > 0 and (out / "report" / "scores.png").stat().st_size > 0
