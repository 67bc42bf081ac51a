"""Counting the samples the task encoder skips, by reason, per worker.

Expected bad data (corrupt image bytes, a media part the JSON lists but the tar lacks, a sample
longer than the sequence budget) is not a reason to stop a run: the sample is skipped through
energon's `SkipSample`, logged with its dataset, shard and key, and counted here. Each batch
carries the counts of its worker since the previous batch (`drain`), so the trainer can sum them
over workers and steps; `totals` keeps the running sum of this process.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from megatron.energon import SkipSample
from megatron.energon.errors import FatalSampleError
from megatron.energon.source_info import get_source_info

log = logging.getLogger(__name__)

REASONS = (
    "corrupt_image",  # bytes PIL/DALI cannot identify or decode
    "missing_part",  # a media part listed in the JSON is absent, or no JSON part
    "bad_json",  # JSON part unreadable or not the fleming-vqa schema
    "unsupported_media",  # a medium this encoder does not decode (video)
    "bad_conversation",  # roles or <image> count do not fit the media
    "too_long",  # more tokens than max_seq_len
    "unverifiable",  # GRPO prompts: no checkable answer (captions, reports, several turns)
)


def describe(sample: Any) -> str:
    """'dataset/shard key' of a sample (cooked or crude), for log lines."""
    key = sample.get("__key__") if isinstance(sample, dict) else getattr(sample, "__key__", None)
    sources = get_source_info(sample)
    where = f"{sources[0].dataset_path}/{sources[0].shard_name}" if sources else "unknown shard"
    return f"{where} key {key}"


class SkipCounter:
    """Per-reason counts of skipped samples; `skip` logs, counts and returns the exception.

    The first `log_first` skips of each reason are logged as warnings (later ones at debug level,
    so a common reason cannot flood the log). More than `max_consecutive` skips without a batch
    in between means the data or the configuration is broken, not a few samples: that stops the
    run with energon's `FatalSampleError` instead of skipping forever.
    """

    def __init__(self, *, max_consecutive: int = 1000, log_first: int = 10) -> None:
        self.totals: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._consecutive = 0
        self.max_consecutive = max_consecutive
        self.log_first = log_first

    def skip(self, reason: str, sample: Any, detail: str) -> SkipSample:
        if reason not in REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; add it to REASONS")
        self.totals[reason] += 1
        self._pending[reason] += 1
        self._consecutive += 1
        level = logging.WARNING if self.totals[reason] <= self.log_first else logging.DEBUG
        log.log(level, "skipping %s: %s: %s", describe(sample), reason, detail)
        if self._consecutive > self.max_consecutive:
            raise FatalSampleError(f"{self._consecutive} samples skipped in a row, none batched "
                                   f"(totals {dict(self.totals)}): check the shards and the "
                                   "task encoder config (max_seq_len, tiling)")
        return SkipSample(f"{reason}: {detail}")

    def drain(self) -> dict[str, int]:
        """Counts since the previous drain (what the next batch reports); a batch was made."""
        out = dict(self._pending)
        self._pending.clear()
        self._consecutive = 0
        return out
