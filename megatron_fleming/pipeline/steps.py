"""The chain of a pipeline: one `Step` per command, with what it reads and what it leaves.

`plan(cfg, out)` turns a `PipelineConfig` into steps in dependency order:

    decontam-* (benchmarks registered)      [build-heldout_base -> heldout -> decontam-heldout]
    build-<name> (datakit recipes, every build checked against the registry)
    blend-<name>, grpo-data, tokenizer      (derived datasets; the tiny BPE)
    init                                    (converted or random initial weights)
    <stage> ...                             (fleming train / grpo, each from the one before)
    eval-<point>                            (fleming eval run after init and each stage)
    report

A step's command is a Python module invocation of the project's public CLIs
(``-m datakit.cli build ...``, ``-m megatron_fleming.cli train ...``); the runner puts the
interpreter in front (and torchrun for several local ranks). Folders under ``out``::

    data/<build>/  data/<blend>.yaml  data/<grpo>/   decontam/   heldout/{base,fixture}/
    tokenizer/     runs/{init,<stage>}/              eval/<point>/   report/
    .steps/        logs/   slurm/   pipeline.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megatron_fleming.pipeline.config import HELDOUT, INIT, PipelineConfig, repo_path


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # decontam heldout build blend grpo_data tokenizer init train grpo eval report
    argv: tuple[str, ...]  # after the interpreter: ("-m", "module", ...)
    deps: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()  # files whose bytes the fingerprint reads
    extra: tuple[str, ...] = ()  # more that the fingerprint reads (a folder listing)
    outputs: tuple[Path, ...] = ()  # all present once the step is done
    clean: tuple[Path, ...] = ()  # removed before the step starts afresh
    ranks: int = 1  # local processes (torchrun when > 1)
    resources: str = "job"  # slurm: job, build, evaluation, or stage:<name>
    details: dict[str, Any] = field(default_factory=dict)  # what the Slurm renderer needs


@dataclass(frozen=True)
class Layout:
    """Where everything of one pipeline run goes."""

    out: Path

    def data(self, name: str) -> Path:
        return self.out / "data" / name

    def run(self, name: str) -> Path:
        return self.out / "runs" / name

    def eval(self, point: str) -> Path:
        return self.out / "eval" / point

    @property
    def registry(self) -> Path:
        return self.out / "decontam"

    @property
    def empty_registry(self) -> Path:  # the held-out base build is checked against nothing
        return self.out / "heldout" / "no-benchmarks"

    @property
    def heldout_base(self) -> Path:
        return self.out / "heldout" / "base"

    @property
    def fixture(self) -> Path:
        return self.out / "heldout" / "fixture"

    @property
    def tokenizer(self) -> Path:
        return self.out / "tokenizer"

    @property
    def eval_data(self) -> Path:  # one folder per benchmark, named as it (links)
        return self.out / "eval" / "data"

    @property
    def report(self) -> Path:
        return self.out / "report"

    @property
    def steps(self) -> Path:
        return self.out / ".steps"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def slurm(self) -> Path:
        return self.out / "slurm"


def recipe_file(recipe: str) -> Path:
    """A packaged recipe by name, or a recipe file by path (a relative one from the repository
    root, as stage configs are)."""
    from datakit.recipe import resolve_recipe_path

    looks_like_path = "/" in recipe or recipe.endswith((".yaml", ".yml"))
    return Path(resolve_recipe_path(str(repo_path(recipe)) if looks_like_path else recipe)).resolve()


def sources_listing(folder: Path) -> str:
    """Every file under ``folder``: relative path and size (what a build's fingerprint reads of
    its sources)."""
    if not folder.exists():
        return f"{folder}: missing"
    rows = sorted(f"{p.relative_to(folder)}\t{p.stat().st_size}" for p in folder.rglob("*") if p.is_file())
    return f"{folder}\n" + "\n".join(rows)


def _listing(cfg: PipelineConfig, folder: Path) -> tuple[str, ...]:
    return (sources_listing(folder),) if cfg.data.fingerprint_sources == "listing" else (str(folder),)


def _sources(cfg: PipelineConfig) -> Path:
    if cfg.data.sources is None:
        return repo_path("datakit/sample_sources")
    return Path(cfg.data.sources).resolve()


def recipe_arg(recipe: str) -> str:
    """A packaged recipe by name; a recipe file by its absolute path (steps run from anywhere)."""
    from datakit.recipe import RECIPES_DIR

    path = recipe_file(recipe)
    return recipe if path.parent == RECIPES_DIR.resolve() and path.stem == recipe else str(path)


def _build_step(cfg: PipelineConfig, name: str, recipe: str, out: Path, registry: Path,
                deps: tuple[str, ...]) -> Step:
    argv = ["-m", "datakit.cli", "build", recipe_arg(recipe), "--out", str(out), "--workers", str(cfg.data.workers),
            "--decontam", str(registry)]
    if cfg.data.sources is not None:
        argv += ["--sources", str(_sources(cfg))]
    return Step(name=name, kind="build", argv=tuple(argv), deps=deps, inputs=(recipe_file(recipe),),
                extra=_listing(cfg, _sources(cfg)), outputs=(out / "build.json",), clean=(out,),
                resources="build",
                details={"recipe": recipe_arg(recipe), "out": str(out), "registry": str(registry),
                         "sources": None if cfg.data.sources is None else str(_sources(cfg))})


def _data_path(cfg: PipelineConfig, lay: Layout, name: str) -> tuple[Path, str]:
    """A dataset's path for --data and the step that makes it."""
    if name in cfg.data.builds:
        return lay.data(name), f"build-{name}"
    if name in cfg.data.blends:
        return lay.data(f"{name}.yaml"), f"blend-{name}"
    return lay.data(name), "grpo-data"


def _checkpoint_step(name: str) -> str:
    return name  # "init" or the stage's own name


def plan(cfg: PipelineConfig, out: Path) -> list[Step]:
    lay = Layout(Path(out).resolve())
    steps: list[Step] = []
    add = steps.append

    # --- decontamination: the held-out fixture first, then every registered benchmark
    if cfg.heldout is not None:
        h = cfg.heldout
        add(_build_step(cfg, "build-heldout_base", h.recipe, lay.heldout_base, lay.empty_registry, ()))
        add(Step(name="heldout", kind="heldout",
                 argv=("-m", "megatron_fleming.pipeline.heldout", "--build", str(lay.heldout_base),
                       "--out", str(lay.fixture), "--tasks", ",".join(h.tasks), "--langs", ",".join(h.langs),
                       *(("--fraction", str(h.fraction)) if h.fraction is not None
                         else ("--per-source", str(h.per_source))), "--seed", str(h.seed),
                       *(("--sources", ",".join(h.sources)) if h.sources else ())),
                 deps=("build-heldout_base",), outputs=(lay.fixture / "heldout.json",), clean=(lay.fixture,)))
    decontam_steps = []
    for name, entry in cfg.decontam.items():
        held = entry.dir == HELDOUT
        folder = lay.fixture if held else Path(entry.dir).resolve()
        decontam_steps.append(f"decontam-{name}")
        add(Step(name=f"decontam-{name}", kind="decontam",
                 argv=("-m", "datakit.cli", "decontam", "add", name, str(folder), "--benchmark", entry.benchmark,
                       "--registry", str(lay.registry)),
                 deps=("heldout",) if held else (), extra=() if held else _listing(cfg, folder),
                 outputs=(lay.registry / f"{name}.json",)))

    # --- data: builds against the registry, then what is derived from them
    for name, recipe in cfg.data.builds.items():
        add(_build_step(cfg, f"build-{name}", recipe, lay.data(name), lay.registry, tuple(decontam_steps)))
    for name, weights in cfg.data.blends.items():
        path = lay.data(f"{name}.yaml")
        add(Step(name=f"blend-{name}", kind="blend",
                 argv=("-m", "datakit.cli", "blend", *(f"{b}={w}" for b, w in weights.items()),
                       "--shards", str(lay.data("")), "--out", str(path)),
                 deps=tuple(f"build-{b}" for b in weights), outputs=(path,)))
    if cfg.data.grpo is not None:
        g = cfg.data.grpo
        add(Step(name="grpo-data", kind="grpo_data",
                 argv=("-m", "datakit.llm.grpo_prep", *(str(lay.data(b) / "train") for b in g.sources),
                       "--out", str(lay.data(g.name)), "--seed", str(g.seed), "--target-size", str(g.target_size),
                       "--yes-no-share", str(g.yes_no_share)),
                 deps=tuple(f"build-{b}" for b in g.sources), outputs=(lay.data(g.name) / "grpo_report.json",),
                 clean=(lay.data(g.name),)))
    if cfg.tokenizer is not None:
        t = cfg.tokenizer
        add(Step(name="tokenizer", kind="tokenizer",
                 argv=("-m", "megatron_fleming.pipeline.tokenizer", "--out", str(lay.tokenizer),
                       "--vocab", str(t.tiny_bpe_vocab), *(str(lay.data(b)) for b in t.builds)),
                 deps=tuple(f"build-{b}" for b in t.builds), outputs=(lay.tokenizer / "tokenizer.json",),
                 clean=(lay.tokenizer,)))
    tokenizer_deps = ("tokenizer",) if cfg.tokenizer is not None else ()
    tokenizer_overrides = (f"data.tokenizer.path={lay.tokenizer}", "data.tokenizer.tiny_bpe_vocab=null") \
        if cfg.tokenizer is not None else ()

    # --- the initial weights
    if cfg.init is not None:
        i, run = cfg.init, lay.run(INIT)
        if i.hf is not None:
            hf = Path(i.hf).resolve()
            add(Step(name=INIT, kind="init",
                     argv=("-m", "megatron_fleming.cli", "convert", "hf-to-mcore", "--hf", str(hf), "--out", str(run),
                           "--tp", str(i.tp), "--pp", str(i.pp)),
                     extra=(str(hf),), inputs=tuple(p for p in (hf / "config.json",) if p.is_file()),
                     outputs=(run / "metadata.json",), clean=(run,), resources="evaluation"))
        else:
            data, data_step = _data_path(cfg, lay, i.data)
            add(_train_step(INIT, "train", repo_path(i.config), data, run, None,
                            (*tokenizer_overrides, *i.overrides), (data_step, *tokenizer_deps), 1,
                            f"stage:{cfg.stages[0].name}"))

    # --- the stages, each from the previous stage's final weights
    for stage in cfg.stages:
        data, data_step = _data_path(cfg, lay, stage.data)
        start = () if stage.init_from is None else (_checkpoint_step(stage.init_from),)
        add(_train_step(stage.name, stage.command, repo_path(stage.config), data, lay.run(stage.name),
                        None if stage.init_from is None else lay.run(stage.init_from),
                        (*tokenizer_overrides, *stage.overrides), (data_step, *start, *tokenizer_deps), stage.ranks,
                        f"stage:{stage.name}"))

    if cfg.evaluation is not None:
        steps += _eval_steps(cfg, lay)
    report_deps = tuple(s.name for s in steps if s.kind in ("eval", "train", "grpo", "build", "heldout"))
    add(Step(name="report", kind="report", argv=("-m", "megatron_fleming.pipeline.report", str(lay.out)),
             deps=report_deps, outputs=(lay.report / "report.md",)))
    _check(steps)
    return steps


def _eval_steps(cfg: PipelineConfig, lay: Layout) -> list[Step]:
    """`fleming eval run` after each named point, on every configured benchmark at once."""
    ev, steps = cfg.evaluation, []
    names = list(ev.benchmarks)
    if len(names) == 1:
        bench_data = benchmark_folder(cfg, lay, names[0])
    else:
        bench_data = lay.eval_data
    bench_deps = ("heldout",) if any(b.data == HELDOUT for b in ev.benchmarks.values()) else ()
    for point in ev.after:
        target = lay.eval(point)
        steps.append(Step(name=f"eval-{point}", kind="eval",
                 argv=("-m", "megatron_fleming.cli", "eval", "run", "--benchmark", ",".join(names),
                       "--data", str(bench_data), "--mcore", str(lay.run(point)), "--out", str(target), *ev.args),
                 deps=(_checkpoint_step(point), *bench_deps),
                 extra=tuple(f"{n}={benchmark_folder(cfg, lay, n)}" for n in names),
                 outputs=(target / "summary.json",), clean=(target,), ranks=ev.ranks, resources="evaluation"))
    return steps


def benchmark_folder(cfg: PipelineConfig, lay: Layout, name: str) -> Path:
    entry = cfg.evaluation.benchmarks[name]
    return lay.fixture if entry.data == HELDOUT else Path(entry.data).resolve()


def _train_step(name: str, command: str, config: Path, data: Path, run: Path, init_from: Path | None,
                overrides: tuple[str, ...], deps: tuple[str, ...], ranks: int, resources: str) -> Step:
    sets = [f"checkpoint.dir={run}", *([f"checkpoint.init_from={init_from}"] if init_from else []), *overrides]
    return Step(name=name, kind=command if name != INIT else "init",
                argv=("-m", "megatron_fleming.cli", command, "--config", str(config), "--data", str(data), *sets),
                deps=deps, inputs=(config,), outputs=(run / "latest_checkpointed_iteration.txt",), clean=(run,),
                ranks=ranks, resources=resources,
                details={"command": command, "config": str(config), "data": str(data), "overrides": sets})


def _check(steps: list[Step]) -> None:
    """Names unique and every dependency an earlier step (the list is in dependency order)."""
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise ValueError(f"pipeline step {step.name!r} appears twice")
        missing = [d for d in step.deps if d not in seen]
        if missing:
            raise ValueError(f"pipeline step {step.name} depends on {missing}, which come later or not at all")
        seen.add(step.name)

