"""Run a chain on Slurm: one sbatch file per job under ``<out>/slurm/``, linked by ``afterok``.

- a data build is three jobs, as ``datakit build --slurm`` runs one: ``datakit plan`` (one task),
  ``datakit slice`` as an array of ``slurm.array`` tasks, then ``datakit merge`` (the same code as
  a local build: byte-identical shards);
- a stage (``fleming train`` / ``fleming grpo``) is one job on its nodes through
  ``scripts/slurm/train_launch.sh`` (srun, rendezvous, SIGTERM -> checkpoint -> requeue); its
  completion marker is written by the launcher's ``FLEMING_ON_FINISH`` hook, only when training
  finished, never for a run that stopped early to be requeued;
- every other step (decontamination, held-out fixture, blends, GRPO draw, tokenizer, evaluation,
  report) is one job that runs its command between its two markers.

Nothing is planned at submit time: a build's plan is itself a job, so the whole chain can be
submitted before any of its inputs exist. Steps already done are not submitted and their
dependents do not wait for them.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from megatron_fleming.pipeline.chain import Chain
from megatron_fleming.pipeline.config import REPO, SlurmJob
from megatron_fleming.pipeline.steps import Step

LAUNCHER = REPO / "scripts" / "slurm" / "train_launch.sh"


@dataclass
class Job:
    """One sbatch file of the chain and the jobs (of this chain) it waits for."""

    name: str  # the step, plus -plan/-slices/-merge for a build
    step: str
    script: Path
    after: list[str] = field(default_factory=list)  # job names
    job_id: str | None = None


def _resources(chain: Chain, step: Step) -> SlurmJob:
    s = chain.cfg.slurm
    if step.resources.startswith("stage:"):
        return s.stages.get(step.resources.split(":", 1)[1], s.stage)
    return {"build": s.build, "evaluation": s.evaluation}.get(step.resources, s.job)


def _header(chain: Chain, job: str, res: SlurmJob, log: str, extra: list[str] = ()) -> list[str]:
    s = chain.cfg.slurm
    lines = ["#!/bin/bash", f"#SBATCH --job-name={chain.cfg.name}-{job}", f"#SBATCH --output={log}",
             f"#SBATCH --nodes={res.nodes}", f"#SBATCH --ntasks-per-node={res.ntasks_per_node}",
             f"#SBATCH --cpus-per-task={res.cpus_per_task}", f"#SBATCH --time={res.time}"]
    if res.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={res.gpus_per_node}")
    if res.mem is not None:
        lines.append(f"#SBATCH --mem={res.mem}")
    if res.exclusive:
        lines.append("#SBATCH --exclusive")
    if s.partition:
        lines.append(f"#SBATCH --partition={s.partition}")
    if s.account:
        lines.append(f"#SBATCH --account={s.account}")
    return lines + [f"#SBATCH {x}" for x in extra]


def _python(chain: Chain) -> str:
    return chain.cfg.slurm.python or sys.executable


def _prelude(chain: Chain, step: Step, what: str) -> list[str]:
    py = shlex.quote(_python(chain))
    return [f"# fleming pipeline {chain.cfg.name}: step {step.name} ({step.kind}), {what}",
            f"# config: {chain.config_path}", "set -euo pipefail",
            f"export PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}", f"py={py}"]


def _marker(chain: Chain, step: Step, what: str, seconds: str = "") -> str:
    args = [str(chain.layout.out), step.name, chain.fingerprints[step.name], what]
    return f'"$py" -m megatron_fleming.pipeline.state {shlex.join(args)}{seconds}'


def _run(step: Step, argv: tuple[str, ...] | list[str] | None = None) -> str:
    return f'"$py" {shlex.join(list(step.argv if argv is None else argv))}'


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _plain(chain: Chain, step: Step, name: str) -> Path:
    res, log = _resources(chain, step), str(chain.layout.logs / f"{step.name}-%j.out")
    lines = _header(chain, name, res, log) + _prelude(chain, step, "one job") + [
        _marker(chain, step, "started"), "start=$SECONDS", _run(step),
        _marker(chain, step, "done", ' "$((SECONDS - start))"')]
    return _write(chain.layout.slurm / f"{name}.sbatch", lines)


def _build_jobs(chain: Chain, step: Step) -> list[Job]:
    d, s, lay = step.details, chain.cfg.slurm, chain.layout
    common = ["--decontam", d["registry"]] + (["--sources", d["sources"]] if d["sources"] else [])
    plan = ["-m", "datakit.cli", "plan", d["recipe"], "--out", d["out"], *common]
    slices = ["-m", "datakit.cli", "slice", d["recipe"], "--out", d["out"], "--tasks", str(s.array)]
    merge = ["-m", "datakit.cli", "merge", d["recipe"], "--out", d["out"]]
    name = step.name
    files = {
        "plan": _header(chain, f"{name}-plan", s.job, str(lay.logs / f"{name}-plan-%j.out"))
        + _prelude(chain, step, "1/3: plan the build") + [_marker(chain, step, "started"), _run(step, plan)],
        "slices": _header(chain, f"{name}-slices", s.build, str(lay.logs / f"{name}-slices-%A_%a.out"),
                          [f"--array=0-{s.array - 1}"])
        + _prelude(chain, step, f"2/3: array task t converts slices t, t+{s.array}, ...")
        + [f'{_run(step, slices)} --task "$SLURM_ARRAY_TASK_ID"'],
        "merge": _header(chain, f"{name}-merge", s.build, str(lay.logs / f"{name}-merge-%j.out"))
        + _prelude(chain, step, "3/3: dedup across slices, write the shards, account")
        + [_run(step, merge), _marker(chain, step, "done")],
    }
    jobs, previous = [], None
    for part, lines in files.items():
        job = Job(f"{name}-{part}", name, _write(lay.slurm / f"{name}-{part}.sbatch", lines))
        if previous is not None:
            job.after.append(previous.name)
        jobs.append(job)
        previous = job
    return jobs


def _stage(chain: Chain, step: Step) -> Path:
    d, s, res = step.details, chain.cfg.slurm, _resources(chain, step)
    log = str(chain.layout.logs / f"{step.name}-%j.out")
    extra = ["--requeue", f"--signal=B:TERM@{res.signal_before_s}", "--open-mode=append"]
    done = _marker(chain, step, "done").replace('"$py"', shlex.quote(_python(chain)))
    lines = _header(chain, step.name, res, log, extra) + _prelude(chain, step, f"fleming {d['command']}") + [
        "# A SIGTERM (preemption, time limit) checkpoints and requeues; every start resumes from the",
        "# stage's checkpoint folder. The completion marker is written only once training finished.",
        f"export FLEMING_PYTHON=$py FLEMING_DEVICE={s.device} FLEMING_COMMAND={d['command']}",
        f"export DATA={shlex.quote(d['data'])}",
        f"export FLEMING_ON_FINISH={shlex.quote(done)}",
        *([f"export FLEMING_ENV_FILE={shlex.quote(s.env_file)}"] if s.env_file else []),
        _marker(chain, step, "started"),
        f"exec bash {shlex.quote(str(LAUNCHER))} {shlex.quote(d['config'])} {shlex.join(d['overrides'])}"]
    return _write(chain.layout.slurm / f"{step.name}.sbatch", lines)


def render(chain: Chain, todo: list[Step]) -> list[Job]:
    """The sbatch files of the steps in ``todo`` (in chain order) and their dependencies."""
    last_job: dict[str, str] = {}  # step -> the job that finishes it
    jobs: list[Job] = []
    for step in todo:
        if step.kind == "build":
            new = _build_jobs(chain, step)
        elif step.details.get("command") in ("train", "grpo"):
            new = [Job(step.name, step.name, _stage(chain, step))]
        else:
            new = [Job(step.name, step.name, _plain(chain, step, step.name))]
        waits = [last_job[d] for d in step.deps if d in last_job]
        new[0].after = waits + new[0].after
        jobs += new
        last_job[step.name] = new[-1].name
    return jobs


def describe(jobs: list[Job]) -> str:
    lines = []
    for job in jobs:
        after = f" (afterok: {', '.join(job.after)})" if job.after else ""
        lines.append(f"  {job.name}: sbatch {job.script}{after}")
    return "\n".join(lines)


def submit(jobs: list[Job]) -> None:
    """sbatch every job in order, each with ``afterok`` on the ids of the jobs it waits for."""
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found: run on a Slurm login node, or without --slurm")
    ids: dict[str, str] = {}
    for job in jobs:
        args = ["sbatch", "--parsable"]
        if job.after:
            args += [f"--dependency=afterok:{':'.join(ids[a] for a in job.after)}", "--kill-on-invalid-dep=yes"]
        res = subprocess.run([*args, str(job.script)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"sbatch {job.script} failed: {res.stderr.strip()}")
        job.job_id = ids[job.name] = res.stdout.strip().split(";")[0]


def wait(jobs: list[Job], poll_s: float = 5.0, timeout_s: float | None = None) -> None:
    """Block until none of ``jobs`` is queued or running."""
    ids = {j.job_id for j in jobs if j.job_id}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while ids:
        res = subprocess.run(["squeue", "-h", "-o", "%A", "-j", ",".join(sorted(ids))], capture_output=True, text=True)
        queued = {x.strip().split("_")[0] for x in res.stdout.split()} & ids if res.returncode == 0 else set()
        if not queued:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"jobs {sorted(queued)} still queued after {timeout_s} s")
        time.sleep(poll_s)
