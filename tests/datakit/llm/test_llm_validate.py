"""Validation rules on their own: schema, refusals and leaks in both languages, task rules."""

from __future__ import annotations

import pytest

from datakit.llm.validate import (
    ANSWER_IN_QUESTION, LABEL_MISSING, MALFORMED_JSON, MCQ_CORRECT_COUNT, MCQ_DUPLICATE_OPTIONS,
    REFUSAL, SCHEMA_VIOLATION, SOURCE_LEAK, TRANSLATION_COUNT, TRANSLATION_NOT_CHINESE, ValidationStats,
    mentions, validate,
)


def _mcq(question: str = "Which step is shown?", *options: tuple[str, bool]) -> dict:
    options = options or (("Suturing", True), ("Stapling", False), ("Irrigation", False))
    return {"question": question, "options": [{"text": t, "correct": c} for t, c in options]}


def _qa(question: str = "What is the likely diagnosis?", reasoning: str = "A spiculated mass.",
        answer: str = "The lesion is malignant.") -> dict:
    return {"question": question, "reasoning": reasoning, "answer": answer}


@pytest.mark.parametrize(
    ("task", "parsed", "context", "reason"),
    [
        ("video_mcq", _mcq(), {}, ""),
        ("video_mcq", None, {}, MALFORMED_JSON),
        ("video_mcq", {"question": "Q?"}, {}, SCHEMA_VIOLATION),
        ("video_mcq", {**_mcq(), "answer": "A"}, {}, SCHEMA_VIOLATION),
        ("video_mcq", _mcq("Q?", *[(f"o{i}", i == 0) for i in range(5)]), {}, SCHEMA_VIOLATION),
        ("video_mcq", _mcq("Q?", ("Suturing", False), ("Stapling", False)), {}, MCQ_CORRECT_COUNT),
        ("video_mcq", _mcq("Q?", ("Suturing", True), ("  SUTURING ", False)), {}, MCQ_DUPLICATE_OPTIONS),
        ("video_mcq", _mcq("Is suturing shown in the clip?"), {}, ANSWER_IN_QUESTION),
        ("video_mcq", _mcq("According to the caption, which step is shown?"), {}, SOURCE_LEAK),
        ("video_mcq", _mcq("The caption says a step is shown; which?"), {}, SOURCE_LEAK),
        ("video_mcq", _mcq("根据字幕，视频中进行的是哪一步？"), {}, SOURCE_LEAK),
        ("label_enrichment", _qa(), {"label": "malignant"}, ""),
        ("label_enrichment", _qa(question="Is this malignant mass irregular?"), {"label": "malignant"}, ANSWER_IN_QUESTION),
        ("label_enrichment", _qa(answer="It is a lesion."), {"label": "malignant"}, LABEL_MISSING),
        ("label_enrichment", _qa(answer="It looks abnormal."), {"label": "normal"}, LABEL_MISSING),
        ("label_enrichment", _qa(reasoning="According to the label, it is malignant."), {"label": "malignant"}, SOURCE_LEAK),
        ("label_enrichment", _qa(reasoning="Based on the provided annotation the mass is malignant."), {"label": "malignant"}, SOURCE_LEAK),
        ("label_enrichment", _qa(reasoning="I cannot see the image, but it is malignant."), {"label": "malignant"}, REFUSAL),
        ("label_enrichment", _qa(reasoning="As an AI, I think it is malignant."), {"label": "malignant"}, REFUSAL),
        ("translate_zh", {"translations": ["低回声肿块。"]}, {"sources": ["A hypoechoic mass."]}, ""),
        ("translate_zh", {"translations": ["作为一个AI，我无法看到图像。"]}, {"sources": ["x ray"]}, REFUSAL),
        ("translate_zh", {"translations": ["抱歉，无法翻译。"]}, {"sources": ["x ray"]}, REFUSAL),
        ("translate_zh", {"translations": ["根据标注，这是恶性的。"]}, {"sources": ["It is malignant."]}, SOURCE_LEAK),
        ("translate_zh", {"translations": ["一", "二"]}, {"sources": ["one"]}, TRANSLATION_COUNT),
        ("translate_zh", {"translations": ["A hypoechoic mass."]}, {"sources": ["A hypoechoic mass."]}, TRANSLATION_NOT_CHINESE),
        ("translate_zh", {"translations": ["42"]}, {"sources": ["42"]}, ""),
        ("judge", {"correct": True, "reason": "Same diagnosis."}, {}, ""),
        ("judge", {"correct": "yes", "reason": "Same diagnosis."}, {}, SCHEMA_VIOLATION),
    ],
)
def test_validate(task, parsed, context, reason):
    assert validate(task, parsed, **context).reason == reason


def test_mentions_respects_word_boundaries_and_chinese():
    assert mentions("Is this tissue normal?", "normal")
    assert not mentions("Is this tissue abnormal?", "normal")
    assert mentions("这是恶性病变吗？", "恶性")


def test_stats_count_each_reason():
    stats = ValidationStats()
    for parsed in (None, None, _mcq()):
        stats.record("video_mcq", validate("video_mcq", parsed))
    assert stats.summary() == {"accepted": {"video_mcq": 1}, "rejected": {"video_mcq/malformed_json": 2}}
