"""Fingerprints of steps and their completion markers: what makes a rerun do no work, and a
changed recipe redo exactly the steps downstream of it.

A step's fingerprint is the SHA-256 of its command, the bytes of its input files (recipes,
stage configs), what it reads of folders (a source listing) and the fingerprints of the steps it
depends on, so a change anywhere upstream reaches every step below it and nothing else. Under
``<out>/.steps/``:

    <step>.started   the fingerprint the step last started with
    <step>.done      the fingerprint it finished with (JSON: fingerprint, seconds, when)

A step is done when its ``.done`` fingerprint equals the planned one and its outputs exist. A
step that started with the planned fingerprint but did not finish is run again as it is, so a
stage resumes from its last checkpoint and a build from its finished slices; a step whose
outputs came from another fingerprint is cleaned first, so nothing stale is resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from megatron_fleming.pipeline.steps import Step

Status = Literal["done", "resume", "stale", "todo"]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprints(steps: list[Step]) -> dict[str, str]:
    """Every step's fingerprint, in order (dependencies come first)."""
    out: dict[str, str] = {}
    for step in steps:
        doc = {
            "kind": step.kind,
            "argv": list(step.argv),
            "inputs": {str(p): _sha256_file(p) if p.is_file() else "missing" for p in step.inputs},
            "extra": [hashlib.sha256(x.encode()).hexdigest() for x in step.extra],
            "deps": {d: out[d] for d in step.deps},
        }
        out[step.name] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return out


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Markers:
    folder: Path  # <out>/.steps

    def _read(self, step: str, suffix: str) -> dict | None:
        path = self.folder / f"{step}.{suffix}"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def done(self, step: str) -> dict | None:
        return self._read(step, "done")

    def started(self, step: str) -> dict | None:
        return self._read(step, "started")

    def mark_started(self, step: str, fingerprint: str) -> None:
        _atomic_write(self.folder / f"{step}.started", json.dumps({"fingerprint": fingerprint}) + "\n")
        (self.folder / f"{step}.done").unlink(missing_ok=True)

    def since_started(self, step: str) -> float | None:
        """Seconds since the step's ``.started`` marker was written: the wall time of a step whose
        start and end are different Slurm jobs (a build's plan and merge) or a different process
        (a stage's FLEMING_ON_FINISH hook), queueing between its jobs included."""
        try:
            return max(0.0, time.time() - (self.folder / f"{step}.started").stat().st_mtime)
        except FileNotFoundError:
            return None

    def mark_done(self, step: str, fingerprint: str, seconds: float | None) -> None:
        doc = {"fingerprint": fingerprint, "seconds": seconds,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _atomic_write(self.folder / f"{step}.done", json.dumps(doc) + "\n")

    def status(self, step: Step, fingerprint: str) -> Status:
        done = self.done(step.name)
        if done and done.get("fingerprint") == fingerprint and all(p.exists() for p in step.outputs):
            return "done"
        started = self.started(step.name)
        if started and started.get("fingerprint") == fingerprint and not done:
            return "resume"
        if done or started or any(p.exists() for p in step.clean):
            return "stale"
        return "todo"


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_fleming.pipeline.state OUT STEP FINGERPRINT [started|done] [SECONDS]``:
    what a Slurm job runs around its command."""
    args = sys.argv[1:] if argv is None else argv
    out, step, fingerprint, what = args[0], args[1], args[2], args[3]
    markers = Markers(Path(out) / ".steps")
    if what == "started":
        markers.mark_started(step, fingerprint)
    elif what == "done":
        markers.mark_done(step, fingerprint, float(args[4]) if len(args) > 4 else markers.since_started(step))
    else:
        raise SystemExit(f"unknown marker {what!r}: started or done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
