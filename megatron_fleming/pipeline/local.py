"""Run a chain on this machine: each step not yet done, in order, as a subprocess.

A step's output goes to ``<out>/logs/<step>.log``; the console gets one line per step (skipped,
running, finished in N s, or failed with the log's tail). A failure stops the chain: everything
finished so far keeps its marker, so the next run starts at the failed step (resuming it when its
fingerprint is unchanged).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from megatron_fleming.pipeline.chain import Chain
from megatron_fleming.pipeline.config import REPO
from megatron_fleming.pipeline.steps import Step


def command(step: Step, python: str = sys.executable) -> list[str]:
    """The full command line of a local run (torchrun in front for several ranks)."""
    if step.ranks > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(step.ranks),
                *step.argv]
    return [python, *step.argv]


def environment() -> dict[str, str]:
    """This checkout first on the path, so every step runs the code the pipeline runs."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def run_local(chain: Chain, *, redo: set[str] = frozenset(), dry_run: bool = False,
              echo: Callable[[str], None] = print) -> int:
    """Run every step that is not done; returns 0, or the exit status of the failed step."""
    statuses = chain.statuses(redo)
    if not dry_run:
        chain.prepare()
    todo = [s for s in chain.steps if statuses[s.name] != "done"]
    echo(f"pipeline {chain.cfg.name}: {len(chain.steps) - len(todo)} of {len(chain.steps)} steps done, "
         f"{len(todo)} to run (out: {chain.layout.out})")
    for step in chain.steps:
        status = statuses[step.name]
        if status == "done":
            echo(f"  {step.name}: done, skipped")
            continue
        line = shlex.join(command(step))
        if dry_run:
            deps = ", ".join(step.deps) or "-"
            echo(f"  {step.name} [{status}] after {deps}\n      {line}")
            continue
        if status == "stale":
            chain.clean(step)
        fingerprint = chain.fingerprints[step.name]
        chain.markers.mark_started(step.name, fingerprint)
        log = chain.layout.logs / f"{step.name}.log"
        echo(f"  {step.name}: {'resuming' if status == 'resume' else 'running'} (log {log})")
        start = time.monotonic()
        with log.open("a") as handle:
            handle.write(f"$ {line}\n")
            handle.flush()
            rc = subprocess.run(command(step), stdout=handle, stderr=subprocess.STDOUT, env=environment()).returncode
        seconds = time.monotonic() - start
        missing = [str(p) for p in step.outputs if not p.exists()]
        if rc != 0 or missing:
            why = f"exit status {rc}" if rc != 0 else f"no {', '.join(missing)}"
            echo(f"  {step.name}: FAILED ({why}) after {seconds:.0f} s; last lines of {log}:\n{_tail(log)}")
            return rc or 1
        chain.markers.mark_done(step.name, fingerprint, seconds)
        echo(f"  {step.name}: finished in {seconds:.0f} s")
    if not dry_run:
        echo(f"report: {chain.layout.report / 'report.md'}")
    return 0
