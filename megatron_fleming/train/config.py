"""The typed config of one training run (stages 1-3), loaded from YAML and validated once.

A run config names a model preset, how it is parallelised, the data, the optimizer and schedule,
the stage (which decides what is frozen), checkpointing and FP8. `load_config(path, overrides)`
reads the YAML, applies ``section.key=value`` overrides (values parsed as YAML), and builds the
dataclasses; every check names the field and the fix, and nothing is silently rewritten.
`TrainConfig.to_dict()` is the resolved config that each run saves next to its checkpoints.

Batch sizes count what energon batches: packed sequences when packing is on (each up to
``data.task_encoder.max_seq_len`` tokens), conversations otherwise. ``global_batch_size`` =
``micro_batch_size`` x data-parallel size x gradient-accumulation steps; the loss is per token
over the whole global batch. A stage's length is counted in conversations, never in steps
(`train.schedule`): ``train.conversations``, or ``train.epochs`` passes over the data.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from megatron_fleming.data.task_encoder import TaskEncoderConfig
from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.presets import preset_path
from megatron_fleming.train.fp8 import Fp8Config, check_fp8

#: Task-encoder fields the trainer derives from the model; a config must not set them.
MODEL_DERIVED_DATA_FIELDS = ("tokens_per_tile", "v2pe_delta")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class ModelSection:
    """A preset from `megatron_fleming/presets/` plus nested overrides of its `model` block."""

    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.build()  # fail at load time, naming the bad field

    def build(self) -> VLMConfig:
        data = yaml.safe_load(preset_path(self.preset).read_text())["model"]
        return VLMConfig.from_dict(_deep_merge(data, self.overrides))


@dataclass(frozen=True)
class TokenizerSection:
    """Exactly one of: a local InternVL / Qwen2.5 tokenizer directory, or a tiny byte-level BPE
    trained on the training split's texts (tests and CPU demos; saved in the run directory)."""

    path: str | None = None
    tiny_bpe_vocab: int | None = None

    def __post_init__(self) -> None:
        _require((self.path is None) != (self.tiny_bpe_vocab is None),
                 "data.tokenizer needs exactly one of 'path' (a local tokenizer directory) or "
                 "'tiny_bpe_vocab' (train a small BPE on the data, for tests)")


@dataclass(frozen=True)
class DataSection:
    path: str | None = None  # energon dataset or metadataset; `fleming train --data` sets it
    split: str = "train"
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    #: Paper Table 2 "dynamic size": InternVL dynamic tiling (more than one tile per image).
    dynamic_resolution: bool = True
    num_workers: int = 2
    shuffle_buffer_size: int | None = 100
    max_samples_per_sequence: int | None = 100
    packing_buffer_size: int | None = None  # None: no packing
    task_encoder: dict[str, Any] = field(default_factory=dict)  # TaskEncoderConfig fields

    def __post_init__(self) -> None:
        given = sorted(set(self.task_encoder) & set(MODEL_DERIVED_DATA_FIELDS))
        _require(not given, f"data.task_encoder sets {given}: these come from the model config "
                            "(model.overrides); remove them here")
        _require("image_size" not in self.task_encoder.get("tiling", {}),
                 "data.task_encoder.tiling.image_size comes from the model's vision.image_size; "
                 "remove it here")
        te = self.encoder_config()
        multi_tile = te.tiling.max_tiles > 1
        _require(multi_tile == self.dynamic_resolution,
                 f"data.dynamic_resolution is {self.dynamic_resolution} but "
                 f"data.task_encoder.tiling.max_tiles is {te.tiling.max_tiles}; dynamic resolution "
                 "means max_tiles > 1, fixed resolution means max_tiles = 1")
        _require(self.num_workers >= 0, "data.num_workers must be >= 0")
        _require(self.packing_buffer_size is None or self.packing_buffer_size >= 1,
                 "data.packing_buffer_size must be >= 1, or null for no packing")
        _require(self.packing_buffer_size is None or te.layout == "packed",
                 "packing (data.packing_buffer_size) needs data.task_encoder.layout: packed")

    def encoder_config(self, model: VLMConfig | None = None) -> TaskEncoderConfig:
        """The task encoder's config; with `model`, its tile size, tokens per tile and V2PE."""
        data = copy.deepcopy(self.task_encoder)
        if model is not None:
            data.setdefault("tiling", {})["image_size"] = model.vision.image_size
            data.update(tokens_per_tile=model.tokens_per_tile, v2pe_delta=model.v2pe_delta)
        return TaskEncoderConfig.from_dict(data)


@dataclass(frozen=True)
class OptimizerSection:
    """megatron-core AdamW (decoupled weight decay; no decay on biases and norms)."""

    lr: float
    min_lr: float = 0.0
    weight_decay: float = 0.05
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    distributed: bool = True  # megatron's distributed optimizer (ZeRO-1 over data parallel)
    overlap_grad_reduce: bool = False
    overlap_param_gather: bool = False

    def __post_init__(self) -> None:
        _require(0 <= self.min_lr <= self.lr, f"optimizer needs 0 <= min_lr ({self.min_lr}) <= "
                                              f"lr ({self.lr})")
        _require(self.weight_decay >= 0, "optimizer.weight_decay must be >= 0")
        _require(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1,
                 "optimizer.adam_beta1/adam_beta2 must be in [0, 1)")
        _require(self.clip_grad >= 0, "optimizer.clip_grad must be >= 0 (0 turns clipping off)")
        _require(not self.overlap_param_gather or self.distributed,
                 "optimizer.overlap_param_gather needs optimizer.distributed: true")


@dataclass(frozen=True)
class ScheduleSection:
    style: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.03  # of the stage's conversations, linear from 0

    def __post_init__(self) -> None:
        _require(self.style in ("cosine", "linear", "constant"),
                 f"schedule.style {self.style!r}: use cosine, linear or constant")
        _require(0 <= self.warmup_ratio < 1, "schedule.warmup_ratio must be in [0, 1)")


@dataclass(frozen=True)
class TrainSection:
    stage: int  # 1 interleaved pretraining, 2 knowledge injection (LLM frozen), 3 instruction
    global_batch_size: int
    #: The stage's length, exactly one of: conversations consumed (Megatron's train-samples), or
    #: passes over the data split, counted in conversations from energon's index (the paper
    #: trains every stage for 1 epoch). Warmup, cosine decay and the stop follow this count.
    conversations: int | None = None
    epochs: float | None = None
    micro_batch_size: int = 1
    seed: int = 1234
    log_interval: int = 1
    #: Stop (after a checkpoint, exit 0) at iterations divisible by this: time-sliced jobs that
    #: requeue themselves, and tests that stop a run at a known step. None: run to the end.
    exit_interval: int | None = None

    def __post_init__(self) -> None:
        _require(self.stage in (1, 2, 3), f"train.stage {self.stage}: stages 1-3 train here "
                                          "(stage 4 is GRPO, `fleming grpo`)")
        _require((self.conversations is None) != (self.epochs is None),
                 f"train.conversations is {self.conversations!r} and train.epochs is "
                 f"{self.epochs!r}: set exactly one, the stage's length in conversations or in "
                 "passes over the data (e.g. train.epochs=1, as the paper trains each stage)")
        _require(self.conversations is None or (isinstance(self.conversations, int)
                                                and self.conversations >= 1),
                 f"train.conversations ({self.conversations!r}) must be an integer >= 1")
        _require(self.epochs is None or (isinstance(self.epochs, (int, float)) and self.epochs > 0),
                 f"train.epochs ({self.epochs!r}) must be > 0")
        _require(self.micro_batch_size >= 1, "train.micro_batch_size must be >= 1")
        _require(self.global_batch_size % self.micro_batch_size == 0,
                 f"train.global_batch_size ({self.global_batch_size}) must be a multiple of "
                 f"train.micro_batch_size ({self.micro_batch_size})")
        _require(self.log_interval >= 1, "train.log_interval must be >= 1")
        _require(self.exit_interval is None or self.exit_interval >= 1,
                 "train.exit_interval must be >= 1, or null")


@dataclass(frozen=True)
class CheckpointSection:
    dir: str  # checkpoints, resolved config, TensorBoard logs; a run resumes from here
    interval: int | None = None  # iterations between saves; None: only at the end / on signal
    init_from: str | None = None  # model weights to start from (no checkpoint in `dir` yet)
    keep_last: int | None = None  # older iter_* folders are deleted; None keeps all
    save_at_end: bool = True

    def __post_init__(self) -> None:
        _require(self.interval is None or self.interval >= 1, "checkpoint.interval must be >= 1")
        _require(self.keep_last is None or self.keep_last >= 1, "checkpoint.keep_last must be >= 1")


@dataclass(frozen=True)
class LoggingSection:
    tensorboard: bool = True  # under <checkpoint.dir>/tensorboard


@dataclass(frozen=True)
class TrainConfig:
    name: str
    model: ModelSection
    parallel: ParallelConfig
    data: DataSection
    optimizer: OptimizerSection
    train: TrainSection
    checkpoint: CheckpointSection
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    fp8: Fp8Config = field(default_factory=Fp8Config)
    description: str = ""

    def __post_init__(self) -> None:
        check_fp8(self.fp8, self.parallel)
        multiple = self.data.encoder_config().pad_to_multiple_of
        if self.fp8.enabled:
            _require(multiple % 16 == 0, "FP8 GEMMs need sequence lengths that are multiples of "
                     "16: set data.task_encoder.pad_to_multiple_of to a multiple of 16")
        if self.parallel.sequence_parallel:
            _require(multiple % self.parallel.tensor_parallel == 0,
                     "sequence parallelism splits the sequence over TP ranks: set "
                     "data.task_encoder.pad_to_multiple_of to a multiple of "
                     f"parallel.tensor_parallel ({self.parallel.tensor_parallel})")

    def vlm_config(self) -> VLMConfig:
        return self.model.build()

    def microbatches(self, data_parallel: int) -> int:
        """Gradient-accumulation steps per optimizer step on `data_parallel` replicas."""
        per_step = self.train.micro_batch_size * data_parallel
        _require(self.train.global_batch_size % per_step == 0,
                 f"train.global_batch_size ({self.train.global_batch_size}) is not a multiple of "
                 f"micro_batch_size x data-parallel size ({self.train.micro_batch_size} x "
                 f"{data_parallel}); change one of them or the number of GPUs")
        return self.train.global_batch_size // per_step

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config (every field, defaults filled); `load_config` reads it."""
        return save_config(self, path)


def from_yaml(hint: Any, value: Any, where: str = "") -> Any:
    """``value`` from YAML as the type ``hint`` says: dataclasses (recursively; unknown keys and
    missing fields refused, naming the key path), lists and dicts of them, optional ones;
    anything else as it is. Every typed config (train, GRPO, pipeline) is read through it."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        nested = [a for a in inner if dataclasses.is_dataclass(a)]
        if len(inner) == 1 or nested:
            return from_yaml((nested or inner)[0], value, where)
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'config'} must be a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(hint)
        names = {f.name for f in dataclasses.fields(hint)}
        unknown = sorted(set(value) - names)
        _require(not unknown, f"unknown keys {unknown} in {where or 'config'}; known: {sorted(names)}")
        kwargs = {k: from_yaml(hints[k], v, f"{where}.{k}".lstrip(".")) for k, v in value.items()}
        try:
            return hint(**kwargs)
        except TypeError as e:  # a missing required field
            raise ValueError(f"{where or 'config'}: {e}") from None
    if origin is list:
        _require(isinstance(value, list), f"{where} must be a list")
        return [from_yaml(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        _require(isinstance(value, dict), f"{where} must be a mapping")
        return {str(k): from_yaml(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else value
    return value


def apply_override(data: dict, override: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) into the nested mapping `data`, in place."""
    key, sep, raw = override.partition("=")
    _require(bool(sep) and bool(key), f"override {override!r} must look like section.key=value")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        _require(isinstance(node, dict), f"override {override!r}: {part} is not a section")
    node[leaf] = yaml.safe_load(raw)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write a resolved config dataclass as YAML, atomically (every field, defaults filled)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False, allow_unicode=True))
    tmp.replace(path)
    return path


def read_config(cls: type, path: str | Path, overrides: list[str], what: str, hint: str) -> Any:
    """A typed config ``cls`` from a YAML file plus ``section.key=value`` overrides; errors name
    the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} {path}; {hint}")
    data = yaml.safe_load(path.read_text()) or {}
    for override in overrides:
        apply_override(data, override)
    try:
        if not isinstance(data, dict):
            raise ValueError(f"config must be a mapping, got {type(data).__name__}")
        return from_yaml(cls, data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    return read_config(TrainConfig, path, overrides, "training config", "see megatron_fleming/configs/")
