"""Video captions -> summarisation samples over the clip's frames.

Tasks (``facts["captions"]``, written by the video readers):

* ``summary``: the detailed caption answers a question drawn from the ``summary`` pool of
  ``templates/video.yaml`` ("Summarise this video.", ...), question type ``summary``;
* ``caption``: the brief caption answers a ``caption`` pool question, question type
  ``caption``.

Every frame is one ``<image>``, in time order, ahead of the question (the released Fleming-VL
demo's video prompt). A record without the caption a task needs yields nothing for that task.

Languages: captions exist only in English. A Chinese sample's answer is the caption translated
by the LLM (this converter's ``requests``: one ``translate_zh`` request per clip holding both
captions) under a question from the Chinese pool; offline it is ``Missing`` (``skipped_llm``).
The one option, ``langs``, narrows a step's languages (default: the recipe's). The LLM's
multiple-choice questions about a clip are the ``llm_enrich`` converter's ``video_mcq`` task.
"""

from __future__ import annotations

import dataclasses

from datakit.converters.base import ConvertContext, Missing, check_context
from datakit.converters.templates import RenderedQA, fill, template_bank, to_sample
from datakit.converters.volume_vqa import step_langs
from datakit.llm.replies import SOURCE_LANG, foreign_langs, translated, translation_requests
from datakit.llm.request import ChatRequest
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "video_caption"
TEMPLATES = "video"
QUESTION_TYPES = {"summary": "summary", "caption": "caption"}
TASKS = tuple(QUESTION_TYPES)


def _captions(loaded: LoadedRecord, ctx: ConvertContext) -> dict[str, str]:
    """The whitespace-normalised caption of each of the step's tasks the record has."""
    captions = loaded.facts.get("captions") or {}
    return {task: " ".join(str(captions[task]).split()) for task in ctx.tasks
            if str(captions.get(task) or "").strip()}


def render(task: str, loaded: LoadedRecord, ctx: ConvertContext, lang: str, text: str) -> RenderedQA:
    rng = rng_for(ctx.seed, loaded.record.uid, task, lang)
    phrasing = template_bank(TEMPLATES).pick(task, "question", lang, rng)
    return RenderedQA(question=fill(phrasing, {}), reply=text, answer=text, question_id=phrasing.template_id)


def requests(loaded: LoadedRecord, ctx: ConvertContext) -> dict[str, ChatRequest]:
    check_context(NAME, ctx, QUESTION_TYPES, ("langs",))
    captions = _captions(loaded, ctx)
    wanted = [task for task in captions if foreign_langs(step_langs(task, ctx))]
    return translation_requests("zh", [captions[t] for t in wanted])


@converter(NAME, tasks=TASKS, requests=requests)
def video_caption(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample | Missing]:
    check_context(NAME, ctx, QUESTION_TYPES, ("langs",))
    captions = _captions(loaded, ctx)
    wanted = [task for task in captions if foreign_langs(step_langs(task, ctx))]
    zh = translated(ctx, "zh", [captions[t] for t in wanted]) if wanted else None
    extra = dict(loaded.facts.get("provenance") or {})
    out: list[Sample | Missing] = []
    for task, text in captions.items():
        for lang in step_langs(task, ctx):
            answer, keys = text, {}
            if lang != SOURCE_LANG:
                if zh is None or not zh.ok:
                    out.append(zh.missing(task, lang))  # type: ignore[union-attr]
                    continue
                answer, keys = zh.parsed[wanted.index(task)], {"llm_translation_cache_key": zh.cache_key}
            sample = to_sample(loaded, converter=NAME, task=task, lang=lang, question_type=QUESTION_TYPES[task],
                               qa=render(task, loaded, ctx, lang, answer))
            out.append(dataclasses.replace(sample, provenance={**sample.provenance, **extra, **keys}))
    return out
