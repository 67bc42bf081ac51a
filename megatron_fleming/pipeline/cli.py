"""``fleming pipeline``: data -> stages 1-4 -> evaluation after each stage -> report.

    fleming pipeline --config megatron_fleming/configs/pipelines/tiny.yaml [--out DIR]
                     [--slurm [--wait]] [--dry-run] [--redo STEP ...]

Runs, in order, every step that is not done (a step is done when its completion marker holds
the fingerprint of its current inputs): a rerun with nothing changed does nothing, and a changed
recipe or config redoes exactly the steps downstream of it. ``--slurm`` submits the same chain
as Slurm jobs linked by ``afterok``; ``--dry-run`` prints the chain (each step's status, command
and dependencies; with ``--slurm`` the sbatch files, written under ``OUT/slurm/``) and runs
nothing. ``--redo STEP`` runs a step and everything after it again.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from megatron_fleming.pipeline.chain import Chain
    from megatron_fleming.pipeline.config import load_pipeline
    from megatron_fleming.pipeline.local import run_local

    try:
        cfg = load_pipeline(args.config)
        chain = Chain.build(cfg, args.config, Path(args.out or cfg.out))
        chain.downstream(set(args.redo))  # names checked before anything runs
    except ValueError as e:
        raise SystemExit(f"fleming pipeline: {e}") from None
    if not args.slurm:
        if args.wait:
            raise SystemExit("fleming pipeline: --wait goes with --slurm")
        return run_local(chain, redo=set(args.redo), dry_run=args.dry_run)
    return _slurm(chain, set(args.redo), dry_run=args.dry_run, wait=args.wait)


def _slurm(chain, redo: set[str], *, dry_run: bool, wait: bool) -> int:
    from megatron_fleming.pipeline import slurm

    statuses = chain.statuses(redo)
    todo = [s for s in chain.steps if statuses[s.name] != "done"]
    chain.prepare()
    jobs = slurm.render(chain, todo)
    done = len(chain.steps) - len(todo)
    print(f"pipeline {chain.cfg.name}: {done} of {len(chain.steps)} steps done; {len(jobs)} Slurm jobs for the "
          f"other {len(todo)} (sbatch files in {chain.layout.slurm})")
    if dry_run:
        print(slurm.describe(jobs))
        return 0
    for step in todo:
        if statuses[step.name] == "stale":
            chain.clean(step)
    slurm.submit(jobs)
    for job in jobs:
        print(f"  {job.name}: job {job.job_id}" + (f" (afterok: {', '.join(job.after)})" if job.after else ""))
    if not jobs:
        return 0
    if wait:
        slurm.wait(jobs)
        missing = [s.name for s in todo if chain.markers.status(s, chain.fingerprints[s.name]) != "done"]
        if missing:
            print(f"not done after the jobs ended: {', '.join(missing)} (logs in {chain.layout.logs})")
            return 1
        print(f"report: {chain.layout.report / 'report.md'}")
    return 0


def add_pipeline_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("pipeline", help="the whole recipe: data, stages 1-4, evaluation, report",
                            description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="pipeline YAML (megatron_fleming/configs/pipelines/)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the config's out)")
    p.add_argument("--slurm", action="store_true", help="submit the chain as Slurm jobs (afterok)")
    p.add_argument("--wait", action="store_true", help="with --slurm: block until the jobs ended")
    p.add_argument("--dry-run", action="store_true", help="print the chain, run nothing")
    p.add_argument("--redo", action="append", default=[], metavar="STEP",
                   help="run this step and everything downstream again (repeatable)")
    p.set_defaults(func=_cmd_pipeline)
