"""Scalars of every step to TensorBoard (`torch.utils.tensorboard`), rank 0 only."""

from __future__ import annotations

from pathlib import Path

from megatron_fleming.train.callbacks.base import Callback, StepMetrics


class TensorBoardLogger(Callback):
    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported only when enabled

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_step(self, m: StepMetrics) -> None:
        step = m.iteration
        scalars = {"train/loss": m.loss, "train/lr": m.lr, "train/tokens_per_s": m.tokens_per_s,
                   "train/model_tflops": m.model_tflops,
                   "train/samples_per_s": m.samples_per_s, "train/step_time_s": m.step_time,
                   "train/data_wait_fraction": m.data_wait_fraction,
                   "train/loss_tokens": m.loss_tokens,
                   "train/consumed_conversations": m.consumed, "train/epoch": m.epoch}
        if m.grad_norm is not None:
            scalars["train/grad_norm"] = m.grad_norm
        for reason, count in m.skipped.items():
            scalars[f"data/skipped_{reason}"] = count
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)

    def on_checkpoint(self, iteration: int, seconds: float, reason: str) -> None:
        self.writer.add_scalar("checkpoint/save_time_s", seconds, iteration)
        self.writer.flush()

    def on_train_end(self, iteration: int, reason: str) -> None:
        self.writer.close()
