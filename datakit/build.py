"""``datakit build``: plan -> convert slices (process pool) -> merge, resumable.

The work folder (``<out>/.work``) holds the plan and one completed result per slice; a build
killed at any point and rerun skips the finished slices and redoes the rest, and the merge
rewrites the release from them, so the bytes equal an uninterrupted build's. When the recipe or
any source file changes, the plan fingerprint changes and the old work is discarded.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from datakit.dedup.decontam import registry_dir
from datakit.errors import EmptyBuildError, RecipeError
from datakit.merge import BuildResult, merge
from datakit.plan import SLICE_RECORDS, BuildPlan, make_plan
from datakit.progress import Progress
from datakit.recipe import Recipe, load_recipe
from datakit.shard_writer import remove_stale_temporaries
from datakit.slices import run_slice, slice_done

SAMPLE_SOURCES = Path(__file__).parent / "sample_sources"
WORK_DIRNAME = ".work"


def prepare_work(plan: BuildPlan, out: Path) -> Path:
    """Create (or reuse, when the fingerprint matches) the work folder and save the plan."""
    work = out / WORK_DIRNAME
    plan_file = work / "plan.json"
    if plan_file.exists():
        import json

        if json.loads(plan_file.read_bytes()).get("fingerprint") != plan.fingerprint:
            shutil.rmtree(work)
    (work / "slices").mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(work)
    remove_stale_temporaries(out)
    if not plan_file.exists():
        tmp = plan_file.with_name(f"plan.json.tmp-{os.getpid()}")
        tmp.write_bytes(plan.to_json())
        os.replace(tmp, plan_file)
    return work


def load_work_plan(out: Path, recipe: Recipe) -> BuildPlan:
    return BuildPlan.from_json((out / WORK_DIRNAME / "plan.json").read_bytes(), recipe)


def uses_llm(recipe: Recipe) -> bool:
    """Whether any step's converter can ask an LLM (its ``requests`` capability)."""
    from datakit import registry

    return any(registry.get_converter(step.converter).requests is not None
               for s in recipe.sources for step in s.convert)


class LLMSession:
    """The build's one LLM runner: a client when an endpoint or cache is configured and a step
    can ask an LLM; without one, every request is answered ``offline``."""

    def __init__(self, recipe: Recipe, config: Any | None) -> None:
        from datakit.llm.runner import LLMRunner

        client = None
        if config is not None and uses_llm(recipe):
            from datakit.llm.client import LLMClient

            client = LLMClient(config)
        self.runner = LLMRunner(client)  # the runner each slice converts through

    @property
    def online(self) -> bool:
        return self.runner.online

    def summary(self) -> dict[str, Any] | None:
        return self.runner.summary() if self.runner.client is not None else None

    def close(self) -> None:
        self.runner.close()


def pending_slices(plan: BuildPlan, work: Path) -> list[int]:
    return [i for i in range(plan.n_slices) if not slice_done(work, i, plan.fingerprint)]


def _run_slice_in_worker(plan_bytes: bytes, recipe_path: str, work: str, index: int, llm_config: Any,
                         strict: bool) -> int:
    plan = BuildPlan.from_json(plan_bytes, load_recipe(recipe_path))
    session = LLMSession(plan.recipe, llm_config)
    try:
        run_slice(plan, Path(work), index, session.runner, strict=strict)
    finally:
        session.close()
    return len(plan.slice_records(index))


def convert_all(plan: BuildPlan, work: Path, workers: int = 1, progress: Progress | None = None,
                llm: LLMSession | None = None, llm_config: Any = None, strict: bool = False) -> None:
    """Convert every unfinished slice, in-process (workers=1) or in a process pool.

    With an LLM endpoint the slices run in this process: one client holds the build's request
    and token budget, and its threads give the concurrency (offline, the cache is read-only and
    the pool is safe).
    """
    if llm is not None and llm.online:
        workers = 1
    todo = pending_slices(plan, work)
    phase = (progress or Progress.quiet())("convert", total=len(plan.records), unit="rec")
    phase.update(sum(len(plan.slice_records(i)) for i in range(plan.n_slices) if i not in set(todo)))
    try:
        if workers <= 1 or len(todo) <= 1:
            for i in todo:
                run_slice(plan, work, i, llm.runner if llm else None, strict=strict)
                phase.update(len(plan.slice_records(i)))
            return
        plan_bytes = plan.to_json()
        recipe_path = str(plan.recipe.path)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_run_slice_in_worker, plan_bytes, recipe_path, str(work), i, llm_config, strict)
                       for i in todo]
            for fut in as_completed(futures):
                phase.update(fut.result())  # re-raises a worker's programming error
    finally:
        phase.close()


def plan_build(recipe: Recipe, sources_dir: Path | None, out: Path, *, seed: int | None = None,
               slice_size: int = SLICE_RECORDS, strict: bool = False, allow_empty: bool = False,
               decontam_dir: str | Path | None = None, progress: Progress | None = None) -> tuple[BuildPlan, Path]:
    """Discover the sources and prepare the work folder. Unless ``allow_empty``, a ``sources_dir``
    that is not a folder, or one holding none of the recipe's sources, is an ``EmptyBuildError``
    naming what was looked for where (before anything is written)."""
    if recipe.grpo_prep is not None:
        raise RecipeError(f"recipe {recipe.name} draws from {recipe.grpo_prep['from']}'s build and has no plan "
                         f"of its own: run `datakit build {recipe.name}` (locally), or plan {recipe.grpo_prep['from']}")
    folder = Path(sources_dir) if sources_dir else SAMPLE_SOURCES
    if not allow_empty and not folder.is_dir():
        raise EmptyBuildError(f"--sources {folder}: no such folder; it should hold the released top folders "
                              f"of {_expected(recipe, folder)}")
    plan = make_plan(recipe, folder, seed, slice_size, strict=strict, progress=progress)
    if not allow_empty and len(plan.missing) == len(recipe.sources):
        raise EmptyBuildError(f"none of recipe {recipe.name}'s sources is in {folder}: looked for "
                              f"{_expected(recipe, folder)}")
    plan.decontam_dir = str(registry_dir(decontam_dir).resolve())
    return plan, prepare_work(plan, out)


def _expected(recipe: Recipe, folder: Path) -> str:
    return "; ".join(f"{s.source} at {folder / s.path}" for s in recipe.sources)


def check_not_empty(result: BuildResult) -> None:
    """``EmptyBuildError`` for a build that emitted no sample, naming the main reasons."""
    acc = result.summary["accounting"]
    if acc["samples"]["emitted"]:
        return
    reasons = sorted(result.summary["rejects"].items(), key=lambda kv: -kv[1])[:3]
    why = ", ".join(f"{k}={v}" for k, v in reasons) or "no input record"
    hint = ""
    if any(k.endswith(":image_without_mask") for k, _ in reasons):
        hint = "; a copy without masks builds its label tasks with the source option masks: optional"
    raise EmptyBuildError(f"0 samples emitted from {acc['records']['inputs']} inputs ({why}); "
                          f"see {result.out / 'manifest.parquet'}{hint}", result)


def run_array_task(recipe: Recipe, out: Path, task: int, tasks: int, llm_config: Any = None,
                   strict: bool = False) -> list[int]:
    """What SLURM array task ``task`` of ``tasks`` does: slices task, task+tasks, ... not yet done."""
    if not 0 <= task < tasks:
        raise ValueError(f"task {task} is outside 0..{tasks - 1}")
    plan = load_work_plan(out, recipe)
    work = out / WORK_DIRNAME
    mine = [i for i in pending_slices(plan, work) if i % tasks == task]
    session = LLMSession(recipe, llm_config)
    try:
        for i in mine:
            run_slice(plan, work, i, session.runner, strict=strict)
    finally:
        session.close()
    return mine


def merge_build(recipe: Recipe, out: Path, *, keep_work: bool = False, progress: Progress | None = None) -> BuildResult:
    """The merge step alone (the SLURM merge task); every slice must be finished."""
    plan = load_work_plan(out, recipe)
    work = out / WORK_DIRNAME
    missing = pending_slices(plan, work)
    if missing:
        raise RuntimeError(f"cannot merge {out}: {len(missing)} slice(s) unfinished, e.g. {missing[:5]}")
    result = merge(plan, work, out, progress=progress)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return result


def build(recipe: Recipe, sources_dir: Path | None = None, out: Path | None = None, *,
          workers: int = 1, seed: int | None = None, keep_work: bool = False,
          slice_size: int = SLICE_RECORDS, llm_config: Any = None, progress: Progress | None = None,
          strict: bool = False, allow_empty: bool = False, decontam_dir: str | Path | None = None) -> BuildResult:
    """Plan, convert and merge one recipe. ``strict`` raises the first unexpected per-record
    error instead of recording it as ``internal_error``; unless ``allow_empty``, a build with no
    source found or no sample emitted raises ``EmptyBuildError`` (the latter after writing it)."""
    out = Path(out) if out else Path("shards") / recipe.name
    if recipe.grpo_prep is not None:  # the GRPO set drawn from another recipe's build
        from datakit.grpo_build import build_grpo

        return build_grpo(recipe, sources_dir, out, seed=seed, work_dirname=WORK_DIRNAME, workers=workers,
                          slice_size=slice_size, llm_config=llm_config, progress=progress, strict=strict,
                          allow_empty=allow_empty, decontam_dir=decontam_dir)
    plan, work = plan_build(recipe, sources_dir, out, seed=seed, slice_size=slice_size, strict=strict,
                            allow_empty=allow_empty, decontam_dir=decontam_dir, progress=progress)
    session = LLMSession(recipe, llm_config)
    try:
        convert_all(plan, work, workers, progress, session, llm_config, strict)
    finally:
        session.close()
    llm_summary = session.summary()
    result = merge(plan, work, out, extra={"llm": llm_summary} if llm_summary else None, progress=progress)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    if not allow_empty:
        check_not_empty(result)
    return result
