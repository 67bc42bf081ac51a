"""The seam between the training loop and a stage: what `Trainer` needs from a train module.

As in OLMo-core (``train/train_module/train_module.py``), a train module owns the model chunks,
the optimizer, the schedule and what one step does; `Trainer` owns the loop, when to checkpoint,
the callbacks and preemption. Stages 1-3 (`train.train_module.TrainModule`: one update over a
global batch of micro-batches) and stage 4 (`grpo.train_module.GRPOTrainModule`: rollouts,
rewards and several updates) implement the same protocol, so neither copies the loop.

A stage is as long as the samples it consumes (`schedule.StageLength`: conversations in stages
1-3, prompts in GRPO, Megatron's consumed-samples idea), never a number of steps: each step
reports what it consumed, and the module says when its stage is finished.

Checkpoints (`train.checkpoint.Checkpointer`) read the model through
`model_sharded_state_dict` / `load_model_state_dict`, and the optimizer and scheduler directly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from megatron_fleming.train.schedule import StageLength


@dataclass(frozen=True)
class StepReport:
    """One step, global over all ranks (identical on every rank)."""

    metrics: dict[str, float | None]  # by name: what the callbacks show and log
    samples: int = 0  # conversations (stages 1-3) / prompts (stage 4) the step trained on
    tokens: int = 0  # tokens it processed
    consumed: int = 0  # samples it used up (trained on + skipped): the stage's count advances
    flops: float | None = None  # model FLOPs it computed, all GPUs (None: not counted)
    skipped: Counter = field(default_factory=Counter)  # samples skipped, by reason
    counts: Counter = field(default_factory=Counter)  # other running tallies of the stage


class StageModule(Protocol):
    device: torch.device
    optimizer: Any  # megatron's optimizer
    scheduler: Any  # megatron's OptimizerParamScheduler
    #: Loader items one step takes (micro-batches of the global batch; a rollout batch: 1).
    batches_per_step: int
    #: (metric, format) pairs the console line shows, in order.
    console_metrics: tuple[tuple[str, str], ...]
    #: The stage's length in the samples it counts.
    length: StageLength

    def finished(self, consumed: int) -> bool:
        """Whether the stage is done once `consumed` samples are used up."""

    def step(self, batches: list, iteration: int) -> StepReport:
        """Iteration `iteration` (1-based) over this rank's `batches`."""

    def before_save(self) -> None:
        """Make every state a checkpoint reads consistent (e.g. pending parameter gathers)."""

    def model_sharded_state_dict(self) -> dict: ...

    def load_model_state_dict(self, state: dict) -> None: ...

    def sync_params(self) -> None: ...
