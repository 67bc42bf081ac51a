"""The converter interface: a pure function of (loaded record, context) -> samples.

A converter never reads files or global state: everything it needs is in the ``LoadedRecord``
and the ``ConvertContext``, and all randomness comes from seeds derived from the recipe seed and
the record id, so the same record gives the same samples in any process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from datakit.record import LoadedRecord
from datakit.sample import Sample


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertContext:
    seed: int
    tasks: tuple[str, ...]
    langs: tuple[str, ...] = ("en", "zh")
    options: dict[str, Any] = field(default_factory=dict)


def check_context(name: str, ctx: ConvertContext, tasks, options=()) -> None:
    """The one check every converter makes of its context: known tasks and known options only
    (recipe validation catches both earlier; this guards direct calls)."""
    unknown_options = set(ctx.options) - set(options)
    if unknown_options and not options:
        raise ValueError(f"{name}: takes no options, got {sorted(unknown_options)}")
    if unknown_options:
        raise ValueError(f"{name}: unknown option(s) {sorted(unknown_options)}; known: {sorted(options)}")
    unknown_tasks = [t for t in ctx.tasks if t not in tasks]
    if unknown_tasks:
        raise ValueError(f"{name}: unknown task(s) {unknown_tasks}; known: {list(tasks)}")


@dataclass(frozen=True, slots=True)
class ConverterSpec:
    name: str
    tasks: tuple[str, ...]
    fn: Callable[[LoadedRecord, ConvertContext], list[Sample]]
    # answers read from masks: a record read without them (``masks: optional``) skips its tasks
    needs_masks: bool = False
