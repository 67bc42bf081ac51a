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

Languages. Reports, M3D-VQA questions and answers, and sidecar labels exist only in English,
so those tasks emit English only (``FREE_TEXT_LANGS``), whatever the recipe's ``langs``; their
Chinese twins are the LLM translation step's job (``datakit.llm``, task ``translate_zh``), which
can reuse the Chinese lead-ins of ``templates/volume.yaml``. The plane tasks are written
entirely from hand-translated templates and follow the recipe's ``langs``. The one option,
``langs``, narrows a step's languages and states the choice in the recipe; asking a free-text
task for Chinese is an error.

Every sample of a record has the record as its group (one volume, one split, one dedup unit)
and carries the reader's ``facts["provenance"]`` (slice indices, depth) in its provenance, plus
the CSV row of its question for M3D-VQA.
"""

from __future__ import annotations

import dataclasses

from datakit.converters.base import ConvertContext, check_context
from datakit.converters.labels import mcq_choices
from datakit.converters.templates import RenderedQA, fill, template_bank, to_sample, vocabulary
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
FREE_TEXT_LANGS = ("en",)
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


def render(task: str, loaded: LoadedRecord, ctx: ConvertContext, lang: str, number: int = 0) -> RenderedQA:
    """One task's question and answer in ``lang``; ``number`` picks the M3D-VQA question."""
    bank, facts, uid = template_bank(TEMPLATES), loaded.facts, loaded.record.uid
    rng = rng_for(ctx.seed, uid, task, number, lang)
    words = {"imaging": vocabulary().term("modalities", facts.get("imaging", "ct"), lang)}
    phrasing = bank.pick(task, "question", lang, rng)
    qid = phrasing.template_id
    if task == "report":
        return _open(fill(phrasing, words), facts["report"], qid)
    if task.startswith("vqa_"):
        vqa = facts["vqa"][number]
        question = fill(phrasing, {**words, "question": vqa["question"]})
        if task == "vqa_mcq":
            return _mcq(question, list(vqa["options"]), vqa["answer_index"], lang, qid)
        return _open(question, vqa["answer"], qid)
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
        return _mcq(fill(phrasing, words), choices, choices.index(label), lang, qid)
    answer = bank.pick(task, "answer", lang, rng)
    return _open(fill(phrasing, words), fill(answer, {"label": label}), qid, answer.template_id)


def step_langs(task: str, ctx: ConvertContext, free_text_langs: tuple[str, ...] = FREE_TEXT_LANGS,
               templated: frozenset[str] = TEMPLATE_TASKS) -> tuple[str, ...]:
    """The languages a step emits ``task`` in: the recipe's, narrowed by the step's ``langs``
    option, and English only where the answer is English free text."""
    asked = tuple(ctx.options.get("langs", ctx.langs))
    if task not in templated:
        untranslated = [lang for lang in asked if lang not in free_text_langs]
        if "langs" in ctx.options and untranslated:
            raise ValueError(f"task {task!r} has free-text answers only in {list(free_text_langs)}, asked for "
                             f"{untranslated}: Chinese twins come from the LLM translation step (datakit.llm)")
        asked = tuple(lang for lang in asked if lang in free_text_langs)
    return tuple(lang for lang in ctx.langs if lang in asked)


def _applies(task: str, facts: dict) -> bool:
    need = facts.get(NEEDS[task])
    if task == "plane_mcq" or task == "plane_open":
        return need in PLANES
    if task == "label_mcq":
        return bool(need) and len(set(facts.get("label_set") or ())) >= 2
    return bool(need)


@converter(NAME, tasks=TASKS)
def volume_vqa(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    check_context(NAME, ctx, QUESTION_TYPES, ("langs",))
    facts = loaded.facts
    extra = dict(facts.get("provenance") or {})
    samples: list[Sample] = []
    for task in ctx.tasks:
        if not _applies(task, facts):
            continue
        questions = facts["vqa"] if NEEDS[task] == "vqa" else [None]
        for number, question in enumerate(questions):
            row = {"row": question["row"], "m3d_question_type": question["question_type"]} if question else {}
            for lang in step_langs(task, ctx):
                sample = to_sample(loaded, converter=NAME, task=task, lang=lang, question_type=QUESTION_TYPES[task],
                                   qa=render(task, loaded, ctx, lang, number),
                                   key_task=f"{task}_{number + 1}" if question else None)
                samples.append(dataclasses.replace(sample, provenance={**sample.provenance, **extra, **row}))
    return samples
