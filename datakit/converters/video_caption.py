"""Video captions -> summarisation samples over the clip's frames.

Tasks (``facts["captions"]``, written by the video readers):

* ``summary``: the detailed caption answers a question drawn from the ``summary`` pool of
  ``templates/video.yaml`` ("Summarise this video.", ...), question type ``summary``;
* ``caption``: the brief caption answers a ``caption`` pool question, question type
  ``caption``.

Every frame is one ``<image>``, in time order, ahead of the question (the released Fleming-VL
demo's video prompt). A record without the caption a task needs yields nothing for that task.

Languages: captions exist only in English, so both tasks emit English only
(``FREE_TEXT_LANGS``) whatever the recipe's ``langs``; the Chinese twins are the LLM translation
step's job (``datakit.llm``, ``translate_zh``), which can pair the translated caption with the
Chinese questions of the same pools. The one option, ``langs``, narrows a step's languages and
states the choice in the recipe; asking for Chinese is an error. The LLM's multiple-choice
questions about a clip are the ``llm_enrich`` converter's ``video_mcq`` task, not this one's.
"""

from __future__ import annotations

import dataclasses

from datakit.converters.base import ConvertContext, check_context
from datakit.converters.templates import RenderedQA, fill, template_bank, to_sample
from datakit.converters.volume_vqa import step_langs
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "video_caption"
TEMPLATES = "video"
QUESTION_TYPES = {"summary": "summary", "caption": "caption"}
TASKS = tuple(QUESTION_TYPES)
FREE_TEXT_LANGS = ("en",)


def render(task: str, loaded: LoadedRecord, ctx: ConvertContext, lang: str) -> RenderedQA:
    rng = rng_for(ctx.seed, loaded.record.uid, task, lang)
    phrasing = template_bank(TEMPLATES).pick(task, "question", lang, rng)
    text = " ".join(loaded.facts["captions"][task].split())
    return RenderedQA(question=fill(phrasing, {}), reply=text, answer=text, question_id=phrasing.template_id)


@converter(NAME, tasks=TASKS)
def video_caption(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    check_context(NAME, ctx, QUESTION_TYPES, ("langs",))
    captions = loaded.facts.get("captions") or {}
    extra = dict(loaded.facts.get("provenance") or {})
    samples: list[Sample] = []
    for task in ctx.tasks:
        if not str(captions.get(task) or "").strip():
            continue
        for lang in step_langs(task, ctx, FREE_TEXT_LANGS, frozenset()):
            sample = to_sample(loaded, converter=NAME, task=task, lang=lang, question_type=QUESTION_TYPES[task],
                               qa=render(task, loaded, ctx, lang))
            samples.append(dataclasses.replace(sample, provenance={**sample.provenance, **extra}))
    return samples
