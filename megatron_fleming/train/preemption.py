"""SIGTERM (SLURM preemption, time limit, ``scancel --signal=TERM``) -> stop at a step boundary.

The handler only records the signal; the trainer asks `requested()` after every step, which
agrees across all ranks (any rank signalled -> all stop), so every rank reaches the same
checkpoint together. The run then saves, exits 0, and a requeued job resumes from that checkpoint.
Forked data-loader workers inherit the handler, so the signal does not kill them mid-batch.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import torch

log = logging.getLogger(__name__)


class PreemptionSignal:
    """Context manager: catches `signals` while training, restores the old handlers after."""

    def __init__(self, device: torch.device, signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
        self.device = device
        self.signals = signals
        self.received: int | None = None
        self._announced = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum  # nothing else here: the handler interrupts arbitrary code

    def __enter__(self) -> PreemptionSignal:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def requested(self) -> bool:
        """Whether any rank got a signal; a collective, so every rank calls it at each step."""
        flag = torch.tensor([0 if self.received is None else 1], dtype=torch.int32,
                            device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        stop = bool(flag.item())
        if stop and not self._announced:
            self._announced = True
            got = signal.Signals(self.received).name if self.received else "a signal on another rank"
            log.warning("received %s: saving a checkpoint and stopping", got)
        return stop
