"""Progress of the long build phases (discover, convert, dedup, merge, prepare).

On a terminal each phase draws a tqdm bar on stderr; elsewhere (CI, Slurm logs, a pipe) it
logs one line every ``interval_s`` seconds and one when it ends, through the ``datakit.progress``
logger, so a log file shows where a long build is without a bar's carriage returns. Library
callers get ``Progress.quiet()`` unless they pass one; the CLI passes ``Progress.for_stream``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, TextIO

log = logging.getLogger("datakit.progress")

LOG_INTERVAL_S = 5.0


class Phase:
    """One phase's counter; ``update(n)`` as work finishes, ``close()`` at the end."""

    def __init__(self, name: str, total: int, unit: str, mode: str, interval_s: float,
                 clock: Callable[[], float], stream: TextIO) -> None:
        self.name, self.total, self.unit, self.mode = name, total, unit, mode
        self.done = 0
        self._interval, self._clock = interval_s, clock
        self._start = self._last = clock()
        self._closed = False
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            # disable=False: the choice of a bar was made from the stream (a terminal), not by tqdm
            self._bar = tqdm(total=total, desc=name, unit=unit, file=stream, dynamic_ncols=True, leave=True,
                             disable=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "log" and self._clock() - self._last >= self._interval:
            self._last = self._clock()
            log.info("%s: %s", self.name, self._status())

    def _status(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        share = f" ({100.0 * self.done / self.total:.0f}%)" if self.total else ""
        return f"{self.done}/{self.total} {self.unit}{share}, {self.done / elapsed:.1f} {self.unit}/s"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log":
            log.info("%s done: %s in %.1fs", self.name, self._status(), self._clock() - self._start)


class Progress:
    """Makes ``Phase``s: ``progress("convert", total=n, unit="rec")``."""

    def __init__(self, mode: str = "quiet", *, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, stream: TextIO | None = None) -> None:
        if mode not in ("bar", "log", "quiet"):
            raise ValueError(f"progress mode must be bar, log or quiet, got {mode!r}")
        self.mode, self.interval_s, self.clock = mode, interval_s, clock
        self.stream = stream or sys.stderr

    @classmethod
    def quiet(cls) -> "Progress":
        return cls("quiet")

    @classmethod
    def for_stream(cls, stream: TextIO | None = None) -> "Progress":
        """A bar when ``stream`` (stderr by default) is a terminal, log lines otherwise."""
        stream = stream or sys.stderr
        return cls("bar" if stream.isatty() else "log", stream=stream)

    def __call__(self, name: str, total: int, unit: str = "it") -> Phase:
        return Phase(name, total, unit, self.mode, self.interval_s, self.clock, self.stream)
