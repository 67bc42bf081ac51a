"""The training loop and the entry point `run(cfg)`: parse, build, fit.

`Trainer` owns only the loop and when to checkpoint, for any stage (`protocol.StageModule`):
draw the items of this rank's step from the loader, let the module take the step, accumulate
what it reports (the samples consumed among it: conversations, GRPO prompts), hand it to the
callbacks, and save every ``checkpoint.interval`` iterations, at the end, and when a SIGTERM
arrived or ``train.exit_interval`` says so (then exit 0, so a requeued job resumes where this one
stopped). The module decides when its stage is finished (`schedule.StageLength`: a stage is
counted in samples, never in steps). `launch` (process groups, seeds, the SIGTERM handler) and
`fit_stage` (resume, callbacks, the stop marker) are shared by stages 1-3 (`run`) and GRPO
(`grpo.run.run`).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from megatron.core import parallel_state
from megatron.energon import SavableDataLoader

from megatron_fleming.data.task_encoder import FlemingTaskEncoder
from megatron_fleming.data.tokenizer import ChatTokenizer
from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.parallel import initialize_parallel, shutdown_parallel
from megatron_fleming.train.callbacks import (
    METRICS_FILE,
    Callback,
    ConsoleLogger,
    MetricsFile,
    StepMetrics,
    TensorBoardLogger,
)
from megatron_fleming.train.checkpoint import Checkpointer, latest_iteration
from megatron_fleming.train.config import TrainConfig
from megatron_fleming.train.handoff import check_tokenizer
from megatron_fleming.train.loader import build_task_encoder, build_tokenizer, build_train_loader
from megatron_fleming.train.preemption import PreemptionSignal
from megatron_fleming.train.protocol import StageModule
from megatron_fleming.train.schedule import StageLength
from megatron_fleming.train.train_module import TrainModule

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Counters that survive resumes (saved with every checkpoint)."""

    iteration: int = 0
    consumed: int = 0  # samples used up: trained on + skipped (drives the schedule and the stop)
    samples: int = 0  # samples trained on
    tokens: int = 0
    skipped: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)  # the stage's own running tallies

    def to_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "samples": self.samples, "tokens": self.tokens,
                "skipped": dict(self.skipped), "counts": dict(self.counts)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        return cls(iteration=data["iteration"], consumed=data["consumed"], samples=data["samples"],
                   tokens=data["tokens"], skipped=Counter(data["skipped"]),
                   counts=Counter(data.get("counts", {})))


class Trainer:
    """`cfg` is a stage's config: ``train.exit_interval``, ``checkpoint.*`` and ``to_dict()``
    (saved with each checkpoint) are what the loop reads; the stage's length is the module's."""

    def __init__(self, cfg, module: StageModule, loader, checkpointer: Checkpointer,
                 callbacks: list[Callback], preemption: PreemptionSignal) -> None:
        self.cfg = cfg
        self.preemption = preemption
        self.module = module
        self.loader = loader
        self.checkpointer = checkpointer
        self.callbacks = callbacks

    def _save(self, progress: Progress, reason: str) -> None:
        self.module.before_save()
        seconds = self.checkpointer.save(progress.iteration, self.module, self.loader,
                                         progress.to_dict(), self.cfg.to_dict())
        for cb in self.callbacks:
            cb.on_checkpoint(progress.iteration, seconds, reason)

    def fit(self, progress: Progress) -> str:
        """Train from `progress` until the module's stage is finished; returns why it stopped:
        finished, signal or exit_interval."""
        length, interval = self.module.length, self.cfg.checkpoint.interval
        exit_interval = self.cfg.train.exit_interval
        for cb in self.callbacks:
            cb.on_train_start(progress.iteration, progress.consumed, length.total, length.unit)
        data = iter(self.loader)
        reason = "finished"
        while not self.module.finished(progress.consumed):
            start = time.perf_counter()
            # torch's DataLoader draws a seed from the global generator when its iterator
            # starts; keep data loading off the training RNG so a resume replays it exactly.
            with torch.random.fork_rng(devices=[]):
                batches = [next(data) for _ in range(self.module.batches_per_step)]
            data_wait = time.perf_counter() - start
            report = self.module.step(batches, progress.iteration + 1)
            elapsed = time.perf_counter() - start
            progress.iteration += 1
            progress.consumed += report.consumed
            progress.samples += report.samples
            progress.tokens += report.tokens
            progress.skipped.update(report.skipped)
            progress.counts.update(report.counts)
            last = self.module.finished(progress.consumed)
            values = {**report.metrics, "consumed": progress.consumed, "total": length.total,
                      "epoch": length.epoch(progress.consumed),
                      "tokens_per_s": report.tokens / elapsed,
                      "samples_per_s": report.samples / elapsed}
            if report.flops is not None:
                values["model_tflops"] = report.flops / elapsed / 1e12
            metrics = StepMetrics(iteration=progress.iteration, last=last, step_time=elapsed,
                                  data_wait=data_wait, values=values, skipped=dict(progress.skipped),
                                  counts=dict(progress.counts), console=self.module.console_metrics)
            for cb in self.callbacks:
                cb.on_step(metrics)
            signalled = self.preemption.requested()  # a collective: every rank, every step
            timed_exit = bool(exit_interval) and progress.iteration % exit_interval == 0
            if not last and (signalled or timed_exit):
                reason = "signal" if signalled else "exit_interval"
                self._save(progress, reason)
                break
            periodic = bool(interval) and progress.iteration % interval == 0
            if (last and self.cfg.checkpoint.save_at_end) or periodic:
                self._save(progress, "end" if last else "interval")
        for cb in self.callbacks:
            cb.on_train_end(progress.iteration, reason)
        return reason


def launch(par: ParallelConfig, seed: int, body: Callable[[PreemptionSignal], str]) -> str:
    """Process groups and megatron's parallel state, seeds, the SIGTERM handler around `body`,
    and the teardown however `body` ends."""
    initialize_parallel(par, seed=seed)  # torch + megatron's TP streams
    random.seed(seed)
    np.random.seed(seed)
    device = torch.device("cuda", torch.cuda.current_device()) if par.device == "cuda" \
        else torch.device("cpu")
    # SIGTERM is caught from here on, so one during start-up also ends in a checkpoint.
    with PreemptionSignal(device) as preemption:
        try:
            return body(preemption)
        finally:
            shutdown_parallel()


def fit_stage(cfg, module: StageModule, loader, checkpointer: Checkpointer,
              preemption: PreemptionSignal, *, stop_marker: str | Path | None,
              callbacks: tuple[Callback, ...] = ()) -> str:
    """Resume from ``checkpoint.dir`` if it holds a checkpoint, fit, and write `stop_marker` when
    the run stopped early. Rank 0 logs to the console, ``metrics.jsonl`` and TensorBoard."""
    rank0 = torch.distributed.get_rank() == 0
    root = Path(cfg.checkpoint.dir)
    resumed = checkpointer.resume(module, loader)
    progress = Progress.from_dict(resumed) if resumed else Progress()
    active: list[Callback] = []
    if rank0:
        active += [ConsoleLogger(cfg.train.log_interval), MetricsFile(root / METRICS_FILE)]
        if cfg.logging.tensorboard:
            active.append(TensorBoardLogger(root / "tensorboard"))
        active.extend(callbacks)
    reason = Trainer(cfg, module, loader, checkpointer, active, preemption).fit(progress)
    if reason != "finished" and stop_marker is not None and rank0:
        Path(stop_marker).parent.mkdir(parents=True, exist_ok=True)
        Path(stop_marker).write_text(f"{progress.iteration}\n")
    return reason


@dataclass
class Components:
    """What a run builds, in order: tokenizer, task encoder, this rank's loader, the model."""

    tokenizer: ChatTokenizer
    encoder: FlemingTaskEncoder
    loader: SavableDataLoader
    module: TrainModule


def build_components(cfg: TrainConfig, vlm: VLMConfig) -> Components:
    """After `initialize_parallel`: everything `Trainer` needs except checkpoints and callbacks."""
    tokenizer = build_tokenizer(cfg, vlm)
    encoder = build_task_encoder(cfg, vlm, tokenizer)
    dp_size = parallel_state.get_data_parallel_world_size()
    loader = build_train_loader(cfg, encoder, dp_rank=parallel_state.get_data_parallel_rank(),
                                dp_size=dp_size, prefetch=cfg.microbatches(dp_size))
    module = TrainModule(cfg, vlm, StageLength.of(cfg), pad_id=encoder.pad_id)
    return Components(tokenizer, encoder, loader, module)


def run(cfg: TrainConfig, *, stop_marker: str | Path | None = None,
        callbacks: tuple[Callback, ...] = ()) -> str:
    """Train one stage as configured, resuming from ``checkpoint.dir`` when it holds a
    checkpoint. Returns why training stopped (`Trainer.fit`); when it stopped early, `stop_marker`
    (if given) is written after the checkpoint so a launcher knows to requeue. `callbacks` join
    the console, metrics-file and TensorBoard loggers on rank 0."""
    vlm = cfg.vlm_config()
    return launch(cfg.parallel, cfg.train.seed,
                  lambda preemption: _run(cfg, vlm, preemption, stop_marker, callbacks))


def _run(cfg: TrainConfig, vlm: VLMConfig, preemption: PreemptionSignal,
         stop_marker: str | Path | None, callbacks: tuple[Callback, ...]) -> str:
    """Build, resume or initialise, fit; after `initialize_parallel`."""
    rank0 = torch.distributed.get_rank() == 0
    if rank0:
        cfg.save(Path(cfg.checkpoint.dir) / "config.yaml")
    parts = build_components(cfg, vlm)
    if rank0:
        log.info("stage %d, trainable parameters on rank 0: %s", cfg.train.stage,
                 parts.module.trainable)
    checkpointer = Checkpointer(cfg.checkpoint)
    if latest_iteration(checkpointer.root) is None and cfg.checkpoint.init_from:
        check_tokenizer(parts.tokenizer, cfg.checkpoint.init_from)
        folder = checkpointer.init_model(parts.module, cfg.checkpoint.init_from)
        if rank0:
            log.info("initialised the model from %s", folder)
    return fit_stage(cfg, parts.module, parts.loader, checkpointer, preemption,
                     stop_marker=stop_marker, callbacks=callbacks)
