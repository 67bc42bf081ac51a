"""The SLURM launcher for real, on the one-node Slurm CI starts (scripts/slurm/start_local_slurm.sh).

`scripts/slurm/train_tiny_cpu.sbatch` trains the tiny model with 2 tasks (gloo, DP2). Mid-run
the batch shell gets SIGTERM (`scancel --batch --signal=TERM`, what `--signal=B:TERM@60` sends
before a time limit): it must pass the signal to the tasks, which checkpoint at the next step
and exit 0; the launcher requeues the job, and the requeued run resumes from that checkpoint and
finishes. Slurm holds a requeued job back for two minutes (BeginTime); the test lets it start
after a few seconds (not at once: slurmd refuses a start in the second its old credential was
revoked).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "scripts" / "slurm" / "train_tiny_cpu.sbatch"
CONVERSATIONS = 640  # ~40 steps: long enough that the signal lands mid-run on an idle machine


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return res.returncode == 0 and any(s.strip() in ("idle", "mix", "alloc") for s in res.stdout.split())


pytestmark = pytest.mark.skipif(
    not _slurm_up(), reason="no Slurm node up here (CI starts one with scripts/slurm/start_local_slurm.sh)")


def _wait(what: str, check, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    text = log.read_text() if log.exists() else "(no log)"
    pytest.fail(f"timed out after {timeout}s waiting for {what}; log tail:\n{text[-4000:]}")


def _job_state(job: str) -> str:
    res = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return res.stdout.strip()


def test_sigterm_checkpoints_and_the_requeued_job_resumes(ultrasound_build, tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "job.out"
    env = {**os.environ, "DATA": str(ultrasound_build.out), "FLEMING_PYTHON": sys.executable}
    job = subprocess.run(
        ["sbatch", "--parsable", f"--output={log}", str(SBATCH), f"checkpoint.dir={run}",
         f"train.conversations={CONVERSATIONS}"], cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip().split(";")[0]
    text = lambda: log.read_text() if log.exists() else ""  # noqa: E731
    try:
        _wait("step 2", lambda: "step 2 | conversations " in text(), 240, log)
        subprocess.run(["scancel", "--batch", "--signal=TERM", job], check=True)
        _wait("the requeue", lambda: "requeueing job" in text(), 180, log)
        _wait("the job to be pending again", lambda: _job_state(job) == "PENDING", 60, log)
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+5"], check=True)
        _wait("the resumed run to finish", lambda: ": finished" in text(), 300, log)
        _wait("the job to end", lambda: _job_state(job) == "", 60, log)
    finally:
        if _job_state(job):
            subprocess.run(["scancel", job])

    out = text()
    first, _, second = out.partition("(restart 1)")
    assert second, "the job was not restarted"
    stopped = int(re.search(r"saved checkpoint at iteration (\d+) \(signal\)", first).group(1))
    last = int(re.search(r"training stopped at iteration (\d+): finished", second).group(1))
    assert 2 <= stopped < last
    assert "received SIGTERM" in first and f"training stopped at iteration {stopped}: signal" in first
    consumed = int(re.findall(rf"step {stopped} \| conversations (\d+)/", first)[-1])
    assert f"resumed at iteration {stopped}, {consumed} of {CONVERSATIONS} conversations" in second
    resumed_steps = [int(n) for n in re.findall(rf"step (\d+) \| conversations \d+/{CONVERSATIONS} ",
                                                second)]
    assert resumed_steps == list(range(stopped + 1, last + 1))
    final = int(re.findall(r"conversations (\d+)/", second)[-1])
    assert final >= CONVERSATIONS
    assert (run / f"iter_{stopped:07d}").is_dir() and (run / f"iter_{last:07d}").is_dir()
    assert (run / "latest_checkpointed_iteration.txt").read_text().strip() == str(last)
    assert not (REPO / f".fleming-stop-{job}").exists()
