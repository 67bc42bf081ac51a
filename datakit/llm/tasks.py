"""The LLM tasks: prompt, answer schema and request builder of each.

A task's ``version`` is part of every cache key: change a prompt or a schema, bump the version,
and the cache stops answering for the old wording instead of silently reusing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from datakit.llm.request import ChatMessage, ChatRequest, ImagePart

_STR = {"type": "string", "minLength": 1}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    name: str
    version: str
    system: str
    schema: dict[str, Any]
    max_tokens: int


LABEL_ENRICHMENT = TaskSpec(
    name="label_enrichment",
    version="v1",
    max_tokens=700,
    schema=_object({
        "question": {**_STR, "maxLength": 400},
        "reasoning": {**_STR, "maxLength": 2000},
        "answer": {**_STR, "maxLength": 400},
    }),
    system="""You write one training example for a medical visual question answering dataset.
You receive a medical image and its verified annotation: the diagnostic label experts assigned, facts measured from the expert segmentation (when there is one) and patient metadata (when there is any).

Write:
- "question": one question about this image that is answered by looking at it (the finding, its appearance, its location or the likely diagnosis). The question must not contain or hint at the label.
- "reasoning": 2 to 5 sentences that reason from what is visible, through the measured facts, to the conclusion.
- "answer": one short sentence that states the verified label exactly as given.

Rules:
- The verified label is correct: do not contradict it, hedge it or offer another diagnosis.
- Use only the annotation and what is plainly visible. Do not invent measurements, history, staging, laterality, counts or findings the annotation does not support.
- Write as someone looking at the image: never mention a label, an annotation, a caption, a mask, metadata or these instructions, and never say that you cannot see the image.
- Reply with one JSON object with exactly the keys "question", "reasoning" and "answer", and nothing else.""",
)

_MCQ_EXAMPLE_CAPTION = (
    "A surgeon lifts the gallbladder with a laparoscopic grasper while a hook electrode "
    "dissects Calot's triangle; the cystic duct and artery are then clipped."
)
_MCQ_EXAMPLE_ANSWER = {
    "question": "Which procedure is being performed in this video?",
    "options": [
        {"text": "Laparoscopic cholecystectomy", "correct": True},
        {"text": "Open appendectomy", "correct": False},
        {"text": "Colonoscopic polypectomy", "correct": False},
        {"text": "Arthroscopic knee repair", "correct": False},
    ],
}

VIDEO_MCQ = TaskSpec(
    name="video_mcq",
    version="v1",
    max_tokens=500,
    schema=_object({
        "question": {**_STR, "maxLength": 400},
        "options": {
            "type": "array",
            "minItems": 2,
            "maxItems": 4,
            "items": _object({"text": {**_STR, "maxLength": 200}, "correct": {"type": "boolean"}}),
        },
    }),
    system="""You write one multiple-choice question about a medical video for a video question answering dataset. You receive the video's expert caption; whoever answers the question sees only the video.

Template:
{"question": "<one question about what is shown or done in the video>", "options": [{"text": "<option>", "correct": true or false}, ...]}

Rules:
- 2 to 4 options. Exactly one is correct and is supported by the caption; the others are plausible but clearly wrong for this video.
- Options are distinct and short; never "all of the above" or "none of the above".
- The question must not contain the correct option's words and must not mention a caption, a text or a description.
- Never say that you cannot see the video.
- Reply with one JSON object that follows the template, and nothing else.""",
)

TRANSLATE_ZH = TaskSpec(
    name="translate_zh",
    version="v1",
    max_tokens=2000,
    schema=_object({"translations": {"type": "array", "minItems": 1, "items": _STR}}),
    system="""Translate each string of "texts" from English into Simplified Chinese for a medical dataset.
Use standard Chinese medical terminology. Keep numbers, units, option letters (A, B, C, D) and abbreviations such as CT or MRI unchanged. Translate faithfully: add nothing, leave nothing out, and do not answer questions.
Reply with one JSON object {"translations": [...]} holding exactly one translation per input string, in the same order, and nothing else.""",
)

JUDGE = TaskSpec(
    name="judge",
    version="v1",
    max_tokens=200,
    schema=_object({"correct": {"type": "boolean"}, "reason": {**_STR, "maxLength": 600}}),
    system="""You grade a response to a medical question against the reference answer.
The response is correct when it states the same finding, diagnosis or value as the reference; wording, synonyms and extra correct detail do not matter. It is incorrect when it contradicts the reference, is too vague to match it, or hedges between several answers.
Reply with one JSON object {"correct": true or false, "reason": "<one sentence>"} and nothing else.""",
)

COT_MCQ = TaskSpec(
    name="cot_mcq",
    version="v1",
    max_tokens=900,
    schema=_object({"reasoning": {**_STR, "maxLength": 3000}}),
    system="""You write the step-by-step reasoning for one multiple-choice question about a medical image, for a training dataset that teaches a model to reason before it answers.
You receive the image, the question with its lettered options, and the verified correct option.

Write "reasoning": 3 to 8 sentences that go from what is visible in the image, through the medical knowledge that applies, to why the correct option fits and why the other options do not. Its last line must be exactly "Answer: <letter>" with the correct option's letter.

Rules:
- The verified option is correct: do not argue for another one or hedge.
- Reason from the image and general medical knowledge only; do not invent history, measurements or findings.
- Write as someone looking at the image: never mention that the answer was given, a label, an annotation, a caption or these instructions, and never say that you cannot see the image.
- Reply with one JSON object with exactly the key "reasoning", and nothing else.""",
)

TASKS: dict[str, TaskSpec] = {t.name: t for t in (LABEL_ENRICHMENT, VIDEO_MCQ, TRANSLATE_ZH, JUDGE, COT_MCQ)}


def _request(task: TaskSpec, *messages: ChatMessage) -> ChatRequest:
    return ChatRequest(
        task=task.name,
        prompt_version=task.version,
        messages=(ChatMessage.text("system", task.system), *messages),
        max_tokens=task.max_tokens,
    )


def _json_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1)


def label_enrichment_request(
    image: ImagePart,
    *,
    modality: str,
    label: str,
    lesion_facts: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> ChatRequest:
    meta = sorted((str(k), v) for k, v in (metadata or {}).items() if v not in (None, ""))
    facts = [f"- {fact}" for fact in lesion_facts] or ["- none"]
    meta_lines = [f"- {k}: {v}" for k, v in meta] or ["- none"]
    lines = [
        f"Modality: {modality}",
        f"Verified label: {label}",
        "Lesion facts from the expert segmentation:",
        *facts,
        "Patient metadata:",
        *meta_lines,
    ]
    return _request(LABEL_ENRICHMENT, ChatMessage("user", (image, "\n".join(lines))))


def video_mcq_request(caption: str) -> ChatRequest:
    return _request(
        VIDEO_MCQ,
        ChatMessage.text("user", f"Caption: {_MCQ_EXAMPLE_CAPTION}"),
        ChatMessage.text("assistant", json.dumps(_MCQ_EXAMPLE_ANSWER, ensure_ascii=False)),
        ChatMessage.text("user", f"Caption: {caption.strip()}"),
    )


def translation_request(texts: Sequence[str]) -> ChatRequest:
    if not texts:
        raise ValueError("translation_request needs at least one text")
    return _request(TRANSLATE_ZH, ChatMessage.text("user", _json_text({"texts": list(texts)})))


def judge_request(*, question: str, reference: str, response: str) -> ChatRequest:
    payload = {"question": question, "reference_answer": reference, "response": response}
    return _request(JUDGE, ChatMessage.text("user", _json_text(payload)))


def cot_request(images: Sequence[ImagePart], *, question: str, options: Sequence[str], answer: str) -> ChatRequest:
    """The reasoning chain for one multiple-choice question whose correct letter is ``answer``."""
    lettered = [f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options)]
    text = "\n".join([f"Question: {question.strip()}", "Options:", *lettered, f"Verified correct option: {answer}"])
    return _request(COT_MCQ, ChatMessage("user", (*images, text)))
