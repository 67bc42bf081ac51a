"""Labels -> diagnostic VQA: multiple choice (``diagnosis_mcq``) and open (``diagnosis_open``).

Multiple choice offers the true label and up to ``MAX_OPTIONS - 1`` distractors drawn from the
dataset's other labels (``facts["label_set"]``, sorted first so the reader's tuple order does not
matter), lettered A-D. Distractors and option order come from ``rng_for(seed, record uid, task)``,
the same for both languages, so English and Chinese twins share the correct letter; the question
phrasing comes from ``rng_for(seed, uid, task, lang)``. A dataset with a single label has no
multiple choice. Records without a label yield nothing.
"""

from __future__ import annotations

from datakit.converters.base import ConvertContext, check_context
from datakit.converters.templates import RenderedQA, fill, image_words, template_bank, to_sample, vocabulary
from datakit.errors import Rejected
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "labels"
TASKS = ("diagnosis_mcq", "diagnosis_open")
QUESTION_TYPES = {"diagnosis_mcq": "mcq", "diagnosis_open": "open"}
MAX_OPTIONS = 4
LETTERS = "ABCD"


def mcq_choices(label: str, label_set: tuple[str, ...], seed: int, uid: str) -> list[str]:
    """Label keys in display order: the true label and seeded distractors, shuffled."""
    rng = rng_for(seed, uid, "diagnosis_mcq")
    others = sorted(set(label_set) - {label})
    choices = [label, *rng.sample(others, min(MAX_OPTIONS - 1, len(others)))]
    rng.shuffle(choices)
    return choices


def _mcq_qa(loaded: LoadedRecord, ctx: ConvertContext, lang: str, words: dict[str, str],
            choices: list[str]) -> RenderedQA:
    vocab, record = vocabulary(), loaded.record
    phrasing = template_bank(NAME).pick("diagnosis_mcq", "question", lang,
                                        rng_for(ctx.seed, record.uid, "diagnosis_mcq", lang))
    texts = [vocab.label(record.source, c, lang) for c in choices]
    lines = [f"{letter}. {text}" for letter, text in zip(LETTERS, texts)]
    correct = choices.index(loaded.facts["label"])
    question = "\n".join([fill(phrasing, words), *lines, vocab.phrase("mcq_instruction", lang)])
    letter = LETTERS[correct]
    return RenderedQA(
        question=question,
        reply=f"{letter}. {texts[correct]}",
        answer=letter,
        question_id=phrasing.template_id,
        options=texts,
    )


def _open_qa(loaded: LoadedRecord, ctx: ConvertContext, lang: str, words: dict[str, str]) -> RenderedQA:
    bank, record = template_bank(NAME), loaded.record
    rng = rng_for(ctx.seed, record.uid, "diagnosis_open", lang)
    question = bank.pick("diagnosis_open", "question", lang, rng)
    answer = bank.pick("diagnosis_open", "answer", lang, rng)
    label = vocabulary().label(record.source, loaded.facts["label"], lang)
    reply = fill(answer, {**words, "label": label})
    return RenderedQA(
        question=fill(question, words),
        reply=reply,
        answer=reply,
        question_id=question.template_id,
        answer_id=answer.template_id,
    )


@converter(NAME, tasks=TASKS)
def labels(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    check_context("labels", ctx, QUESTION_TYPES)
    label = loaded.facts.get("label")
    if label is None:
        return []
    record, vocab = loaded.record, vocabulary()
    label_set = tuple(loaded.facts.get("label_set") or ())
    if label not in label_set:
        raise Rejected("label_not_in_label_set", record.primary_file, f"{label!r} not in {label_set}")
    samples: list[Sample] = []
    for task in ctx.tasks:
        if task == "diagnosis_mcq" and len(label_set) < 2:
            continue
        choices = mcq_choices(label, label_set, ctx.seed, record.uid) if task == "diagnosis_mcq" else []
        for lang in ctx.langs:
            words = image_words(loaded, lang)
            qa = _mcq_qa(loaded, ctx, lang, words, choices) if choices else _open_qa(loaded, ctx, lang, words)
            samples.append(to_sample(loaded, converter=NAME, task=task, lang=lang,
                                     question_type=QUESTION_TYPES[task], qa=qa))
    return samples
