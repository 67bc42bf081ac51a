"""One line per logged step on the console (through `logging`, rank 0 only)."""

from __future__ import annotations

import logging

from megatron_fleming.train.callbacks.base import Callback, StepMetrics

log = logging.getLogger("megatron_fleming.train")


class ConsoleLogger(Callback):
    def __init__(self, log_interval: int = 1) -> None:
        self.log_interval = log_interval
        self.unit = "samples"

    def on_train_start(self, iteration: int, consumed: int, total: int, unit: str) -> None:
        self.unit = unit
        if iteration:
            log.info("resumed at iteration %d, %d of %d %s consumed", iteration, consumed, total,
                     unit)
        else:
            log.info("training from iteration 0 for %d %s", total, unit)

    def on_step(self, m: StepMetrics) -> None:
        if m.iteration % self.log_interval and not m.last:
            return
        shown = []
        for name, spec in m.console:
            value = m.values.get(name)
            shown.append(f"{name} {'n/a' if value is None else format(value, spec)}")
        log.info("step %d | %s %d/%d | %s | step %.3fs | data wait %.1f%% | skipped %d",
                 m.iteration, self.unit, m.consumed, m.total, " | ".join(shown), m.step_time,
                 100 * m.data_wait_fraction, sum(m.skipped.values()))

    def on_checkpoint(self, iteration: int, seconds: float, reason: str) -> None:
        log.info("saved checkpoint at iteration %d (%s) in %.2fs", iteration, reason, seconds)

    def on_train_end(self, iteration: int, reason: str) -> None:
        log.info("training stopped at iteration %d: %s", iteration, reason)
