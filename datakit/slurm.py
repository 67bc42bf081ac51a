"""Scale-out on SLURM: one array of slice tasks, then one merge task.

``datakit build RECIPE --slurm --array N`` plans on the submitting node (the plan goes to the
shared work folder), writes an sbatch script whose array task ``t`` runs ``datakit slice
--task t --tasks N`` (slices ``t, t+N, t+2N ...``), and submits a merge job that depends on the
whole array (``afterok``). Slice and merge are the same code the local process pool runs, so
the shards are byte-identical to a local build.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SBATCH_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={job}
#SBATCH --array=0-{last}
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={cpus}
#SBATCH --output={logs}/slice-%A_%a.log
{extra}
# One array task converts slices TASK, TASK+N, TASK+2N ... of the plan in {work}.
set -euo pipefail
exec {python} -m datakit.cli slice {recipe} --out {out} --task "$SLURM_ARRAY_TASK_ID" --tasks {tasks}
"""

MERGE_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={job}-merge
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={cpus}
#SBATCH --output={logs}/merge-%j.log
{extra}
# Runs after every array task succeeded: dedup across slices, write shards, prepare, account.
set -euo pipefail
exec {python} -m datakit.cli merge {recipe} --out {out}
"""


@dataclass(frozen=True, slots=True)
class SlurmScripts:
    array: Path
    merge: Path


def write_scripts(recipe_path: Path, out: Path, tasks: int, *, cpus: int = 1, partition: str | None = None,
                  python: str | None = None) -> SlurmScripts:
    if tasks < 1:
        raise ValueError(f"--array must be >= 1, got {tasks}")
    work = out / ".work"
    folder = work / "slurm"
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fields = dict(
        job=f"datakit-{recipe_path.stem}",
        last=tasks - 1,
        tasks=tasks,
        cpus=cpus,
        logs=shlex.quote(str(logs.resolve())),
        work=str(work.resolve()),
        python=shlex.quote(python or sys.executable),
        recipe=shlex.quote(str(recipe_path.resolve())),
        out=shlex.quote(str(out.resolve())),
        extra=f"#SBATCH --partition={partition}" if partition else "",
    )
    array = folder / "slices.sbatch"
    merge = folder / "merge.sbatch"
    array.write_text(SBATCH_TEMPLATE.format(**fields))
    merge.write_text(MERGE_TEMPLATE.format(**fields))
    return SlurmScripts(array=array, merge=merge)


def sbatch_available() -> bool:
    return shutil.which("sbatch") is not None


def submit(scripts: SlurmScripts, *, wait: bool = False) -> tuple[str, str]:
    """Submit the array, then the merge with ``afterok`` on it; returns both job ids."""
    if not sbatch_available():
        raise RuntimeError("sbatch not found: run on a SLURM login node (or use --workers locally)")
    array_id = _sbatch([str(scripts.array)])
    merge_args = [f"--dependency=afterok:{array_id}", "--kill-on-invalid-dep=yes"]
    if wait:
        merge_args.append("--wait")
    merge_id = _sbatch([*merge_args, str(scripts.merge)])
    return array_id, merge_id


def _sbatch(args: list[str]) -> str:
    res = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout.strip().split(";")[0].splitlines()[0]
