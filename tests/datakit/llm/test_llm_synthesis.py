"""LLM answers -> samples (the ``llm_enrich`` converter through the build's runner): content,
provenance, languages, and every rejection a ``Missing`` with its reason."""

from __future__ import annotations

import hashlib
import json

from datakit.converters.base import REJECTED
from datakit.converters.llm_enrich import llm_enrich, requests
from datakit.llm.runner import LLMRunner
from datakit.llm.validate import (
    ANSWER_IN_QUESTION, LABEL_MISSING, MALFORMED_JSON, MCQ_CORRECT_COUNT, MCQ_DUPLICATE_OPTIONS,
    REFUSAL, SCHEMA_VIOLATION, SOURCE_LEAK, TRANSLATION_NOT_CHINESE,
)
from datakit.registry import get_converter
from datakit.converters.base import ConvertContext
from fake_openai_server import Fault, canned_answer
from llm_records import context, enrich, label_record, video_record


def test_enriched_qa_gives_en_and_zh_samples_with_provenance(server, make_client):
    loaded = label_record(3, "malignant")
    [(samples, missing)] = enrich(make_client(server), [loaded], context("enriched_qa"))
    assert missing == []
    en, zh = sorted(samples, key=lambda s: s.lang)
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
    assert "- age:" not in prompt  # no patient metadata: the question must be answerable from the image


def test_video_mcq_options_are_seeded_and_one_is_correct(server, make_client):
    client = make_client(server)
    loaded = video_record(1, frames=3)
    [(a, _)] = enrich(client, [loaded], context("video_mcq", seed=1))
    [(b, _)] = enrich(client, [loaded], context("video_mcq", seed=1))
    assert [s.json_bytes() for s in a] == [s.json_bytes() for s in b]
    en = next(s for s in a if s.lang == "en")
    assert en.question_type == "mcq" and len(en.options) == 3 and len(en.media) == 3
    correct = en.options["ABC".index(en.answer)]
    assert correct == "Clip 1 shows a laparoscopic suturing step"
    human = en.conversation[0]["value"]
    assert human.count("<image>") == 3 and f"{en.answer}. {correct}" in human
    assert en.conversation[1]["value"] == f"{en.answer}. {correct}"  # as the label converter replies
    # Across records the correct letter moves: the model's habit of listing it first is undone.
    letters = {samples[0].answer for samples, _ in
               enrich(client, [video_record(i) for i in range(12)], context("video_mcq", langs=("en",)))}
    assert len(letters) > 1


def test_malformed_answer_is_rejected_counted_and_cached(server, make_client):
    client = make_client(server)
    server.inject(Fault("malformed"))
    [(samples, missing)] = enrich(client, [video_record(2)], context("video_mcq"))
    assert samples == [] and {(d.lang, d.status, d.reason) for d in missing} == {
        ("en", REJECTED, MALFORMED_JSON), ("zh", REJECTED, MALFORMED_JSON)}
    # The rejected answer is cached: a rebuild rejects it again without paying (and asks no translation).
    [(_, again)] = enrich(client, [video_record(2)], context("video_mcq"))
    assert [d.reason for d in again] == [MALFORMED_JSON] * 2 and server.requests == 1


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
    client = make_client(server)
    ctx = context("video_mcq", langs=("en",))
    for i, case in enumerate(_MCQ_CASES):
        [(samples, missing)] = enrich(client, [video_record(i, caption=f"case {case}. A clip.")], ctx)
        assert samples == [] and [d.reason for d in missing] == [_MCQ_CASES[case][2]], case
        assert missing[0].status == REJECTED and missing[0].llm_cache_key
    label_ctx = context("enriched_qa", langs=("en",))
    assert [d.reason for d in enrich(client, [label_record(1, "benign")], label_ctx)[0][1]] == [LABEL_MISSING]
    assert [d.reason for d in enrich(client, [label_record(2, "malignant")], label_ctx)[0][1]] == [SOURCE_LEAK]
    # A good English answer whose translation is not Chinese: the EN sample stays, the ZH one is dropped.
    [(samples, missing)] = enrich(client, [video_record(50)], context("video_mcq"))
    assert [s.lang for s in samples] == ["en"] and [(d.lang, d.reason) for d in missing] == [("zh", TRANSLATION_NOT_CHINESE)]


def test_every_planned_sample_is_emitted_or_dropped(server, make_client):
    server.schedule = lambda n: Fault("malformed") if n % 5 == 0 else None
    outcomes = enrich(make_client(server), [video_record(i) for i in range(20)], context("video_mcq"))
    for samples, missing in outcomes:
        assert sorted([s.lang for s in samples] + [d.lang for d in missing]) == ["en", "zh"]
    assert any(missing for _, missing in outcomes) and any(samples for samples, _ in outcomes)


def test_the_converter_declares_its_requests_in_rounds(server, make_client):
    """A capability, not a name the build knows: ``requests`` names the English request first,
    then (given its answer) the translation; the runner asks both rounds."""
    spec = get_converter("llm_enrich")
    assert spec.fn is llm_enrich and spec.requests is requests
    assert set(spec.tasks) == {"enriched_qa", "video_mcq", "cot_mcq"}
    loaded, ctx = label_record(1), ConvertContext(seed=1, tasks=("enriched_qa",))
    assert list(requests(loaded, ctx)) == ["enriched_qa"]
    [reply] = LLMRunner(make_client(server)).ask([requests(loaded, ctx)["enriched_qa"]])
    assert sorted(requests(loaded, ConvertContext(seed=1, tasks=("enriched_qa",), answers={"enriched_qa": reply}))) \
        == ["enriched_qa", "enriched_qa:zh"]
    assert len(enrich(make_client(server), [loaded], ctx)[0][0]) == 2


def test_translate_free_text_for_other_converters(server, make_client):
    from datakit.llm.replies import translated, translation_requests

    runner = LLMRunner(make_client(server))
    texts = ["A chest X-ray.", "No acute findings."]
    [reply] = runner.ask(list(translation_requests("zh", texts).values()))
    done = translated(ConvertContext(seed=1, tasks=(), answers={"zh": reply}), "zh", texts)
    assert done.parsed == ["译文：A chest X-ray.", "译文：No acute findings."] and done.cache_key
    server.inject(Fault("malformed"))
    [bad] = runner.ask(list(translation_requests("zh", ["Another report."]).values()))
    failed = translated(ConvertContext(seed=1, tasks=(), answers={"zh": bad}), "zh", ["Another report."])
    assert failed.parsed is None and (failed.status, failed.reason) == (REJECTED, MALFORMED_JSON)
