"""LLM answers -> samples: content, provenance, languages, and every rejection counted."""

from __future__ import annotations

import hashlib
import json

from datakit.llm.synthesis import REJECTED, LLMSynthesizer, llm_enrich
from datakit.llm.validate import (
    ANSWER_IN_QUESTION, LABEL_MISSING, MALFORMED_JSON, MCQ_CORRECT_COUNT, MCQ_DUPLICATE_OPTIONS,
    REFUSAL, SCHEMA_VIOLATION, SOURCE_LEAK, TRANSLATION_NOT_CHINESE,
)
from datakit.registry import get_converter
from datakit.converters.base import ConvertContext
from fake_openai_server import Fault, canned_answer
from llm_records import context, label_record, video_record


def test_enriched_qa_gives_en_and_zh_samples_with_provenance(server, make_client):
    synth = LLMSynthesizer(make_client(server))
    loaded = label_record(3, "malignant")
    out = synth.synthesize(loaded, context("enriched_qa"))
    assert out.drops == []
    en, zh = sorted(out.samples, key=lambda s: s.lang)
    assert (en.lang, zh.lang) == ("en", "zh") and en.group == zh.group == loaded.record.uid
    assert en.answer == "The finding is malignant." and zh.answer == "译文：The finding is malignant."
    assert en.conversation[0]["value"].startswith("<image>\n") and en.media == loaded.media
    assert en.question_type == "open" and en.task == "enriched_qa"
    assert en.provenance["llm_cache_key"] == zh.provenance["llm_cache_key"]
    assert "llm_translation_cache_key" in zh.provenance and en.provenance["sha256"] == f"{3:064x}"
    # The image itself went to the model, and the prompt carried the verified label and the mask facts.
    assert server.image_sha256 == [hashlib.sha256(loaded.media[0].data).hexdigest()]
    prompt = server.bodies[0]["messages"][1]["content"][1]["text"]
    assert "Verified label: malignant" in prompt and "lesion: 1 separate region(s), 6.2%" in prompt


def test_video_mcq_options_are_seeded_and_one_is_correct(server, make_client):
    synth = LLMSynthesizer(make_client(server))
    loaded = video_record(1, frames=3)
    a = synth.synthesize(loaded, context("video_mcq", seed=1))
    b = synth.synthesize(loaded, context("video_mcq", seed=1))
    assert [s.json_bytes() for s in a.samples] == [s.json_bytes() for s in b.samples]
    en = next(s for s in a.samples if s.lang == "en")
    assert en.question_type == "mcq" and len(en.options) == 3 and len(en.media) == 3
    correct = en.options["ABC".index(en.answer)]
    assert correct == "Clip 1 shows a laparoscopic suturing step"
    human = en.conversation[0]["value"]
    assert human.count("<image>") == 3 and f"{en.answer}. {correct}" in human
    assert en.conversation[1]["value"] == f"{en.answer}. {correct}"  # as the label converter replies
    # Across records the correct letter moves: the model's habit of listing it first is undone.
    letters = {synth.synthesize(video_record(i), context("video_mcq", langs=("en",))).samples[0].answer
               for i in range(12)}
    assert len(letters) > 1


def test_malformed_answer_is_rejected_counted_and_cached(server, make_client):
    client = make_client(server)
    server.inject(Fault("malformed"))
    synth = LLMSynthesizer(client)
    out = synth.synthesize(video_record(2), context("video_mcq"))
    assert out.samples == [] and {(d.lang, d.status, d.reason) for d in out.drops} == {
        ("en", REJECTED, MALFORMED_JSON), ("zh", REJECTED, MALFORMED_JSON)}
    assert synth.summary()["validation"]["rejected"] == {f"video_mcq/{MALFORMED_JSON}": 1}
    # The rejected answer is cached: a rebuild rejects it again without paying.
    again = LLMSynthesizer(client).synthesize(video_record(2), context("video_mcq"))
    assert [d.reason for d in again.drops] == [MALFORMED_JSON] * 2 and server.requests == 1


_MCQ_CASES = {
    "two-correct": ([("Suturing", True), ("Stapling", True)], "What is done?", MCQ_CORRECT_COUNT),
    "duplicate": ([("Suturing", True), ("suturing.", False)], "What is done?", MCQ_DUPLICATE_OPTIONS),
    "copied": ([("Suturing", True), ("Stapling", False)], "Is suturing being done here?", ANSWER_IN_QUESTION),
    "leak": ([("Suturing", True), ("Stapling", False)], "Based on the caption, what is done?", SOURCE_LEAK),
    "refusal": ([("I cannot see the video", True), ("Stapling", False)], "What is done?", REFUSAL),
    "one-option": ([("Suturing", True)], "What is done?", SCHEMA_VIOLATION),
}


def _bad_answers(body: dict) -> str:
    """One faulty answer per case, chosen by the caption or label the request carries."""
    user = body["messages"][-1]["content"]
    if isinstance(user, list):  # label enrichment: [image, text]
        if "Verified label: benign" in user[1]["text"]:  # the answer does not state the label
            return json.dumps({"question": "What is seen?", "reasoning": "A round lesion.", "answer": "A lesion."})
        return json.dumps({"question": "What is seen?", "reasoning": "根据标注，这是恶性的。", "answer": "malignant"})
    for case, (options, question, _) in _MCQ_CASES.items():
        if f"case {case}." in user:
            return json.dumps({"question": question, "options": [{"text": t, "correct": c} for t, c in options]})
    if '"translations"' in body["messages"][0]["content"]:
        return json.dumps({"translations": ["untranslated"] * len(json.loads(user)["texts"])})
    return canned_answer(body)


def test_each_validation_failure_is_rejected_with_its_reason(server, make_client):
    server.answer = _bad_answers
    synth = LLMSynthesizer(make_client(server))
    ctx = context("video_mcq", langs=("en",))
    for i, case in enumerate(_MCQ_CASES):
        out = synth.synthesize(video_record(i, caption=f"case {case}. A clip."), ctx)
        assert out.samples == [] and [d.reason for d in out.drops] == [_MCQ_CASES[case][2]], case
    label_ctx = context("enriched_qa", langs=("en",))
    assert [d.reason for d in synth.synthesize(label_record(1, "benign"), label_ctx).drops] == [LABEL_MISSING]
    assert [d.reason for d in synth.synthesize(label_record(2, "malignant"), label_ctx).drops] == [SOURCE_LEAK]
    # A good English answer whose translation is not Chinese: the EN sample stays, the ZH one is dropped.
    out = synth.synthesize(video_record(50), context("video_mcq"))
    assert [s.lang for s in out.samples] == ["en"] and [d.reason for d in out.drops] == [TRANSLATION_NOT_CHINESE]

    rejected = synth.summary()["rejected"]
    expected = {r for _, _, r in _MCQ_CASES.values()} | {LABEL_MISSING, TRANSLATION_NOT_CHINESE}
    assert set(rejected) == expected and rejected[SOURCE_LEAK] == 2
    assert sum(rejected.values()) == len(_MCQ_CASES) + 3


def test_every_planned_sample_is_emitted_or_dropped(server, make_client):
    server.schedule = lambda n: Fault("malformed") if n % 5 == 0 else None
    synth = LLMSynthesizer(make_client(server))
    ctx = context("video_mcq")
    outcomes = list(synth.synthesize_many([video_record(i) for i in range(20)], ctx))
    for o in outcomes:
        assert sorted([s.lang for s in o.samples] + [d.lang for d in o.drops]) == ["en", "zh"]


def test_registered_converter_uses_the_builds_synthesizer(server, make_client):
    spec = get_converter("llm_enrich")
    assert spec.fn is llm_enrich and set(spec.tasks) == {"enriched_qa", "video_mcq", "cot_mcq"}
    synth = LLMSynthesizer(make_client(server))
    ctx = ConvertContext(seed=1, tasks=("enriched_qa",), options={"llm": synth})
    assert len(spec.fn(label_record(1), ctx)) == 2


def test_translate_free_text_for_other_converters(server, make_client):
    synth = LLMSynthesizer(make_client(server))
    done = synth.translate(["A chest X-ray.", "No acute findings."])
    assert done.texts == ["译文：A chest X-ray.", "译文：No acute findings."] and done.cache_key
    server.inject(Fault("malformed"))
    failed = synth.translate(["Another report."])
    assert failed.texts is None and (failed.status, failed.reason) == (REJECTED, MALFORMED_JSON)
