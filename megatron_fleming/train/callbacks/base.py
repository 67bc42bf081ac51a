"""What a step reports, and the hooks a callback may implement."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepMetrics:
    """One step over the whole global batch (all data-parallel ranks), as the stage reported it.

    `values` holds the stage's metrics by name (stages 1-3: loss, lr, grad_norm, loss_tokens,
    tokens_per_s, model_tflops, samples_per_s; stage 4: reward, accuracy, kl, ...), and for every
    stage ``consumed`` (samples the stage has used up so far: conversations, GRPO prompts),
    ``total`` (samples the stage consumes) and ``epoch`` (consumed / samples in one pass); they
    read as attributes too (``m.loss``). None is a value the step does not have (no grad norm
    without an update).
    """

    iteration: int
    last: bool  # the stage's final step (it consumed the stage's length)
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

    def on_train_start(self, iteration: int, consumed: int, total: int, unit: str) -> None:
        """`consumed` of the stage's `total` samples (`unit`: conversations, prompts) are done
        (0 unless resuming)."""

    def on_step(self, metrics: StepMetrics) -> None:
        pass

    def on_checkpoint(self, iteration: int, seconds: float, reason: str) -> None:
        pass

    def on_train_end(self, iteration: int, reason: str) -> None:
        pass
