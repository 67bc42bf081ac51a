"""What a step reports, and the hooks a callback may implement."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepMetrics:
    """One step over the whole global batch (all data-parallel ranks), as the stage reported it.

    `values` holds the stage's metrics by name (stages 1-3: loss, lr, grad_norm, loss_tokens,
    tokens_per_s, samples_per_s; stage 4: reward, accuracy, kl, ...); they read as attributes too
    (``m.loss``). None is a value the step does not have (no grad norm without an update).
    """

    iteration: int
    total: int  # iterations of the run
    step_time: float  # seconds, data wait included
    data_wait: float  # seconds this step waited for the loader (rank 0)
    values: dict[str, float | None] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # bad samples so far, by reason
    counts: dict[str, int] = field(default_factory=dict)  # the stage's other running tallies
    console: tuple[tuple[str, str], ...] = ()  # (value, format) the console line shows

    def __getattr__(self, name: str):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__} has no {name!r} (values: {sorted(values)})")

    @property
    def data_wait_fraction(self) -> float:
        return self.data_wait / self.step_time if self.step_time > 0 else 0.0


class Callback:
    """Hooks called by the trainer on rank 0; each defaults to doing nothing."""

    def on_train_start(self, iteration: int, total: int) -> None:
        pass

    def on_step(self, metrics: StepMetrics) -> None:
        pass

    def on_checkpoint(self, iteration: int, seconds: float, reason: str) -> None:
        pass

    def on_train_end(self, iteration: int, reason: str) -> None:
        pass
