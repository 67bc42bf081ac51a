"""The typed config of a pipeline (``megatron_fleming/configs/pipelines/*.yaml``), validated once.

A pipeline names what to build (datakit recipes, blends of builds, the GRPO draw), what to hold
out and register for decontamination, how the first stage is initialised, the stages in order
(each a `fleming train` / `fleming grpo` config and the data it reads), what to evaluate after
which stage, and the Slurm resources of each kind of job. Names refer to each other (a stage's
``data`` is a build, a blend or the GRPO set; ``init_from`` is ``init`` or an earlier stage); a
reference that resolves to nothing, or a setting the runner cannot honour, is refused here with
a message naming it.

Relative paths of configs and recipes are taken from the repository root; folders of data
(``data.sources``, a benchmark's ``data``) from where the command runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from megatron_fleming.train.config import _require, from_yaml

REPO = Path(__file__).resolve().parents[2]
HELDOUT = "heldout"  # the name a benchmark's data or a decontam dir uses for the held-out fixture
INIT = "init"  # a stage's init_from: the pipeline's initial weights


def repo_path(path: str) -> Path:
    """A config or recipe path: absolute, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO / p


@dataclass(frozen=True)
class GRPODataSection:
    """The GRPO prompt set: `python -m datakit.llm.grpo_prep` over builds' train splits."""

    name: str
    sources: list[str]  # builds whose train split is drawn from
    seed: int
    target_size: int = 100_000
    yes_no_share: float = 0.05

    def __post_init__(self) -> None:
        _require(bool(self.sources), "data.grpo.sources names no build")
        _require(self.target_size >= 1, "data.grpo.target_size must be >= 1")


@dataclass(frozen=True)
class DataSection:
    #: name -> datakit recipe (a packaged name or a path); built into <out>/data/<name>
    builds: dict[str, str]
    sources: str | None = None  # `datakit build --sources` (None: the bundled samples)
    #: what a build's fingerprint reads of its sources: file names and sizes, or nothing (a
    #: source tree too large to list on every run; then rebuild with --redo)
    fingerprint_sources: Literal["listing", "none"] = "listing"
    workers: int = 1  # `datakit build --workers` (local runs)
    #: name -> {build: weight}: an energon metadataset <out>/data/<name>.yaml over the builds
    blends: dict[str, dict[str, float]] = field(default_factory=dict)
    grpo: GRPODataSection | None = None

    def __post_init__(self) -> None:
        _require(bool(self.builds), "data.builds names no recipe")
        _require(self.fingerprint_sources in ("listing", "none"),
                 f"data.fingerprint_sources {self.fingerprint_sources!r}: use listing or none")
        _require(self.workers >= 1, "data.workers must be >= 1")
        for name, weights in self.blends.items():
            unknown = sorted(set(weights) - set(self.builds))
            _require(not unknown, f"data.blends.{name} blends {unknown}, not in data.builds")
            _require(all(w > 0 for w in weights.values()), f"data.blends.{name}: weights must be > 0")
        clash = sorted(set(self.builds) & (set(self.blends) | {self.grpo.name if self.grpo else ""}))
        _require(not clash, f"data: {clash} named twice (builds, blends and the GRPO set share names)")
        if self.grpo is not None:
            unknown = sorted(set(self.grpo.sources) - set(self.builds))
            _require(not unknown, f"data.grpo.sources {unknown} are not in data.builds")

    def datasets(self) -> set[str]:
        """Every name a stage's ``data`` may use."""
        return set(self.builds) | set(self.blends) | ({self.grpo.name} if self.grpo else set())


@dataclass(frozen=True)
class HeldoutSection:
    """A benchmark fixture in a released layout from held-out records: ``recipe`` is built once
    without decontamination, a seeded ``fraction`` of its records (by group), or ``per_source``
    records of each source, is taken out, and
    their ``tasks`` questions are written in ``layout``; registered under ``decontam``, every
    build then drops those images (and their near duplicates)."""

    recipe: str
    tasks: list[str]
    seed: int
    fraction: float | None = None
    per_source: int | None = None
    layout: Literal["omnimedvqa"] = "omnimedvqa"
    langs: list[str] = field(default_factory=lambda: ["en"])
    #: hold out records of these sources only (None: all). A source whose images are all near
    #: duplicates of each other loses every training image to decontamination once one of its
    #: records is held out; leave such sources out here so their modality stays learnable.
    sources: list[str] | None = None

    def __post_init__(self) -> None:
        _require((self.fraction is None) != (self.per_source is None),
                 "heldout: give exactly one of fraction and per_source")
        _require(self.fraction is None or 0 < self.fraction < 1, f"heldout.fraction {self.fraction} must be in (0, 1)")
        _require(self.per_source is None or (isinstance(self.per_source, int) and self.per_source >= 1),
                 f"heldout.per_source {self.per_source} must be an integer >= 1")
        _require(self.layout == "omnimedvqa", f"heldout.layout {self.layout!r}: only omnimedvqa "
                 "(multiple choice with its question type and modality) is written")
        _require(bool(self.tasks), "heldout.tasks names no task")
        _require(self.langs == ["en"], "heldout.langs: the OmniMedVQA layout is English; use [en]")


@dataclass(frozen=True)
class DecontamEntry:
    benchmark: str  # datakit.benchmarks reader name
    dir: str  # the benchmark's released folder, or "heldout"


@dataclass(frozen=True)
class TokenizerSection:
    """A tiny byte-level BPE trained once on the named builds' texts (CPU pipelines); every
    stage then reads it (``data.tokenizer.path``), so all stages share one vocabulary."""

    tiny_bpe_vocab: int
    builds: list[str]

    def __post_init__(self) -> None:
        _require(self.tiny_bpe_vocab >= 64, "tokenizer.tiny_bpe_vocab must be >= 64")
        _require(bool(self.builds), "tokenizer.builds names no build")


@dataclass(frozen=True)
class InitSection:
    """The weights stage 1 starts from, written as a checkpoint (and evaluated as 'init'):
    either a Hugging Face InternVL folder converted (`fleming convert hf-to-mcore`), or a random
    initialisation: `fleming train` with ``config`` and ``overrides`` that leave the weights as
    built (one step at learning rate 0)."""

    hf: str | None = None
    tp: int = 1
    pp: int = 1
    config: str | None = None
    data: str | None = None
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _require((self.hf is None) != (self.config is None),
                 "init needs exactly one of 'hf' (a Hugging Face folder to convert) or 'config' "
                 "(a training config whose run writes the random initial weights)")
        _require(self.config is None or self.data is not None, "init.config needs init.data")


@dataclass(frozen=True)
class StageSection:
    name: str
    command: Literal["train", "grpo"]
    config: str
    data: str  # a build, a blend or the GRPO set
    #: "init" or an earlier stage; None: the stage config's own checkpoint.init_from (or none)
    init_from: str | None = None
    overrides: list[str] = field(default_factory=list)
    ranks: int = 1  # local runs: processes (torchrun when > 1)

    def __post_init__(self) -> None:
        _require(self.command in ("train", "grpo"), f"stage {self.name}: command {self.command!r} "
                 "must be train (stages 1-3) or grpo (stage 4)")
        _require(repo_path(self.config).is_file(), f"stage {self.name}: no config {self.config}")
        _require(self.ranks >= 1, f"stage {self.name}: ranks must be >= 1")


@dataclass(frozen=True)
class BenchmarkEntry:
    data: str  # the released folder, or "heldout"
    label: str | None = None  # the report's name for it (default: the benchmark's)
    #: the benchmark is the paper's: its Table 3 figure is shown beside ours
    paper: bool = True


@dataclass(frozen=True)
class EvaluationSection:
    after: list[str]  # "init" and/or stage names
    benchmarks: dict[str, BenchmarkEntry]  # datakit.benchmarks name -> entry
    args: list[str] = field(default_factory=list)  # more `fleming eval run` flags
    ranks: int = 1  # local runs: the eval's own ranks come from --tp/--pp in args

    def __post_init__(self) -> None:
        from datakit.benchmarks import BENCHMARKS

        unknown = sorted(set(self.benchmarks) - set(BENCHMARKS))
        _require(not unknown, f"evaluation.benchmarks {unknown} unknown; known: {', '.join(BENCHMARKS)}")
        _require(bool(self.after) and bool(self.benchmarks), "evaluation needs 'after' and 'benchmarks'")


@dataclass(frozen=True)
class SlurmJob:
    """The resources of one kind of job (sbatch options)."""

    nodes: int = 1
    ntasks_per_node: int = 1
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    mem: str | None = None  # e.g. "0" (all of the node's memory)
    time: str = "01:00:00"
    exclusive: bool = False
    #: training jobs: SIGTERM this long before the time limit (checkpoint, then requeue)
    signal_before_s: int = 180


@dataclass(frozen=True)
class SlurmSection:
    partition: str | None = None
    account: str | None = None
    python: str | None = None  # interpreter on the nodes (default: the one submitting)
    device: Literal["cuda", "cpu"] = "cuda"  # of the training and evaluation tasks
    env_file: str | None = None  # sourced by training jobs (FLEMING_ENV_FILE)
    array: int = 8  # array tasks of each data build
    build: SlurmJob = field(default_factory=SlurmJob)  # one array task, also plan and merge
    job: SlurmJob = field(default_factory=SlurmJob)  # the small steps (decontam, blend, report...)
    stages: dict[str, SlurmJob] = field(default_factory=dict)  # per stage name, else ...
    stage: SlurmJob = field(default_factory=SlurmJob)  # ... this one
    evaluation: SlurmJob = field(default_factory=SlurmJob)

    def __post_init__(self) -> None:
        _require(self.device in ("cuda", "cpu"), f"slurm.device {self.device!r}: cuda or cpu")
        _require(self.array >= 1, "slurm.array must be >= 1")


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    data: DataSection
    stages: list[StageSection] = field(default_factory=list)  # none: a data-only pipeline
    evaluation: EvaluationSection | None = None
    out: str = "runs/pipeline"
    description: str = ""
    init: InitSection | None = None
    heldout: HeldoutSection | None = None
    decontam: dict[str, DecontamEntry] = field(default_factory=dict)
    tokenizer: TokenizerSection | None = None
    slurm: SlurmSection = field(default_factory=SlurmSection)

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        _require(len(set(names)) == len(names), f"stages: names repeat in {names}")
        _require(INIT not in names, f"stages: '{INIT}' is the initial weights, not a stage name")
        datasets = self.data.datasets()
        for i, stage in enumerate(self.stages):
            _require(stage.data in datasets, f"stage {stage.name}: data {stage.data!r} is not a "
                     f"build, blend or the GRPO set ({sorted(datasets)})")
            earlier = [INIT, *names[:i]]
            _require(stage.init_from is None or stage.init_from in earlier, f"stage {stage.name}: init_from "
                     f"{stage.init_from!r} must be one of {earlier}")
            _require(stage.init_from != INIT or self.init is not None,
                     f"stage {stage.name} starts from init, but the pipeline has no init section")
        if self.init is not None and self.init.data is not None:
            _require(self.init.data in datasets, f"init.data {self.init.data!r} is not a dataset")
        if self.tokenizer is not None:
            unknown = sorted(set(self.tokenizer.builds) - set(self.data.builds))
            _require(not unknown, f"tokenizer.builds {unknown} are not in data.builds")
        if self.heldout is not None:
            _require(any(d.dir == HELDOUT for d in self.decontam.values()),
                     "heldout is set but no decontam entry registers it (dir: heldout): training "
                     "would not be proven to leave it out")
        benchmarks = self.evaluation.benchmarks.values() if self.evaluation else ()
        uses_heldout = [d for d in self.decontam.values() if d.dir == HELDOUT] + \
            [b for b in benchmarks if b.data == HELDOUT]
        _require(not uses_heldout or self.heldout is not None,
                 "a decontam dir or a benchmark's data is 'heldout' but there is no heldout section")
        if self.evaluation is not None:
            points = [INIT, *names]
            unknown = [a for a in self.evaluation.after if a not in points]
            _require(not unknown, f"evaluation.after {unknown}: choose from {points}")
            _require(INIT not in self.evaluation.after or self.init is not None,
                     "evaluation.after has init, but the pipeline has no init section")
        unknown = sorted(set(self.slurm.stages) - set(names))
        _require(not unknown, f"slurm.stages {unknown} are not stages")

    def stage(self, name: str) -> StageSection:
        return next(s for s in self.stages if s.name == name)


def load_pipeline(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pipeline config {path}; see megatron_fleming/configs/pipelines/")
    data: Any = yaml.safe_load(path.read_text()) or {}
    try:
        return from_yaml(PipelineConfig, data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
