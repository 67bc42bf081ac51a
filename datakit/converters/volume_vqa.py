"""Volumes (ordered slice sequences) -> report generation, VQA and template questions.

Tasks, each over all the record's slices (one ``<image>`` per slice, in depth order), and
emitted only when the reader supplied what it needs:

* ``report`` (``facts["report"]``, M3D-Cap and NIfTI sidecars): a question from the pool, the
  report as the answer (question type ``report``).
* ``vqa_mcq`` / ``vqa_open`` (``facts["vqa"]``, the M3D-VQA questions of the volume): one
  sample per question, the released question (after a lead-in from the pool) with its lettered
  choices in released order, or alone with the answer text.
* ``plane_mcq`` / ``plane_open`` (``facts["plane"]``): which plane the slices are in, the three
  planes lettered in a seeded order (the same letter for both languages).
* ``label_mcq`` / ``label_open`` (``facts["label"]``, NIfTI label sidecars): the folder's label
  with up to three distractors from its other labels.

Languages. Reports, M3D-VQA questions and answers, and sidecar labels exist only in English;
their Chinese twins state the texts translated by the LLM (this converter's ``requests``: one
``translate_zh`` request per record with every text its Chinese samples need) under the Chinese
lead-ins of ``templates/volume.yaml``. Offline, they are ``Missing`` (``skipped_llm``). The plane
tasks are written entirely from hand-translated templates. The one option, ``langs``, narrows a
step's languages (default: the recipe's).

Every sample of a record has the record as its group (one volume, one split, one dedup unit)
and carries the reader's ``facts["provenance"]`` (slice indices, depth) in its provenance, plus
the CSV row of its question for M3D-VQA.
"""

from __future__ import annotations

import dataclasses

from datakit.converters.base import ConvertContext, Missing, check_context
from datakit.converters.labels import mcq_choices
from datakit.converters.templates import RenderedQA, fill, template_bank, to_sample, vocabulary
from datakit.llm.replies import SOURCE_LANG, foreign_langs, translated, translation_requests
from datakit.llm.request import ChatRequest
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "volume_vqa"
TEMPLATES = "volume"
QUESTION_TYPES = {
    "report": "report", "vqa_mcq": "mcq", "vqa_open": "open", "plane_mcq": "mcq", "plane_open": "open",
    "label_mcq": "mcq", "label_open": "open",
}
TASKS = tuple(QUESTION_TYPES)
NEEDS = {"report": "report", "vqa_mcq": "vqa", "vqa_open": "vqa", "plane_mcq": "plane", "plane_open": "plane",
         "label_mcq": "label", "label_open": "label"}
TEMPLATE_TASKS = frozenset({"plane_mcq", "plane_open"})
PLANES = ("axial", "coronal", "sagittal")  # the order of templates/volume.yaml plane_mcq.options
LETTERS = "ABCD"


def _mcq(question: str, texts: list[str], correct: int, lang: str, qid: str) -> RenderedQA:
    lines = [f"{letter}. {text}" for letter, text in zip(LETTERS, texts)]
    body = "\n".join([question, *lines, vocabulary().phrase("mcq_instruction", lang)])
    letter = LETTERS[correct]
    return RenderedQA(question=body, reply=f"{letter}. {texts[correct]}", answer=letter, question_id=qid,
                      options=list(texts))


def _open(question: str, reply: str, qid: str, aid: str | None = None) -> RenderedQA:
    return RenderedQA(question=question, reply=reply, answer=reply, question_id=qid, answer_id=aid)


def free_texts(task: str, loaded: LoadedRecord, ctx: ConvertContext, number: int = 0) -> list[str]:
    """The English source texts a task's sample states (none for the templated plane tasks):
    what a Chinese twin needs translated."""
    facts = loaded.facts
    if task == "report":
        return [facts["report"]]
    if task == "vqa_mcq":
        return [facts["vqa"][number]["question"], *facts["vqa"][number]["options"]]
    if task == "vqa_open":
        return [facts["vqa"][number]["question"], facts["vqa"][number]["answer"]]
    if task == "label_mcq":
        return mcq_choices(facts["label"], tuple(facts.get("label_set") or (facts["label"],)), ctx.seed,
                           loaded.record.uid)
    if task == "label_open":
        return [facts["label"]]
    return []


def render(task: str, loaded: LoadedRecord, ctx: ConvertContext, lang: str, number: int = 0,
           tr: dict[str, str] | None = None) -> RenderedQA:
    """One task's question and answer in ``lang``; ``number`` picks the M3D-VQA question; ``tr``
    maps the English source texts (``free_texts``) to their translation in ``lang``."""
    t = tr.__getitem__ if tr is not None else (lambda s: s)
    bank, facts, uid = template_bank(TEMPLATES), loaded.facts, loaded.record.uid
    rng = rng_for(ctx.seed, uid, task, number, lang)
    words = {"imaging": vocabulary().term("modalities", facts.get("imaging", "ct"), lang)}
    phrasing = bank.pick(task, "question", lang, rng)
    qid = phrasing.template_id
    if task == "report":
        return _open(fill(phrasing, words), t(facts["report"]), qid)
    if task.startswith("vqa_"):
        vqa = facts["vqa"][number]
        question = fill(phrasing, {**words, "question": t(vqa["question"])})
        if task == "vqa_mcq":
            return _mcq(question, [t(o) for o in vqa["options"]], vqa["answer_index"], lang, qid)
        return _open(question, t(vqa["answer"]), qid)
    if task.startswith("plane_"):
        names = bank.pool("plane_mcq", "options", lang)  # axial, coronal, sagittal in this language
        if task == "plane_mcq":
            order = list(PLANES)
            rng_for(ctx.seed, uid, task).shuffle(order)  # not per language: twins share the letter
            texts = [names[PLANES.index(p)] for p in order]
            return _mcq(fill(phrasing, words), texts, order.index(facts["plane"]), lang, qid)
        answer = bank.pick(task, "answer", lang, rng)
        plane = names[PLANES.index(facts["plane"])].lower()  # no-op on Chinese
        return _open(fill(phrasing, words), fill(answer, {"plane": plane}), qid, answer.template_id)
    label = facts["label"]
    if task == "label_mcq":
        choices = mcq_choices(label, tuple(facts.get("label_set") or (label,)), ctx.seed, uid)
        return _mcq(fill(phrasing, words), [t(c) for c in choices], choices.index(label), lang, qid)
    answer = bank.pick(task, "answer", lang, rng)
    return _open(fill(phrasing, words), fill(answer, {"label": t(label)}), qid, answer.template_id)


def step_langs(task: str, ctx: ConvertContext) -> tuple[str, ...]:
    """The languages a step emits ``task`` in: the recipe's, narrowed by the step's ``langs``
    option (a language the recipe does not build is an error)."""
    asked = tuple(ctx.options.get("langs", ctx.langs))
    unknown = [lang for lang in asked if lang not in ctx.langs]
    if unknown:
        raise ValueError(f"task {task!r}: options.langs {list(asked)} must be a subset of the recipe's langs "
                         f"{list(ctx.langs)}")
    return tuple(lang for lang in ctx.langs if lang in asked)


def _planned(loaded: LoadedRecord, ctx: ConvertContext) -> list[tuple[str, int, dict | None, tuple[str, ...]]]:
    """(task, question number, M3D-VQA row, languages) of every sample this record plans."""
    out = []
    for task in ctx.tasks:
        if not _applies(task, loaded.facts):
            continue
        questions = loaded.facts["vqa"] if NEEDS[task] == "vqa" else [None]
        out += [(task, number, question, step_langs(task, ctx)) for number, question in enumerate(questions)]
    return out


def _to_translate(loaded: LoadedRecord, ctx: ConvertContext) -> list[str]:
    """The record's English texts its Chinese free-text samples need, each once, in order."""
    texts: dict[str, None] = {}
    for task, number, _, langs in _planned(loaded, ctx):
        if task not in TEMPLATE_TASKS and foreign_langs(langs):
            texts.update(dict.fromkeys(free_texts(task, loaded, ctx, number)))
    return list(texts)


def requests(loaded: LoadedRecord, ctx: ConvertContext) -> dict[str, ChatRequest]:
    check_context(NAME, ctx, QUESTION_TYPES, ("langs",))
    return translation_requests("zh", _to_translate(loaded, ctx))


def _applies(task: str, facts: dict) -> bool:
    need = facts.get(NEEDS[task])
    if task == "plane_mcq" or task == "plane_open":
        return need in PLANES
    if task == "label_mcq":
        return bool(need) and len(set(facts.get("label_set") or ())) >= 2
    return bool(need)


@converter(NAME, tasks=TASKS, requests=requests)
def volume_vqa(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample | Missing]:
    check_context(NAME, ctx, QUESTION_TYPES, ("langs",))
    extra = dict(loaded.facts.get("provenance") or {})
    texts = _to_translate(loaded, ctx)
    zh = translated(ctx, "zh", texts) if texts else None
    tr = dict(zip(texts, zh.parsed)) if zh is not None and zh.ok else None
    out: list[Sample | Missing] = []
    for task, number, question, langs in _planned(loaded, ctx):
        row = {"row": question["row"], "m3d_question_type": question["question_type"]} if question else {}
        key_task = f"{task}_{number + 1}" if question else None
        for lang in langs:
            free = task not in TEMPLATE_TASKS and lang != SOURCE_LANG
            if free and tr is None:
                out.append(zh.missing(task, lang, slot=key_task or ""))  # type: ignore[union-attr]
                continue
            sample = to_sample(loaded, converter=NAME, task=task, lang=lang, question_type=QUESTION_TYPES[task],
                               qa=render(task, loaded, ctx, lang, number, tr if free else None), key_task=key_task)
            keys = {"llm_translation_cache_key": zh.cache_key} if free else {}  # type: ignore[union-attr]
            out.append(dataclasses.replace(sample, provenance={**sample.provenance, **extra, **row, **keys}))
    return out
