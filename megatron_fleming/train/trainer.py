"""The training loop and the entry point `run(cfg)`: parse, build, fit.

`Trainer` owns only the loop and when to checkpoint: draw this rank's micro-batches of the global
batch, count the conversations the global batch consumed (`schedule`), let the `TrainModule` take
a step, reduce what the step reports to global metrics, hand them to the callbacks, and save every
``checkpoint.interval`` iterations, at the end, and when a SIGTERM arrived or
``train.exit_interval`` says so (then exit 0, so a requeued job resumes where this one stopped).
The stage ends once it has consumed its conversations.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from megatron.core import parallel_state
from megatron.energon import SavableDataLoader

from megatron_fleming.data.batch import VLMBatch
from megatron_fleming.data.skips import REASONS
from megatron_fleming.data.task_encoder import FlemingTaskEncoder
from megatron_fleming.data.tokenizer import ChatTokenizer
from megatron_fleming.model.config import VLMConfig
from megatron_fleming.model.parallel import initialize_parallel, shutdown_parallel
from megatron_fleming.train.callbacks import Callback, ConsoleLogger, StepMetrics, TensorBoardLogger
from megatron_fleming.train.checkpoint import Checkpointer
from megatron_fleming.train.config import TrainConfig
from megatron_fleming.train.loader import build_task_encoder, build_tokenizer, build_train_loader
from megatron_fleming.train.plan import conversation_flops, sequence_lengths
from megatron_fleming.train.preemption import PreemptionSignal
from megatron_fleming.train.schedule import StageLength, global_consumed
from megatron_fleming.train.train_module import StepResult, TrainModule

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Counters that survive resumes (saved with every checkpoint)."""

    iteration: int = 0
    consumed: int = 0  # conversations used up: packed + skipped (drives the schedule)
    samples: int = 0  # conversations trained on
    tokens: int = 0
    skipped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "samples": self.samples, "tokens": self.tokens,
                "skipped": dict(self.skipped)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        return cls(iteration=data["iteration"], consumed=data["consumed"], samples=data["samples"],
                   tokens=data["tokens"], skipped=Counter(data["skipped"]))


class Trainer:
    def __init__(self, cfg: TrainConfig, module: TrainModule, loader, checkpointer: Checkpointer,
                 callbacks: list[Callback], preemption: PreemptionSignal, *, pad_id: int) -> None:
        self.cfg = cfg
        self.preemption = preemption
        self.module = module
        self.loader = loader
        self.checkpointer = checkpointer
        self.callbacks = callbacks
        self.pad_id = pad_id
        dp = parallel_state.get_data_parallel_world_size()
        self.microbatches = cfg.microbatches(dp)
        # One rank per data-parallel replica reports data counters, one reports the loss.
        first_tp = parallel_state.get_tensor_model_parallel_rank() == 0
        self.reports_data = first_tp and parallel_state.is_pipeline_first_stage(ignore_virtual=True)
        self.reports_loss = first_tp and parallel_state.is_pipeline_last_stage(ignore_virtual=True)

    def _tokens(self, batch: VLMBatch) -> int:
        if batch.cu_seqlens is not None:
            return int(batch.cu_seqlens[-1])
        return int((batch.input_ids != self.pad_id).sum())

    def _flops(self, batch: VLMBatch) -> float:
        lengths = sequence_lengths(batch.cu_seqlens, batch.input_ids, self.pad_id)
        return conversation_flops(self.module.vlm, lengths, int(batch.pixel_values.shape[0]))

    def _global(self, batches: list[VLMBatch], step: StepResult
                ) -> tuple[float, int, int, int, float, Counter]:
        """(loss, loss tokens, tokens, samples, model FLOPs, skipped by reason) summed over the
        global batch."""
        values = torch.zeros(5 + len(REASONS), dtype=torch.float64)
        if self.reports_loss:
            values[0], values[1] = step.loss_sum, step.loss_tokens
        if self.reports_data:
            values[2] = sum(self._tokens(b) for b in batches)
            values[3] = sum(len(b.__key__) for b in batches)
            values[4] = sum(self._flops(b) for b in batches)
            for b in batches:
                for reason, count in b.skipped.items():
                    values[5 + REASONS.index(reason)] += count
        values = values.to(self.module.device)
        torch.distributed.all_reduce(values)
        values = values.cpu().tolist()
        skipped = Counter({r: int(n) for r, n in zip(REASONS, values[5:]) if n})
        loss = values[0] / max(values[1], 1.0)
        return loss, int(values[1]), int(values[2]), int(values[3]), values[4], skipped

    def _save(self, progress: Progress, reason: str) -> None:
        seconds = self.checkpointer.save(progress.iteration, self.module, self.loader,
                                         progress.to_dict(), self.cfg.to_dict())
        for cb in self.callbacks:
            cb.on_checkpoint(progress.iteration, seconds, reason)

    def fit(self, progress: Progress) -> str:
        """Train from `progress` until the stage's conversations are consumed; returns why it
        stopped: finished, signal or exit_interval."""
        length, interval = self.module.length, self.cfg.checkpoint.interval
        exit_interval = self.cfg.train.exit_interval
        for cb in self.callbacks:
            cb.on_train_start(progress.iteration, progress.consumed, length.total)
        data = iter(self.loader)
        reason = "finished"
        while progress.consumed < length.total:
            start = time.perf_counter()
            # torch's DataLoader draws a seed from the global generator when its iterator
            # starts; keep data loading off the training RNG so a resume replays it exactly.
            with torch.random.fork_rng(devices=[]):
                batches = [next(data) for _ in range(self.microbatches)]
            data_wait = time.perf_counter() - start
            consumed = global_consumed(batches, self.module.device)
            step = self.module.train_step(batches, consumed=consumed)
            loss, loss_tokens, tokens, samples, flops, skipped = self._global(batches, step)
            elapsed = time.perf_counter() - start
            progress.iteration += 1
            progress.consumed += consumed
            progress.samples += samples
            progress.tokens += tokens
            progress.skipped.update(skipped)
            metrics = StepMetrics(
                iteration=progress.iteration, consumed=progress.consumed,
                total=length.total, epoch=length.epoch(progress.consumed),
                loss=loss, lr=step.lr, grad_norm=step.grad_norm,
                loss_tokens=loss_tokens, tokens_per_s=tokens / elapsed,
                model_tflops=flops / elapsed / 1e12,
                samples_per_s=samples / elapsed, step_time=elapsed, data_wait=data_wait,
                skipped=dict(progress.skipped))
            for cb in self.callbacks:
                cb.on_step(metrics)
            last = progress.consumed >= length.total
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
    return Components(tokenizer, encoder, loader, TrainModule(cfg, vlm, StageLength.of(cfg)))


def run(cfg: TrainConfig, *, stop_marker: str | Path | None = None,
        callbacks: tuple[Callback, ...] = ()) -> str:
    """Train one stage as configured, resuming from ``checkpoint.dir`` when it holds a
    checkpoint. Returns why training stopped (`Trainer.fit`); when it stopped early, `stop_marker`
    (if given) is written after the checkpoint so a launcher knows to requeue. `callbacks` join
    the console and TensorBoard loggers on rank 0."""
    vlm = cfg.vlm_config()
    initialize_parallel(cfg.parallel, seed=cfg.train.seed)  # torch + megatron's TP streams
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    device = torch.device("cuda", torch.cuda.current_device()) if cfg.parallel.device == "cuda" \
        else torch.device("cpu")
    # SIGTERM is caught from here on, so one during start-up also ends in a checkpoint.
    with PreemptionSignal(device) as preemption:
        try:
            return _run(cfg, vlm, preemption, stop_marker, callbacks)
        finally:
            shutdown_parallel()


def _run(cfg: TrainConfig, vlm: VLMConfig, preemption: PreemptionSignal,
         stop_marker: str | Path | None, callbacks: tuple[Callback, ...]) -> str:
    """Build, resume or initialise, fit; after `initialize_parallel`."""
    rank0 = torch.distributed.get_rank() == 0
    root = Path(cfg.checkpoint.dir)
    if rank0:
        cfg.save(root / "config.yaml")
    parts = build_components(cfg, vlm)
    if rank0:
        log.info("stage %d, trainable parameters on rank 0: %s", cfg.train.stage,
                 parts.module.trainable)
    checkpointer = Checkpointer(cfg.checkpoint)
    resumed = checkpointer.resume(parts.module, parts.loader)
    progress = Progress.from_dict(resumed) if resumed else Progress()
    if resumed is None and cfg.checkpoint.init_from:
        folder = checkpointer.init_model(parts.module, cfg.checkpoint.init_from)
        if rank0:
            log.info("initialised the model from %s", folder)
    active: list[Callback] = []
    if rank0:
        active.append(ConsoleLogger(cfg.train.log_interval))
        if cfg.logging.tensorboard:
            active.append(TensorBoardLogger(root / "tensorboard"))
        active.extend(callbacks)
    trainer = Trainer(cfg, parts.module, parts.loader, checkpointer, active, preemption,
                      pad_id=parts.encoder.pad_id)
    reason = trainer.fit(progress)
    if reason != "finished" and stop_marker is not None and rank0:
        Path(stop_marker).parent.mkdir(parents=True, exist_ok=True)
        Path(stop_marker).write_text(f"{progress.iteration}\n")
    return reason
