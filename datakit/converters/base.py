"""The converter interface: a pure function of (loaded record, context) -> samples.

A converter never reads files or global state: everything it needs is in the ``LoadedRecord``
and the ``ConvertContext``, and all randomness comes from seeds derived from the recipe seed and
the record id, so the same record gives the same samples in any process.

LLM steps are a capability, not a special converter (datatrove's ``InferenceRunner`` idea): a
converter that needs a model's answers also registers ``requests(loaded, ctx) -> {name:
ChatRequest}``. The build asks for them (through the cache, concurrently over a slice, or not at
all offline), puts the replies in ``ctx.answers`` by name, and asks again until the converter
names no new request (a translation needs the English answer first); then it calls the
converter, which returns its samples and a ``Missing`` for each planned sample it could not make
(no answer: ``skipped_llm``; an answer that failed validation: ``rejected``), each a manifest row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from datakit.llm.request import ChatRequest, LLMReply
from datakit.record import LoadedRecord
from datakit.sample import Sample

SKIPPED_LLM = "skipped_llm"
REJECTED = "rejected"
SKIPPED = "skipped"  # a mask task of a record read without masks (the build says so, not the converter)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertContext:
    seed: int
    tasks: tuple[str, ...]
    langs: tuple[str, ...] = ("en", "zh")
    options: dict[str, Any] = field(default_factory=dict)
    # The LLM's replies to this converter's ``requests`` for this record, by request name.
    answers: Mapping[str, LLMReply] = field(default_factory=dict)
    # The samples this record's earlier conversion steps made (CoT reasons about the template
    # multiple choice); empty for the first step.
    earlier: tuple[Sample, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Missing:
    """A planned sample a converter could not make: one manifest row of kind ``sample``."""

    task: str
    lang: str
    status: str  # SKIPPED_LLM | REJECTED (SKIPPED: set by the build)
    reason: str
    detail: str = ""
    slot: str = ""  # the key task when one record plans several samples of a task (vqa_open_2)
    llm_cache_key: str | None = None


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
    fn: Callable[[LoadedRecord, ConvertContext], list[Sample | Missing]]
    # The LLM requests a record needs, given the answers so far (None: the converter asks none).
    requests: Callable[[LoadedRecord, ConvertContext], dict[str, ChatRequest]] | None = None
    # answers read from masks: a record read without them (``masks: optional``) skips its tasks
    needs_masks: bool = False
    # reads ``ctx.earlier``: whether it asks an LLM is known only after the earlier steps ran,
    # so the build lets every record of such a step wait for the slice's LLM round
    uses_earlier: bool = False
