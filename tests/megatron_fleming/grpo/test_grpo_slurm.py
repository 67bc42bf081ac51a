"""`fleming grpo` through the Slurm launcher for real (scripts/slurm/grpo_tiny_cpu.sbatch): two
CPU tasks under srun (gloo, data parallel 2), each replica generating for its own prompts and
the updates reducing gradients over both; a checkpoint at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megatron_fleming.grpo.toy_task import write_letter_task

REPO = Path(__file__).resolve().parents[3]
SBATCH = REPO / "scripts" / "slurm" / "grpo_tiny_cpu.sbatch"
sys.path.insert(0, str(REPO / "tests" / "megatron_fleming"))
from test_train_slurm import _job_state, _slurm_up  # noqa: E402

pytestmark = pytest.mark.skipif(
    not _slurm_up(), reason="no Slurm node up here (CI starts one with scripts/slurm/start_local_slurm.sh)")


def test_grpo_sbatch_runs_data_parallel(tmp_path):
    data = write_letter_task(tmp_path / "letters", count=32, seed=3, shapes="XO")
    run, log = tmp_path / "run", tmp_path / "job.out"
    env = {**os.environ, "DATA": str(data), "FLEMING_PYTHON": sys.executable}
    job = subprocess.run(
        ["sbatch", "--parsable", f"--output={log}", str(SBATCH), f"checkpoint.dir={run}",
         "checkpoint.init_from=null", "data.tokenizer.path=null", "data.tokenizer.tiny_bpe_vocab=300",
         "model.overrides.language.vocab_size=320", "grpo.max_response_len=8", "train.prompts=8",
         # random weights: a reward random text meets about half the time, so groups vary
         "rewards.accuracy_weight=0.0", "rewards.format_pattern=(?s).*[aeiou].*"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    deadline = time.monotonic() + 300
    try:
        while _job_state(job) and time.monotonic() < deadline:
            time.sleep(2)
    finally:
        if _job_state(job):
            subprocess.run(["scancel", job])
    out = log.read_text() if log.exists() else ""
    assert "fleming grpo --config megatron_fleming/configs/tiny_grpo.yaml" in out, out[-3000:]
    assert "2 tasks" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    # 4 prompts per step over 2 replicas x 4 generations: every rollout counted once
    assert all(r["groups"] == 4 for r in rows)
    assert sum(r["updates_applied"] for r in rows) >= 1
    assert (run / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
