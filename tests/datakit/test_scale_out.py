"""Scale-out: array-task slicing + merge gives the local build's bytes; the sbatch scripts run
on a real SLURM where one is up (CI starts one with scripts/slurm/start_local_slurm.sh)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datakit.release import release_files

REPO = Path(__file__).resolve().parents[2]
DATAKIT = [sys.executable, "-m", "datakit.cli"]


def _release(out: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in release_files(out)}


def _run(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([*DATAKIT, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_three_array_tasks_plus_merge_equal_local_build(ultrasound_build, tmp_path, sample_sources):
    out = tmp_path / "sharded"
    _run("plan", "ultrasound", "--sources", str(sample_sources), "--out", str(out), "--slice-records", "4")
    procs = [
        subprocess.Popen([*DATAKIT, "slice", "ultrasound", "--out", str(out), "--task", str(t), "--tasks", "3"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for t in range(3)
    ]
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        assert "converted" in stdout
    _run("merge", "ultrasound", "--out", str(out))
    assert _release(out) == _release(ultrasound_build.out)
    assert not (out / ".work").exists()


def test_merge_refuses_unfinished_slices(tmp_path, sample_sources):
    out = tmp_path / "partial"
    _run("plan", "ultrasound", "--sources", str(sample_sources), "--out", str(out), "--slice-records", "4")
    _run("slice", "ultrasound", "--out", str(out), "--task", "0", "--tasks", "3")
    res = subprocess.run([*DATAKIT, "merge", "ultrasound", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode != 0 and "unfinished" in res.stderr


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return res.returncode == 0 and any(s.strip() in ("idle", "mix", "alloc") for s in res.stdout.split())


def test_sbatch_scripts_are_valid_bash(tmp_path, sample_sources):
    """Always runs: the generated scripts parse and carry the array/dependency layout."""
    out = tmp_path / "dry"
    res = _run("build", "ultrasound", "--sources", str(sample_sources), "--out", str(out), "--slurm",
               "--array", "3", "--dry-run")
    scripts = out / ".work" / "slurm"
    array, merge = scripts / "slices.sbatch", scripts / "merge.sbatch"
    for s in (array, merge):
        assert subprocess.run(["bash", "-n", str(s)]).returncode == 0
    text = array.read_text()
    assert "#SBATCH --array=0-2" in text and "--tasks 3" in text and '"$SLURM_ARRAY_TASK_ID"' in text
    assert "datakit.cli merge" in merge.read_text()
    assert "dry run" in res.stdout


@pytest.mark.skipif(not _slurm_up(), reason="no SLURM cluster up here (CI starts one with scripts/slurm/start_local_slurm.sh)")
def test_real_slurm_array_build_equals_local_build(ultrasound_build, tmp_path, sample_sources):
    out = tmp_path / "slurm"
    _run("build", "ultrasound", "--sources", str(sample_sources), "--out", str(out), "--slurm",
         "--array", "3", "--slice-records", "4", "--wait")
    assert (out / "build.json").exists(), list((out / ".work" / "slurm" / "logs").glob("*"))
    assert _release(out) == _release(ultrasound_build.out)
