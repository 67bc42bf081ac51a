"""Imaging modality questions: multiple choice (``modality_mcq``) and open (``modality_open``).

The answer is the record's own ``modality`` (what its reader knows from the dataset: BUSI is
ultrasound, EyePACS fundus photography), so every single-image record of any source can be asked
it. Modality recognition is a question type of the field's benchmarks (OmniMedVQA's "Modality
Recognition", SLAKE and VQA-RAD modality questions), and it is what a model can learn from a few
images of each source, which is why the tiny pipeline evaluates it on held-out records.

Multiple choice lists every modality of ``vocabulary.yaml`` ``modality_names``, always in that
order: a closed label set, listed the way classification benchmarks list their classes, so the
letter is a function of the answer. The open question's reply is the modality's name alone (a
short phrase, as closed VQA answers are). Phrasings come from ``rng_for(seed, uid, task, lang)``.
Records with more than one image (volumes, video frames) or a modality without a name yield
nothing: the question is about one picture.
"""

from __future__ import annotations

from datakit.converters.base import ConvertContext, check_context
from datakit.converters.templates import RenderedQA, template_bank, to_sample, vocabulary
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "modality"
TASKS = ("modality_mcq", "modality_open")
QUESTION_TYPES = {"modality_mcq": "mcq", "modality_open": "open"}
NAMES = "modality_names"  # the vocabulary group
LETTERS = "ABCDEFGH"


def modality_options(lang: str) -> list[str]:
    """Every modality name in ``lang``, in the vocabulary's order (the options of a question)."""
    vocab = vocabulary()
    return [vocab.term(NAMES, key, lang) for key in vocab.keys(NAMES)]


def _qa(loaded: LoadedRecord, ctx: ConvertContext, task: str, lang: str) -> RenderedQA:
    vocab, record = vocabulary(), loaded.record
    phrasing = template_bank(NAME).pick(task, "question", lang, rng_for(ctx.seed, record.uid, task, lang))
    name = vocab.term(NAMES, record.modality, lang)
    if task == "modality_open":
        return RenderedQA(question=phrasing.text, reply=name, answer=name, question_id=phrasing.template_id)
    options = modality_options(lang)
    letter = LETTERS[options.index(name)]
    lines = [f"{LETTERS[i]}. {text}" for i, text in enumerate(options)]
    question = "\n".join([phrasing.text, *lines, vocab.phrase("mcq_instruction", lang)])
    return RenderedQA(question=question, reply=f"{letter}. {name}", answer=letter,
                      question_id=phrasing.template_id, options=options)


@converter(NAME, tasks=TASKS)
def modality(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    check_context(NAME, ctx, QUESTION_TYPES)
    if len(loaded.media) != 1 or not vocabulary().has(NAMES, str(loaded.record.modality)):
        return []
    return [to_sample(loaded, converter=NAME, task=task, lang=lang, question_type=QUESTION_TYPES[task],
                      qa=_qa(loaded, ctx, task, lang))
            for task in ctx.tasks for lang in ctx.langs]
