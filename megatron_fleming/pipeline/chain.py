"""One pipeline run's chain: its steps, their fingerprints and status, and the record the
report reads (``<out>/pipeline.json``). Both runners (this machine, Slurm) start here."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from megatron_fleming.pipeline.config import HELDOUT, INIT, PipelineConfig, REPO
from megatron_fleming.pipeline.state import Markers, Status, fingerprints
from megatron_fleming.pipeline.steps import Layout, Step, benchmark_folder, plan


@dataclass
class Chain:
    cfg: PipelineConfig
    config_path: Path
    layout: Layout
    steps: list[Step]
    fingerprints: dict[str, str]
    markers: Markers

    @classmethod
    def build(cls, cfg: PipelineConfig, config_path: Path, out: Path) -> Chain:
        layout = Layout(Path(out).resolve())
        steps = plan(cfg, layout.out)
        return cls(cfg, Path(config_path).resolve(), layout, steps, fingerprints(steps), Markers(layout.steps))

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def downstream(self, names: set[str]) -> set[str]:
        """``names`` and every step that depends on one of them, directly or not."""
        unknown = names - {s.name for s in self.steps}
        if unknown:
            raise ValueError(f"--redo {sorted(unknown)}: no such step; steps: {[s.name for s in self.steps]}")
        out = set(names)
        for step in self.steps:  # dependency order: one pass suffices
            if out & set(step.deps):
                out.add(step.name)
        return out

    def statuses(self, redo: set[str] = frozenset()) -> dict[str, Status]:
        """Each step's status; ``redo`` steps and everything below them count as stale."""
        forced = self.downstream(set(redo)) if redo else set()
        out: dict[str, Status] = {}
        for step in self.steps:
            status = self.markers.status(step, self.fingerprints[step.name])
            out[step.name] = "stale" if step.name in forced and status in ("done", "resume") else status
        return out

    def clean(self, step: Step) -> None:
        """Remove what an earlier, different run of ``step`` left (and its markers)."""
        for path in step.clean:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        for suffix in ("started", "done"):
            (self.layout.steps / f"{step.name}.{suffix}").unlink(missing_ok=True)

    def prepare(self) -> None:
        """Folders, the links of a multi-benchmark evaluation, and ``pipeline.json``."""
        for folder in (self.layout.out, self.layout.steps, self.layout.logs):
            folder.mkdir(parents=True, exist_ok=True)
        benchmarks = self.cfg.evaluation.benchmarks if self.cfg.evaluation else {}
        if len(benchmarks) > 1:
            self.layout.eval_data.mkdir(parents=True, exist_ok=True)
            for name in benchmarks:
                link = self.layout.eval_data / name
                target = benchmark_folder(self.cfg, self.layout, name)
                if link.is_symlink() and Path(os.readlink(link)) == target:
                    continue
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(target, target_is_directory=True)
        self.record().write_text(json.dumps(self.document(), indent=1) + "\n")

    def record(self) -> Path:
        return self.layout.out / "pipeline.json"

    def document(self) -> dict:
        """What the report needs to know about the chain, beside what the steps wrote."""
        cfg, lay = self.cfg, self.layout
        return {
            "name": cfg.name,
            "description": cfg.description,
            "config": str(self.config_path),
            "repo": str(REPO),
            "out": str(lay.out),
            "builds": {n: str(lay.data(n)) for n in cfg.data.builds},
            "heldout": None if cfg.heldout is None else {
                "recipe": cfg.heldout.recipe, "tasks": cfg.heldout.tasks, "fraction": cfg.heldout.fraction,
                "per_source": cfg.heldout.per_source,
                "layout": cfg.heldout.layout, "fixture": str(lay.fixture),
                "registered_as": [n for n, d in cfg.decontam.items() if d.dir == HELDOUT]},
            "decontam": {n: d.benchmark for n, d in cfg.decontam.items()},
            "points": [{"name": p, "run": str(lay.run(p)),
                        "command": "init" if p == INIT else cfg.stage(p).command,
                        "eval": str(lay.eval(p)) if cfg.evaluation and p in cfg.evaluation.after else None}
                       for p in ([INIT] if cfg.init is not None else []) + [s.name for s in cfg.stages]],
            "benchmarks": {n: {"label": b.label or n, "paper": b.paper, "heldout": b.data == HELDOUT}
                           for n, b in (cfg.evaluation.benchmarks if cfg.evaluation else {}).items()},
            "steps": [{"name": s.name, "kind": s.kind, "deps": list(s.deps), "fingerprint": self.fingerprints[s.name],
                       "argv": list(s.argv)} for s in self.steps],
        }
