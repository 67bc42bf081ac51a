"""Patient history + image -> diagnosis (PAD-UFES-20): the history is stated in the question.

PAD-UFES-20's metadata (age, body site, reported itch/bleeding/growth/pain/change, elevation) is
what the patient and the clinician recorded, not what the photograph shows. A question *about*
the history ("Does the lesion itch?") asked over the image alone can only be answered by
guessing, so none is asked (docs/data-quality.md, "Every question answerable from its sample").
The history is used the way a dermatologist uses it: stated in the prompt, beside the image, as
context for the diagnosis, which the label (biopsy or clinical consensus) answers.

Tasks (``facts["metadata"]``, normalised by the reader; unknown values are left out):

``history_diagnosis_mcq``  mcq   "Patient history: 77 years old; lesion on the face; reports
                                  itching ... Which diagnosis ...?" + lettered options
``history_diagnosis_open`` open  the same history, an open diagnosis question

A record without any known history field gives no sample (the ``labels`` converter already asks
the image-only diagnosis). Multiple-choice options are the ``labels`` converter's
(``mcq_choices``: same distractors and letters for both languages). Phrasings and history items
come from ``templates/metadata.yaml`` and ``vocabulary.yaml`` (``history``), drawn with
``rng_for(seed, record uid, task, lang)``.
"""

from __future__ import annotations

from typing import Any

from datakit.converters.base import ConvertContext, check_context
from datakit.converters.labels import LETTERS, mcq_choices
from datakit.converters.templates import RenderedQA, fill, image_words, template_bank, to_sample, vocabulary
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "metadata"
TASKS = ("history_diagnosis_mcq", "history_diagnosis_open")
QUESTION_TYPES = {"history_diagnosis_mcq": "mcq", "history_diagnosis_open": "open"}
SYMPTOMS = ("itch", "bleed", "grew", "hurt", "changed")  # patient-reported, in this order


def history_items(metadata: dict[str, Any], lang: str) -> list[str]:
    """The known history fields as phrases, in a fixed order: age, body site, the symptoms the
    patient reports, those they deny, elevation. Empty when nothing is known."""
    vocab = vocabulary()
    items = []
    age = metadata.get("age")
    if isinstance(age, int) and not isinstance(age, bool):
        items.append(vocab.phrase("history_age", lang, age=str(age)))
    if metadata.get("region"):
        items.append(vocab.phrase("history_region", lang,
                                  region=vocab.term("skin_regions", str(metadata["region"]), lang)))
    for value, phrase in ((True, "history_reports"), (False, "history_denies")):
        named = [vocab.term("symptoms", s, lang) for s in SYMPTOMS if metadata.get(s) is value]
        if named:
            joined = vocab.join(named, lang, last="last" if value else "or")
            items.append(vocab.phrase(phrase, lang, symptoms=joined))
    if isinstance(metadata.get("elevation"), bool):
        items.append(vocab.term("history", "raised" if metadata["elevation"] else "flat", lang))
    return items


def history_text(metadata: dict[str, Any], lang: str) -> str | None:
    items = history_items(metadata, lang)
    if not items:
        return None
    vocab = vocabulary()
    return vocab.phrase("history", lang, items=vocab.term("history", "separator", lang).join(items))


def _qa(task: str, loaded: LoadedRecord, ctx: ConvertContext, lang: str, history: str) -> RenderedQA:
    bank, vocab, record = template_bank(NAME), vocabulary(), loaded.record
    rng = rng_for(ctx.seed, record.uid, task, lang)
    words = image_words(loaded, lang)
    question = bank.pick(task, "question", lang, rng)
    stem = f"{history}\n{fill(question, words)}"
    label = loaded.facts["label"]
    if task == "history_diagnosis_mcq":
        choices = mcq_choices(label, tuple(loaded.facts["label_set"]), ctx.seed, record.uid)
        texts = [vocab.label(record.source, c, lang) for c in choices]
        lines = [f"{letter}. {text}" for letter, text in zip(LETTERS, texts)]
        letter = LETTERS[choices.index(label)]
        return RenderedQA(question="\n".join([stem, *lines, vocab.phrase("mcq_instruction", lang)]),
                          reply=f"{letter}. {texts[choices.index(label)]}", answer=letter,
                          question_id=question.template_id, options=texts)
    answer = bank.pick(task, "answer", lang, rng)
    reply = fill(answer, {"label": vocab.label(record.source, label, lang)})
    return RenderedQA(question=stem, reply=reply, answer=reply, question_id=question.template_id,
                      answer_id=answer.template_id)


@converter(NAME, tasks=TASKS)
def metadata(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    check_context("metadata", ctx, QUESTION_TYPES)
    facts = loaded.facts.get("metadata") or {}
    if loaded.facts.get("label") is None:
        return []
    samples: list[Sample] = []
    for task in ctx.tasks:
        if task == "history_diagnosis_mcq" and len(set(loaded.facts.get("label_set") or ())) < 2:
            continue
        for lang in ctx.langs:
            history = history_text(facts, lang)
            if history is None:
                break  # nothing known: the labels converter's image-only question covers it
            qa = _qa(task, loaded, ctx, lang, history)
            samples.append(to_sample(loaded, converter=NAME, task=task, lang=lang,
                                     question_type=QUESTION_TYPES[task], qa=qa))
    return samples
