"""Captions and clinical notes -> description QA: a question drawn from a pool, the text as answer.

Tasks and the text each answers with (``facts["texts"]`` of the record, set by the reader):

``caption_brief``     "Briefly describe ..."   the ``caption``, when it has at most ``brief_max_words``
``caption_detailed``  "Describe in detail ..." the ``caption``, when it is longer than that
``findings``          "What are the findings"  the ``findings`` text (MedPix case findings)
``report``            "Write the note ..."     the ``note`` (FairVLMed clinical note)

The two caption tasks split captions by length, so a short caption never answers a request for
detail; a recipe lists both to use every caption once. Option ``texts`` maps a task to another
text (``{report: note_summary}`` answers with FairVLMed's GPT-4 summary). A task whose text the
record lacks is skipped; a text that is present but fails cleaning or the quality filters
(``caption_filters``) rejects the whole record with the filter's reason code, naming the record's
file and where the text came from (``facts["text_origin"]``), so the manifest counts every drop.

Languages. The sources' captions are English; a Chinese sample's answer is the caption translated
by the LLM (this converter's ``requests``: one ``translate_zh`` request per record holding its
texts), under a question from the Chinese pool. Offline, or when the translation fails its
checks, the Chinese samples are ``Missing`` (``skipped_llm`` / ``rejected``), counted in the
manifest. Option ``langs`` (default ``[en]``) names the languages to emit; each must be one the
recipe builds.

Other options: the ``CaptionPolicy`` bounds (``min_words``, ``max_words``, ``min_letter_fraction``,
``boilerplate``). Question phrasings come from ``templates/captions.yaml`` (at least
``MIN_QUESTIONS`` per task and language), drawn with ``rng_for(seed, record uid, task, lang)``.
"""

from __future__ import annotations

from dataclasses import fields
from functools import lru_cache
from typing import Any

from datakit.converters.base import ConvertContext, Missing, check_context
from datakit.converters.caption_filters import CaptionPolicy, check_caption
from datakit.converters.templates import RenderedQA, TemplateError, template_bank, to_sample
from datakit.errors import Rejected
from datakit.llm.replies import foreign_langs, translated, translation_requests
from datakit.llm.request import ChatRequest
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "captions"
TASKS = ("caption_brief", "caption_detailed", "findings", "report")
QUESTION_TYPES = {"caption_brief": "caption", "caption_detailed": "caption",
                  "findings": "report", "report": "report"}
DEFAULT_TEXTS = {"caption_brief": "caption", "caption_detailed": "caption",
                 "findings": "findings", "report": "note"}
SOURCE_LANG = "en"
MIN_QUESTIONS = 10
_POLICY_OPTIONS = frozenset(f.name for f in fields(CaptionPolicy))
_OPTIONS = _POLICY_OPTIONS | {"langs", "texts", "brief_max_words"}


@lru_cache(maxsize=1)
def _checked_bank():
    """The captions template bank, with the stricter pool size this converter promises."""
    bank = template_bank(NAME)
    for task in TASKS:
        for lang in ("en", "zh"):
            n = len(bank.pool(task, "question", lang))
            if n < MIN_QUESTIONS:
                raise TemplateError(f"templates/captions.yaml: {task}.question.{lang} has {n} "
                                    f"phrasings, need at least {MIN_QUESTIONS}")
    return bank


def _settings(ctx: ConvertContext) -> tuple[CaptionPolicy, tuple[str, ...], dict[str, str], int]:
    check_context("captions", ctx, QUESTION_TYPES, _OPTIONS)
    opts = dict(ctx.options)
    langs = tuple(opts.pop("langs", [SOURCE_LANG]))
    missing = [lang for lang in langs if lang not in ctx.langs]
    if not langs or missing:
        raise ValueError(f"captions: options.langs {list(langs)} must be a non-empty subset of the "
                         f"recipe's langs {list(ctx.langs)}")
    override = opts.pop("texts", {})
    if not isinstance(override, dict) or not set(override) <= set(TASKS):
        raise ValueError(f"captions: options.texts must map tasks {list(TASKS)} to text names, got {override!r}")
    texts = {**DEFAULT_TEXTS, **override}
    brief = int(opts.pop("brief_max_words", 30))
    if "boilerplate" in opts:
        opts["boilerplate"] = tuple(opts["boilerplate"])
    return CaptionPolicy(**opts), langs, texts, brief


def _applies(task: str, words: int, brief_max_words: int) -> bool:
    if task == "caption_brief":
        return words <= brief_max_words
    if task == "caption_detailed":
        return words > brief_max_words
    return True


def _cleaned(loaded: LoadedRecord, ctx: ConvertContext) -> tuple[list[tuple[str, str]], dict[str, str], tuple[str, ...]]:
    """(task, text kind) pairs this record answers, the cleaned text of each kind, and the
    step's languages. A text that fails cleaning or the filters rejects the record."""
    policy, langs, text_for, brief_max_words = _settings(ctx)
    record = loaded.record
    texts: dict[str, Any] = loaded.facts.get("texts") or {}
    origin: dict[str, str] = loaded.facts.get("text_origin") or {}
    cleaned: dict[str, str] = {}
    planned: list[tuple[str, str]] = []
    for task in ctx.tasks:
        kind = text_for[task]
        if kind not in texts:
            continue
        if kind not in cleaned:
            text, reason = check_caption(texts[kind], policy)
            if reason:
                where = f" ({origin[kind]})" if kind in origin else ""
                shown = texts[kind][:80] if isinstance(texts[kind], str) else texts[kind]
                raise Rejected(reason, record.primary_file, f"{kind} text{where}: {shown!r}")
            cleaned[kind] = text
        if _applies(task, len(cleaned[kind].split()), brief_max_words):
            planned.append((task, kind))
    return planned, cleaned, langs


def _kinds(planned: list[tuple[str, str]]) -> list[str]:
    return sorted({kind for _, kind in planned})


def requests(loaded: LoadedRecord, ctx: ConvertContext) -> dict[str, ChatRequest]:
    planned, cleaned, langs = _cleaned(loaded, ctx)
    if not foreign_langs(langs):
        return {}
    return translation_requests("zh", [cleaned[k] for k in _kinds(planned)])


@converter(NAME, tasks=TASKS, requests=requests)
def captions(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample | Missing]:
    planned, cleaned, langs = _cleaned(loaded, ctx)
    record = loaded.record
    origin: dict[str, str] = loaded.facts.get("text_origin") or {}
    kinds = _kinds(planned)
    zh = translated(ctx, "zh", [cleaned[k] for k in kinds]) if foreign_langs(langs) and kinds else None
    out: list[Sample | Missing] = []
    for task, kind in planned:
        for lang in langs:
            if lang == SOURCE_LANG:
                answer = cleaned[kind]
            elif zh is not None and zh.ok:
                answer = zh.parsed[kinds.index(kind)]
            else:
                out.append(zh.missing(task, lang))  # type: ignore[union-attr]
                continue
            question = _checked_bank().pick(task, "question", lang, rng_for(ctx.seed, record.uid, task, lang))
            qa = RenderedQA(question=question.text, reply=answer.strip(), answer=answer.strip(),
                            question_id=question.template_id)
            sample = to_sample(loaded, converter=NAME, task=task, lang=lang,
                               question_type=QUESTION_TYPES[task], qa=qa)
            sample.provenance["text"] = kind
            if kind in origin:
                sample.provenance["text_origin"] = origin[kind]
            if lang != SOURCE_LANG:
                sample.provenance["llm_translation_cache_key"] = zh.cache_key  # type: ignore[union-attr]
            out.append(sample)
    return out
