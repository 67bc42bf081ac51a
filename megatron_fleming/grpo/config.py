"""The typed config of a GRPO run (stage 4), loaded from YAML and validated once.

The model, parallelism, optimizer, schedule, checkpoint, logging and FP8 sections are the ones
stages 1-3 use (`megatron_fleming.train.config`); GRPO adds where its prompts come from
(``data``), the algorithm (``grpo``) and the rewards (``rewards``). The paper fixes lr 1e-6,
8 generations at temperature 0.9, KL coefficient 0.04, cosine with 10% warmup, no weight decay,
one tile per image, 4 mini-batch updates per rollout batch, gradient clip 1.0. What it leaves
open has a named default here: clip eps 0.2, the k3 KL estimator, population std + 1e-4,
token-mean aggregation, 1024 response tokens, the judge model.

Counting: as stages 1-3 count conversations (`train.schedule`), stage 4 counts prompts, never
steps: the stage is ``train.prompts`` prompts or ``train.epochs`` passes over the GRPO set (the
paper: 1 epoch), from energon's index. One iteration is one rollout batch of
``grpo.prompts_per_step`` prompts (all data-parallel ranks together) x ``grpo.generations``
samples, followed by ``grpo.mini_batches`` optimizer updates; the prompts it consumed (and the
ones skipped to draw it) advance the count, which drives warmup, cosine decay, the stop and the
logged epoch. One epoch of the 100K-prompt set at 128 prompts per step is 782 iterations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from megatron_fleming.grpo.advantages import StdKind
from megatron_fleming.grpo.loss import AGGREGATIONS, KL_ESTIMATORS, Aggregation, KLEstimator
from megatron_fleming.grpo.rewards import THINK_ANSWER
from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.train.config import (
    CheckpointSection,
    LoggingSection,
    ModelSection,
    OptimizerSection,
    ScheduleSection,
    TokenizerSection,
    _build,
    _require,
    apply_override,
)
from megatron_fleming.train.fp8 import Fp8Config, check_fp8
from megatron_fleming.train.schedule import StageLength

#: The instruction that asks for the rewarded format (R1-style, as EasyR1 / VLM-R1 prompt it).
GRPO_SYSTEM_PROMPT = (
    "You are a medical vision-language assistant. First think about the question step by step "
    "inside <think> </think>, then give the final answer inside <answer> </answer>: "
    "<think> reasoning </think><answer> answer </answer>.")


@dataclass(frozen=True)
class PromptDataSection:
    """The GRPO prompt set: an Energon dataset written by ``python -m datakit.llm.grpo_prep``."""

    path: str | None = None  # `fleming grpo --data` sets it
    split: str = "train"
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    num_workers: int = 2
    shuffle_buffer_size: int | None = 100
    max_samples_per_sequence: int | None = 100
    #: Tiles per image; the paper's stage 4 has no dynamic size: one tile.
    max_tiles: int = 1
    system_prompt: str | None = GRPO_SYSTEM_PROMPT
    max_prompt_len: int = 4096  # longer prompts are skipped and counted (too_long)

    def __post_init__(self) -> None:
        _require(self.num_workers >= 0, "data.num_workers must be >= 0")
        _require(self.max_tiles >= 1, "data.max_tiles must be >= 1 (1: one tile, no dynamic size)")
        _require(self.max_prompt_len >= 1, "data.max_prompt_len must be >= 1")


@dataclass(frozen=True)
class GRPOSection:
    prompts_per_step: int  # all data-parallel ranks together
    generations: int = 8
    temperature: float = 0.9
    top_p: float = 1.0
    top_k: int = 0
    max_response_len: int = 1024
    mini_batches: int = 4  # optimizer updates per rollout batch
    clip_eps: float = 0.2
    kl_coef: float = 0.04
    kl_estimator: KLEstimator = "k3"
    std: StdKind = "population"
    std_eps: float = 1e-4
    aggregation: Aggregation = "token-mean"
    #: Packing budget of one update micro-batch (tokens of whole sequences, prompts included).
    max_tokens_per_microbatch: int = 16384
    #: Prompts whose N samples the engine decodes together (a batch of N x this rows).
    rollout_prompts: int = 4
    #: V2PE step of visual tokens, one fixed value for every sequence in rollouts, reference,
    #: consistency check and updates alike (stage 3's per-sample draws, v2pe_train_deltas, are
    #: training-only); None: the model config's inference value.
    v2pe_delta: float | None = None
    #: The rollout-vs-trainer log-prob check runs every this many iterations (0: never) ...
    logprob_check_interval: int = 1
    #: ... and stops the run when mean(exp|logp_trainer - logp_rollout|) exceeds this (None: never).
    max_logprob_error_ratio: float | None = 1.05

    def __post_init__(self) -> None:
        _require(self.prompts_per_step >= 1, "grpo.prompts_per_step must be >= 1")
        _require(self.generations >= 2, f"grpo.generations ({self.generations}) must be >= 2: "
                 "advantages compare the samples of one prompt")
        _require(self.temperature > 0, "grpo.temperature must be > 0 (GRPO samples; 0 is greedy)")
        _require(0 < self.top_p <= 1 and self.top_k >= 0,
                 "grpo.top_p must be in (0, 1] and grpo.top_k >= 0 (0 = off)")
        _require(self.max_response_len >= 1, "grpo.max_response_len must be >= 1")
        _require(self.mini_batches >= 1, "grpo.mini_batches must be >= 1")
        _require(0 < self.clip_eps < 1, "grpo.clip_eps must be in (0, 1)")
        _require(self.kl_coef >= 0, "grpo.kl_coef must be >= 0 (0: no KL penalty, no reference)")
        _require(self.kl_estimator in KL_ESTIMATORS,
                 f"grpo.kl_estimator {self.kl_estimator!r}: use one of {KL_ESTIMATORS}")
        _require(self.std in ("population", "unbiased"),
                 f"grpo.std {self.std!r}: use 'population' or 'unbiased'")
        _require(self.std_eps >= 0, "grpo.std_eps must be >= 0")
        _require(self.aggregation in AGGREGATIONS,
                 f"grpo.aggregation {self.aggregation!r}: use one of {AGGREGATIONS}")
        _require(self.max_tokens_per_microbatch >= 2, "grpo.max_tokens_per_microbatch must be >= 2")
        _require(self.rollout_prompts >= 1, "grpo.rollout_prompts must be >= 1")
        _require(self.v2pe_delta is None or 0 < self.v2pe_delta <= 1,
                 "grpo.v2pe_delta must be in (0, 1], or null for the model's")
        _require(self.logprob_check_interval >= 0, "grpo.logprob_check_interval must be >= 0")
        _require(self.max_logprob_error_ratio is None or self.max_logprob_error_ratio >= 1,
                 "grpo.max_logprob_error_ratio is a mean of exp|delta| (>= 1), or null")


@dataclass(frozen=True)
class JudgeSection:
    """The LLM judge of open answers: any OpenAI-compatible endpoint; the key comes from the
    environment variable named here. No ``base_url``: open answers count only when exact."""

    base_url: str | None = None
    model: str = "Qwen2.5-72B-Instruct"
    api_key_env: str = "OPENAI_API_KEY"
    cache_dir: str | None = None  # None: <checkpoint.dir>/judge-cache (kept across resumes)
    timeout_s: float = 30.0
    max_attempts: int = 2
    concurrency: int = 16
    max_requests: int | None = None

    def __post_init__(self) -> None:
        _require(self.timeout_s > 0, "rewards.judge.timeout_s must be > 0")
        _require(self.max_attempts >= 1, "rewards.judge.max_attempts must be >= 1")
        _require(self.concurrency >= 1, "rewards.judge.concurrency must be >= 1")


@dataclass(frozen=True)
class RewardSection:
    format_weight: float = 1.0
    accuracy_weight: float = 1.0
    format_pattern: str = THINK_ANSWER  # a regex the whole response must match
    judge: JudgeSection = field(default_factory=JudgeSection)

    def __post_init__(self) -> None:
        import re

        _require(self.format_weight >= 0 and self.accuracy_weight >= 0,
                 "rewards.format_weight and rewards.accuracy_weight must be >= 0")
        _require(self.format_weight + self.accuracy_weight > 0,
                 "rewards: at least one of format_weight and accuracy_weight must be > 0")
        try:
            re.compile(self.format_pattern)
        except re.error as e:
            raise ValueError(f"rewards.format_pattern is not a regular expression: {e}") from None


@dataclass(frozen=True)
class LoopSection:
    #: The stage's length, exactly one of: prompts consumed, or passes over the GRPO set
    #: (counted in prompts from energon's index; the paper trains stage 4 for 1 epoch).
    prompts: int | None = None
    epochs: float | None = None
    seed: int = 1234
    log_interval: int = 1
    exit_interval: int | None = None  # stop (after a checkpoint, exit 0) at multiples of this

    def __post_init__(self) -> None:
        _require((self.prompts is None) != (self.epochs is None),
                 f"train.prompts is {self.prompts!r} and train.epochs is {self.epochs!r}: set "
                 "exactly one, the stage's length in prompts or in passes over the GRPO set "
                 "(e.g. train.epochs=1, as the paper trains stage 4)")
        _require(self.prompts is None or (isinstance(self.prompts, int) and self.prompts >= 1),
                 f"train.prompts ({self.prompts!r}) must be an integer >= 1")
        _require(self.epochs is None or (isinstance(self.epochs, (int, float)) and self.epochs > 0),
                 f"train.epochs ({self.epochs!r}) must be > 0")
        _require(self.log_interval >= 1, "train.log_interval must be >= 1")
        _require(self.exit_interval is None or self.exit_interval >= 1,
                 "train.exit_interval must be >= 1, or null")


@dataclass(frozen=True)
class GRPOConfig:
    name: str
    model: ModelSection
    parallel: ParallelConfig
    data: PromptDataSection
    optimizer: OptimizerSection
    grpo: GRPOSection
    train: LoopSection
    checkpoint: CheckpointSection
    rewards: RewardSection = field(default_factory=RewardSection)
    schedule: ScheduleSection = field(default_factory=lambda: ScheduleSection(warmup_ratio=0.1))
    logging: LoggingSection = field(default_factory=LoggingSection)
    fp8: Fp8Config = field(default_factory=Fp8Config)
    description: str = ""

    def __post_init__(self) -> None:
        check_fp8(self.fp8, self.parallel)
        _require(self.parallel.virtual_pipeline_parallel is None,
                 "GRPO rollouts run one model chunk per rank: set "
                 "parallel.virtual_pipeline_parallel to null")
        _require(not self.parallel.sequence_parallel,
                 "GRPO generation decodes one token per step, which cannot be split over the "
                 "sequence: set parallel.sequence_parallel to false")
        _require(self.parallel.context_parallel == 1, "GRPO needs parallel.context_parallel: 1")
        longest = self.data.max_prompt_len + self.grpo.max_response_len
        _require(longest <= self.grpo.max_tokens_per_microbatch,
                 f"a sequence may hold data.max_prompt_len + grpo.max_response_len = {longest} "
                 f"tokens, more than grpo.max_tokens_per_microbatch "
                 f"({self.grpo.max_tokens_per_microbatch}); raise it or lower the other two")

    def vlm_config(self) -> VLMConfig:
        return self.model.build()

    def stage_length(self) -> StageLength:
        """The stage's length in prompts (reads the GRPO set's energon index)."""
        return StageLength.counted(self.data.path, self.data.split, count=self.train.prompts,
                                   epochs=self.train.epochs, unit="prompts")

    def prompts_per_rank(self, data_parallel: int) -> int:
        """Prompts each data-parallel replica draws per iteration."""
        _require(self.grpo.prompts_per_step % data_parallel == 0,
                 f"grpo.prompts_per_step ({self.grpo.prompts_per_step}) is not a multiple of the "
                 f"data-parallel size ({data_parallel}); change one of them")
        return self.grpo.prompts_per_step // data_parallel

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
        tmp.replace(path)
        return path


def load_grpo_config(path: str | Path, overrides: list[str] = ()) -> GRPOConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GRPO config {path}; see megatron_fleming/configs/*stage4*.yaml")
    data = yaml.safe_load(path.read_text()) or {}
    for override in overrides:
        apply_override(data, override)
    try:
        return _build(GRPOConfig, data, "")
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
