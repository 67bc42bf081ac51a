"""What a converter does with the LLM's replies (``ConvertContext.answers``): check them, and
say why a planned sample is missing when there is nothing usable.

A reply without an answer (offline with a cold cache, budget spent, endpoint failing) makes
the sample ``skipped_llm``: a later build with an endpoint can fill it. An answer that fails
validation (``llm.validate``) makes it ``rejected``: final, since the same answer is cached.
Chinese texts come from the ``translate_zh`` task, one request per record and step holding all
the English texts it needs, checked like any answer (one Chinese string per English one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from datakit.converters.base import REJECTED, SKIPPED_LLM, ConvertContext, Missing
from datakit.llm.request import ChatRequest
from datakit.llm.tasks import translation_request
from datakit.llm.validate import validate

SOURCE_LANG = "en"


@dataclass(frozen=True, slots=True)
class Checked:
    """A validated answer (``parsed``), or the status and reason there is none."""

    parsed: Any = None
    status: str = ""
    reason: str = ""
    detail: str = ""
    cache_key: str | None = None

    @property
    def ok(self) -> bool:
        return not self.status

    def missing(self, task: str, lang: str, slot: str = "") -> Missing:
        return Missing(task=task, lang=lang, status=self.status, reason=self.reason, detail=self.detail,
                       slot=slot, llm_cache_key=self.cache_key)


def checked(ctx: ConvertContext, name: str, task: str, **context: Any) -> Checked:
    """The reply to request ``name`` checked as an answer of LLM task ``task``."""
    reply = ctx.answers.get(name)
    if reply is None:
        return Checked(status=SKIPPED_LLM, reason="not_asked", detail=f"no reply to request {name!r}")
    if not reply.ok:
        return Checked(status=SKIPPED_LLM, reason=reply.reason, detail=reply.detail, cache_key=reply.cache_key or None)
    verdict = validate(task, reply.parsed, **context)
    if not verdict.ok:
        return Checked(status=REJECTED, reason=verdict.reason, detail=verdict.detail, cache_key=reply.cache_key)
    return Checked(parsed=reply.parsed, cache_key=reply.cache_key)


def foreign_langs(langs: Sequence[str]) -> list[str]:
    """The languages of ``langs`` that need a translation of English source text."""
    return [lang for lang in langs if lang != SOURCE_LANG]


def translation_requests(name: str, texts: Sequence[str]) -> dict[str, ChatRequest]:
    """One request translating ``texts`` into Chinese (none when there is nothing to translate)."""
    return {name: translation_request(list(texts))} if texts else {}


def translated(ctx: ConvertContext, name: str, texts: Sequence[str]) -> Checked:
    """The Chinese texts of request ``name``, one per English text, as ``parsed`` (a list)."""
    out = checked(ctx, name, "translate_zh", sources=list(texts))
    return Checked(parsed=list(out.parsed["translations"]), cache_key=out.cache_key) if out.ok else out
