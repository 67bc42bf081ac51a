"""What a step reports, and the hooks a callback may implement."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepMetrics:
    """One optimizer step, over the whole global batch (all data-parallel ranks)."""

    iteration: int
    consumed: int  # conversations the stage has consumed so far (packed + skipped)
    total: int  # conversations the stage consumes
    epoch: float  # consumed / conversations in one pass over the data
    loss: float  # mean per-token loss of the global batch
    lr: float
    grad_norm: float | None  # before clipping
    loss_tokens: int
    tokens_per_s: float  # sequence tokens (packing padding excluded) per second
    model_tflops: float  # model FLOPs (3x forward, `plan.conversation_flops`) per second, all GPUs
    samples_per_s: float  # conversations per second
    step_time: float  # seconds, data wait included
    data_wait: float  # seconds this step waited for the loader (rank 0)
    skipped: dict[str, int] = field(default_factory=dict)  # bad samples so far, by reason

    @property
    def data_wait_fraction(self) -> float:
        return self.data_wait / self.step_time if self.step_time > 0 else 0.0


class Callback:
    """Hooks called by the trainer on rank 0; each defaults to doing nothing."""

    def on_train_start(self, iteration: int, consumed: int, total: int) -> None:
        """`consumed` of the stage's `total` conversations are done (0 unless resuming)."""

    def on_step(self, metrics: StepMetrics) -> None:
        pass

    def on_checkpoint(self, iteration: int, seconds: float, reason: str) -> None:
        pass

    def on_train_end(self, iteration: int, reason: str) -> None:
        pass
