"""A stage's length and progress in samples, Megatron's consumed-samples idea under packing.

One sample of the global batch is a packed sequence holding k conversations, so optimizer steps
do not measure data: a stage configured in steps would run about k epochs, and its warmup and
cosine lengths would follow the same wrong count. Here a stage is configured in conversations
(`train.conversations`) or in passes over the data (`train.epochs`, counted in conversations from
energon's index), every step counts the conversations it consumed on all data-parallel ranks
(packed ones and the ones the task encoder skipped: both used up data), and that count drives
the learning-rate schedule, warmup, the stop condition and the epoch in the log. The count is
saved with every checkpoint, so a resumed run continues it.

GRPO (stage 4) follows the same rule counted in prompts (``train.prompts`` or ``train.epochs``
over the GRPO set): each rollout batch consumes its prompts (and the ones skipped), and its
optimizer updates advance the schedule by them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from megatron_fleming.data.batch import VLMBatch
from megatron_fleming.train.config import TrainConfig


def samples_per_epoch(path: str, split: str) -> int:
    """Samples (conversations, GRPO prompts) in one pass over an energon dataset's split (a
    metadataset: over each of its datasets once, times its `repetitions`), from energon's own
    index."""
    from megatron.energon import WorkerConfig, load_dataset

    loaded = load_dataset(path).get_datasets(
        training=True, split_part=split,
        worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0))
    # repetitions: None in a blend by weight (each dataset once per epoch); 0 leaves a dataset out
    total = sum(len(item.dataset) * (1 if item.repetitions is None else item.repetitions)
                for item in loaded.datasets)
    if total <= 0:
        raise ValueError(f"{path} has no {split!r} samples: check data.path and data.split")
    return int(total)


@dataclass(frozen=True)
class StageLength:
    """How many samples the stage consumes, how many make one epoch, and what they are."""

    total: int
    per_epoch: int
    unit: str = "conversations"

    @classmethod
    def of(cls, cfg: TrainConfig) -> StageLength:
        """Stages 1-3: ``train.conversations`` or ``train.epochs`` over ``data.path``."""
        return cls.counted(cfg.data.path, cfg.data.split, count=cfg.train.conversations,
                           epochs=cfg.train.epochs, unit="conversations")

    @classmethod
    def counted(cls, path: str | None, split: str, *, count: int | None, epochs: float | None,
                unit: str) -> StageLength:
        """`count` samples, or `epochs` passes over the split (exactly one is set: the configs
        check it)."""
        if path is None:
            raise ValueError("data.path is not set: pass --data DIR or set data.path")
        per_epoch = samples_per_epoch(path, split)
        total = count if count is not None else math.ceil(epochs * per_epoch)
        return cls(total=total, per_epoch=per_epoch, unit=unit)

    def warmup(self, warmup_ratio: float) -> int:
        """Warmup length in samples: the configured fraction of the stage, rounded up."""
        return math.ceil(warmup_ratio * self.total)

    def epoch(self, consumed: int) -> float:
        return consumed / self.per_epoch

    def finished(self, consumed: int) -> bool:
        return consumed >= self.total


def consumed_by(batches: list[VLMBatch]) -> int:
    """Samples these batches used up: the ones they hold (packed conversations, GRPO prompts)
    plus the ones skipped to make them."""
    return sum(len(b.__key__) + sum(b.skipped.values()) for b in batches)


def global_consumed(batches: list[VLMBatch], device: torch.device) -> int:
    """`consumed_by` summed over the data-parallel replicas (every rank of a replica draws the
    same batches, so the data-parallel group counts each once). The same value on every rank."""
    from megatron.core import parallel_state

    count = torch.tensor([consumed_by(batches)], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(count, group=parallel_state.get_data_parallel_group())
    return int(count.item())
