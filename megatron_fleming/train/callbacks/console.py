"""One line per logged step on the console (through `logging`, rank 0 only)."""

from __future__ import annotations

import logging

from megatron_fleming.train.callbacks.base import Callback, StepMetrics

log = logging.getLogger("megatron_fleming.train")


class ConsoleLogger(Callback):
    def __init__(self, log_interval: int = 1) -> None:
        self.log_interval = log_interval

    def on_train_start(self, iteration: int, consumed: int, total: int) -> None:
        if iteration:
            log.info("resumed at iteration %d, %d of %d conversations consumed", iteration,
                     consumed, total)
        else:
            log.info("training from iteration 0 for %d conversations", total)

    def on_step(self, m: StepMetrics) -> None:
        if m.iteration % self.log_interval and m.consumed < m.total:
            return
        grad = "n/a" if m.grad_norm is None else f"{m.grad_norm:.4f}"
        skipped = sum(m.skipped.values())
        log.info("step %d | conversations %d/%d | epoch %.3f | loss %.6f | lr %.3e | grad_norm %s"
                 " | tokens/s %.1f | model TFLOP/s %.3g | samples/s %.2f | step %.3fs"
                 " | data wait %.1f%% | skipped %d",
                 m.iteration, m.consumed, m.total, m.epoch, m.loss, m.lr, grad, m.tokens_per_s,
                 m.model_tflops, m.samples_per_s, m.step_time, 100 * m.data_wait_fraction, skipped)

    def on_checkpoint(self, iteration: int, seconds: float, reason: str) -> None:
        log.info("saved checkpoint at iteration %d (%s) in %.2fs", iteration, reason, seconds)

    def on_train_end(self, iteration: int, reason: str) -> None:
        log.info("training stopped at iteration %d: %s", iteration, reason)
