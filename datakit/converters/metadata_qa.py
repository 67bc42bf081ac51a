"""Patient and lesion metadata -> VQA (PAD-UFES-20): age, body region, and the reported history.

Reads ``facts["metadata"]``, already normalised by the reader (booleans, ints, lower-case region
keys; unknown values left out). Each task asks about one field and is emitted only when the
record has that field, so ``UNK`` or empty values never become answers:

``patient_age``      open      "How old is the patient?"           ``age``
``lesion_region``    open      "Where on the body is this lesion?" ``region`` (vocabulary ``skin_regions``)
``lesion_itch`` ...  yes_no    "Does the lesion itch?"             ``itch``, ``bleed``, ``grew``,
                                                                   ``hurt``, ``changed``, ``elevation``

Itching, bleeding, growth, pain and change are what the patient reported, not what the photograph
shows; the question pools (``templates/metadata.yaml``) say so ("According to the patient's
history ..."), so the model learns to answer from the stated history rather than to guess it from
pixels. Phrasings come from ``rng_for(seed, record uid, task, lang)``; the structured answer of a
yes/no sample is vocabulary's ``yes_no`` word, of an open one the reply itself.
"""

from __future__ import annotations

from datakit.converters.base import ConvertContext, check_context
from datakit.converters.templates import RenderedQA, fill, template_bank, to_sample, vocabulary
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "metadata"
FIELDS = {
    "patient_age": "age",
    "lesion_region": "region",
    "lesion_itch": "itch",
    "lesion_bleed": "bleed",
    "lesion_grew": "grew",
    "lesion_hurt": "hurt",
    "lesion_changed": "changed",
    "lesion_elevation": "elevation",
}
TASKS = tuple(FIELDS)
QUESTION_TYPES = {task: "yes_no" for task in TASKS} | {"patient_age": "open", "lesion_region": "open"}


def _qa(task: str, value: object, lang: str, seed: int, uid: str) -> RenderedQA:
    bank, vocab = template_bank(NAME), vocabulary()
    rng = rng_for(seed, uid, task, lang)
    question = bank.pick(task, "question", lang, rng)
    if QUESTION_TYPES[task] == "yes_no":
        if not isinstance(value, bool):
            raise ValueError(f"metadata: {FIELDS[task]} must be a bool, got {value!r} ({uid})")
        answer = bank.pick(task, "answer_yes" if value else "answer_no", lang, rng)
        word = vocab.term("yes_no", "affirmative" if value else "negative", lang)
        reply = fill(answer, {})
        return RenderedQA(question=fill(question, {}), reply=reply, answer=word,
                          question_id=question.template_id, answer_id=answer.template_id)
    answer = bank.pick(task, "answer", lang, rng)
    if task == "patient_age":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"metadata: age must be an int, got {value!r} ({uid})")
        words = {"age": str(value)}
    else:
        words = {"region": vocab.term("skin_regions", str(value), lang)}
    reply = fill(answer, words)
    return RenderedQA(question=fill(question, words), reply=reply, answer=reply,
                      question_id=question.template_id, answer_id=answer.template_id)


@converter(NAME, tasks=TASKS)
def metadata(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    check_context("metadata", ctx, FIELDS)
    facts = loaded.facts.get("metadata") or {}
    samples: list[Sample] = []
    for task in ctx.tasks:
        if FIELDS[task] not in facts:
            continue
        for lang in ctx.langs:
            qa = _qa(task, facts[FIELDS[task]], lang, ctx.seed, loaded.record.uid)
            samples.append(to_sample(loaded, converter=NAME, task=task, lang=lang,
                                     question_type=QUESTION_TYPES[task], qa=qa))
    return samples
