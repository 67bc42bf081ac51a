"""LLM-written samples: label enrichment (``enriched_qa``), video multiple choice (``video_mcq``)
and the chain-of-thought of multiple-choice samples (``cot_mcq``, ``datakit.llm.cot``).

A converter with the LLM capability (``converters.base``): ``requests`` names what it needs to
ask, the build answers through its cache, and ``llm_enrich`` turns the checked answers into
samples. Round one asks the English sample; round two asks its Chinese translation (the recipe's
other language), so every planned (task, language) ends as a sample or a ``Missing``:
``skipped_llm`` without an answer, ``rejected`` when the answer fails validation.

* ``enriched_qa``: the image, the verified label and the facts measured from the masks go to the
  model, which writes one reasoning-style question and answer (``llm.tasks.LABEL_ENRICHMENT``).
  Patient metadata is not sent: a question must be answerable from the sample, and the sample
  holds only the image (docs/data-quality.md).
* ``video_mcq``: the clip's caption goes to the model, which writes one question with 2-4 options
  (the paper's MedVideoCap step); the frames are the sample's media. Option order is seeded per
  record, so the correct letter does not follow the model's habits; twins share it.
* ``cot_mcq``: a reasoning chain ending in the gold letter for each English multiple choice the
  record's earlier steps made (``ctx.earlier``), translated for its Chinese twin
  (``datakit.llm.cot``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from datakit.converters.base import REJECTED, ConvertContext, Missing, check_context
from datakit.llm.cot import TASK as COT_TASK, cot_outputs, cot_requests
from datakit.llm.replies import Checked, checked, foreign_langs, translated, translation_requests
from datakit.llm.request import ChatRequest, ImagePart
from datakit.llm.tasks import LABEL_ENRICHMENT, VIDEO_MCQ, TaskSpec, label_enrichment_request, video_mcq_request
from datakit.llm.validate import check_video_mcq
from datakit.converters.templates import sample_modality
from datakit.record import LoadedRecord, Media
from datakit.registry import converter
from datakit.sample import IMAGE_TOKEN, Sample, sample_key
from datakit.seeding import rng_for

NAME = "llm_enrich"
TASKS = ("enriched_qa", "video_mcq", COT_TASK)
QUESTION_TYPES = {"enriched_qa": "open", "video_mcq": "mcq", COT_TASK: "mcq"}
_LETTERS = "ABCD"
_ANSWER_PREFIX = {"en": "Answer: ", "zh": "答案："}
_MCQ_INSTRUCTION = {
    "en": "Answer with the option's letter from the given choices directly.",
    "zh": "请直接回答所给选项的字母。",
}


def lesion_facts(loaded: LoadedRecord) -> list[str]:
    """Facts for the prompt: the reader's ``facts['lesion_facts']`` when it wrote them, else
    region count and area share of each mask (only what the mask itself supports)."""
    given = loaded.facts.get("lesion_facts")
    if given is not None:
        return [str(f) for f in given]
    out = []
    for name, mask in sorted(loaded.masks.items()):
        n = int(ndimage.label(mask)[1]) if mask.any() else 0
        share = 100.0 * float(np.count_nonzero(mask)) / max(mask.size, 1)
        out.append(f"{name}: {n} separate region(s), {share:.1f}% of the image area" if n else f"{name}: none")
    return out


def _label(loaded: LoadedRecord) -> str | None:
    label = loaded.facts.get("label", loaded.record.label)
    return None if label is None else str(label)


def _first_request(task: str, loaded: LoadedRecord) -> ChatRequest | Missing | None:
    """The English request of ``task``, or why the record cannot have one (None: not asked)."""
    if task == "enriched_qa":
        label = _label(loaded)
        if not label:
            return Missing(task=task, lang="", status=REJECTED, reason="missing_label")
        if not loaded.media:
            return Missing(task=task, lang="", status=REJECTED, reason="missing_image")
        image = loaded.media[0]
        try:
            part = ImagePart.from_ext(image.data, image.ext)
        except ValueError as e:
            return Missing(task=task, lang="", status=REJECTED, reason="unsupported_image_format", detail=str(e))
        return label_enrichment_request(part, modality=sample_modality(loaded), label=label,
                                        lesion_facts=lesion_facts(loaded))
    caption = loaded.record.text
    if not caption or not caption.strip():
        return Missing(task=task, lang="", status=REJECTED, reason="missing_caption")
    if not loaded.media:
        return Missing(task=task, lang="", status=REJECTED, reason="missing_media")
    return video_mcq_request(caption)


def _english(task: str, loaded: LoadedRecord, ctx: ConvertContext) -> tuple[Checked, list[str], int | None]:
    """The checked English answer, its texts in order (question first), and the correct option
    after the seeded shuffle (multiple choice only)."""
    if task == "enriched_qa":
        got = checked(ctx, task, LABEL_ENRICHMENT.name, label=_label(loaded))
        if not got.ok:
            return got, [], None
        p = got.parsed
        return got, [p["question"], p["reasoning"], p["answer"]], None
    got = checked(ctx, task, VIDEO_MCQ.name)
    if not got.ok:
        return got, [], None
    options = list(got.parsed["options"])
    rng_for(ctx.seed, loaded.record.uid, task).shuffle(options)
    correct = next(i for i, o in enumerate(options) if o["correct"])
    return got, [got.parsed["question"], *(o["text"] for o in options)], correct


def requests(loaded: LoadedRecord, ctx: ConvertContext) -> dict[str, ChatRequest]:
    check_context(NAME, ctx, QUESTION_TYPES)
    out: dict[str, ChatRequest] = {}
    for task in ctx.tasks:
        if task == COT_TASK:
            out.update(cot_requests(loaded, ctx))
            continue
        first = _first_request(task, loaded)
        if not isinstance(first, ChatRequest):
            continue
        out[task] = first
        if task in ctx.answers and foreign_langs(ctx.langs):
            got, texts, _ = _english(task, loaded, ctx)
            if got.ok:
                out.update(translation_requests(f"{task}:zh", texts))
    return out


def _texts(task: str, loaded: LoadedRecord, ctx: ConvertContext, lang: str, english: list[str],
           correct: int | None) -> Checked:
    if lang == "en":
        return Checked(parsed=english)
    got = translated(ctx, f"{task}:zh", english)
    if got.ok and correct is not None:
        # A translation can merge two options or copy the answer into the question.
        options = [{"text": t, "correct": i == correct} for i, t in enumerate(got.parsed[1:])]
        verdict = check_video_mcq({"question": got.parsed[0], "options": options})
        if not verdict.ok:
            return Checked(status=REJECTED, reason=verdict.reason, detail=verdict.detail, cache_key=got.cache_key)
    return got


@converter(NAME, tasks=TASKS, requests=requests, uses_earlier=True)
def llm_enrich(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample | Missing]:
    check_context(NAME, ctx, QUESTION_TYPES)
    out: list[Sample | Missing] = []
    for task in ctx.tasks:
        if task == COT_TASK:
            out += cot_outputs(loaded, ctx, _base_provenance(loaded))
            continue
        first = _first_request(task, loaded)
        if isinstance(first, Missing):
            out += [Missing(task=task, lang=lang, status=first.status, reason=first.reason, detail=first.detail)
                    for lang in ctx.langs]
            continue
        got, english, correct = _english(task, loaded, ctx)
        if not got.ok:
            out += [got.missing(task, lang) for lang in ctx.langs]
            continue
        for lang in ctx.langs:
            texts = _texts(task, loaded, ctx, lang, english, correct)
            if not texts.ok:
                out.append(texts.missing(task, lang))
                continue
            keys = {"llm_cache_key": got.cache_key}
            if lang != "en":
                keys["llm_translation_cache_key"] = texts.cache_key
            out.append(_sample(task, loaded, ctx, lang, texts.parsed, correct, keys))
    return out


def _sample(task: str, loaded: LoadedRecord, ctx: ConvertContext, lang: str, texts: list[str],
            correct: int | None, keys: dict[str, Any]) -> Sample:
    rec = loaded.record
    spec: TaskSpec = LABEL_ENRICHMENT if task == "enriched_qa" else VIDEO_MCQ
    media: list[Media] = [loaded.media[0]] if task == "enriched_qa" else list(loaded.media)
    if task == "enriched_qa":
        question, reasoning, answer = texts
        conversation = [{"from": "human", "value": f"{IMAGE_TOKEN}\n{question}"},
                        {"from": "gpt", "value": f"{reasoning}\n{_ANSWER_PREFIX[lang]}{answer}"}]
        options = None
    else:
        question, options = texts[0], texts[1:]
        n = len(media)
        frames = f"{IMAGE_TOKEN}\n" if n == 1 else "".join(f"Frame{i + 1}: {IMAGE_TOKEN}\n" for i in range(n))
        listed = "\n".join(f"{_LETTERS[i]}. {t}" for i, t in enumerate(options))
        answer = _LETTERS[correct]  # type: ignore[index]
        conversation = [{"from": "human", "value": f"{frames}{question}\n{listed}\n{_MCQ_INSTRUCTION[lang]}"},
                        {"from": "gpt", "value": f"{answer}. {options[correct]}"}]  # type: ignore[index]
    provenance: dict[str, Any] = {
        **_base_provenance(loaded),
        "template": f"{spec.name}@{spec.version}",
        "llm_model": ctx.answers[task].model,
        **keys,
    }
    return Sample(key=sample_key(rec.source, rec.record_id, task, lang), source=rec.source,
                  modality=sample_modality(loaded), task=task, lang=lang, group=rec.uid,
                  question_type=QUESTION_TYPES[task], conversation=conversation, answer=answer, media=media,
                  options=options, provenance=provenance)


def _base_provenance(loaded: LoadedRecord) -> dict[str, Any]:
    rec = loaded.record
    return {"source_file": rec.primary_file, "sha256": loaded.file_sha256.get(rec.primary_file, ""), "converter": NAME}
