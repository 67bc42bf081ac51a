"""Chain-of-thought for multiple-choice samples (llm_enrich task ``cot_mcq``) inside a real build,
through the real ``openai`` client and the local OpenAI-compatible test server: EN chains ending in
the gold letter, ZH chains translated for the Chinese twins, a chain that concludes another letter
rejected and counted, a warm-cache rebuild with no request, offline builds counting skipped_llm."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from datakit.build import build
from datakit.cot import parse_reply
from datakit.llm.config import LLMConfig
from datakit.llm.validate import COT_NO_FINAL_LETTER, COT_WRONG_LETTER, check_cot
from datakit.recipe import load_recipe
from datakit.shard_writer import iter_samples
from fake_openai_server import FakeOpenAIServer, canned_answer
from llm_records import KEY_ENV

RECIPE = {
    "name": "knee_cot", "seed": 7, "val_fraction": 0.0, "samples_per_shard": 100,
    "dedup": {"near_image": False},  # keep every knee drawing: this test counts CoT per MCQ
    "sources": [{"source": "knee_xray", "options": {"expert": "MedicalExpert-I"}, "convert": [
        {"converter": "labels", "tasks": ["diagnosis_mcq"]},
        {"converter": "llm_enrich", "tasks": ["cot_mcq"]},
    ]}],
}


def _recipe(tmp_path: Path):
    path = tmp_path / "knee_cot.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return load_recipe(path)


def _cfg(tmp_path: Path, url: str | None) -> LLMConfig:
    return LLMConfig(cache_dir=tmp_path / "cache", base_url=url, model="test-model", api_key_env=KEY_ENV,
                     concurrency=2, timeout_s=5.0, max_attempts=2, backoff_initial_s=0.005)


def _docs(out: Path) -> dict[str, dict]:
    """Every shard sample (``fleming-vqa/2``) by key, with its one turn's fields at the top: each
    sample here holds one question (the knee MCQ alone in its record, the CoT single-turn)."""
    docs = {k: json.loads(p["json"]) for tar in sorted(out.glob("*/*.tar")) for k, p in iter_samples(tar)}
    assert all(len(d["turns"]) == 1 for d in docs.values())
    return {k: {**d, **d["turns"][0], "provenance": {**d["provenance"], **d["turns"][0]["provenance"]}}
            for k, d in docs.items()}


def test_cot_samples_end_in_the_gold_letter_in_both_languages(tmp_path, server, api_key, sample_sources):
    result = build(_recipe(tmp_path), sample_sources, tmp_path / "a", llm_config=_cfg(tmp_path, server.url))
    docs = _docs(tmp_path / "a")
    mcq = {k: d for k, d in docs.items() if d["task"] == "diagnosis_mcq"}
    cot = {k: d for k, d in docs.items() if d["task"] == "cot_mcq"}
    assert len(mcq) == 10 and len(cot) == len(mcq)  # one CoT per MCQ, EN and ZH, each its own sample
    assert result.summary["langs"] == {"en": 10, "zh": 10}
    for d in cot.values():
        twin = next(m for m in mcq.values() if m["group"] == d["group"] and m["lang"] == d["lang"])
        chain, letter = parse_reply(d["conversations"][1]["value"])
        assert letter == d["answer"] == twin["answer"] and d["options"] == twin["options"]
        assert d["question_type"] == "mcq" and d["provenance"]["converter"] == "llm_enrich"
        assert d["conversations"][0]["value"].split("\n")[:-1] == twin["conversations"][0]["value"].split("\n")[:-1]
        assert d["media"] == twin["media"] and d["provenance"]["llm_cache_key"]
        if d["lang"] == "zh":
            assert chain.startswith("译文：") and "llm_translation_cache_key" in d["provenance"]
    # each CoT request carried the image and the verified letter
    cot_bodies = [b for b in server.bodies if "Verified correct option" in json.dumps(b)]
    assert len(cot_bodies) == 5 and all("image_url" in json.dumps(b) for b in cot_bodies)
    sent = server.requests
    again = build(_recipe(tmp_path), sample_sources, tmp_path / "b", llm_config=_cfg(tmp_path, server.url))
    assert server.requests == sent and again.release_sha256 == result.release_sha256  # warm cache


def test_a_chain_concluding_another_letter_is_rejected_and_counted(tmp_path, api_key, sample_sources):
    def wrong_letter(body: dict) -> str:
        user = json.dumps(body["messages"][-1])
        gold = re.search(r"Verified correct option: ([A-H])", user)
        if gold:
            other = "B" if gold.group(1) == "A" else "A"
            return json.dumps({"reasoning": f"It looks like the other grade.\nAnswer: {other}"})
        return canned_answer(body)

    with FakeOpenAIServer(answer=wrong_letter) as srv:
        result = build(_recipe(tmp_path), sample_sources, tmp_path / "w", llm_config=_cfg(tmp_path, srv.url))
    assert "cot_mcq" not in result.summary["tasks"]
    rows = pl.read_parquet(tmp_path / "w" / "manifest.parquet").filter(pl.col("status") == "rejected")
    assert rows.height == 10 and set(rows["reason"]) == {COT_WRONG_LETTER}  # EN + ZH of 5 MCQs
    assert set(rows["task"]) == {"cot_mcq"} and set(rows["id"].str.extract(r"#llm_enrich/(\w+)/")) == {"cot_diagnosis_mcq"}
    # one CoT request per MCQ (5), no translation of a rejected chain
    assert result.summary["llm"]["client"]["requests_sent"] == 5


def test_offline_build_counts_cot_as_skipped_llm(tmp_path, api_key, sample_sources):
    result = build(_recipe(tmp_path), sample_sources, tmp_path / "o", llm_config=_cfg(tmp_path, None))
    assert "cot_mcq" not in result.summary["tasks"] and result.summary["tasks"]["diagnosis_mcq"] == 10
    assert result.summary["accounting"]["samples"]["skipped_llm"] == 10


def test_an_unexpected_error_in_a_batched_llm_step_costs_one_record(tmp_path, api_key, sample_sources, monkeypatch):
    """The records of an LLM step are converted together at the end of a slice; one that fails
    unexpectedly is one internal_error row, and the rest of the batch is converted."""
    import datakit.converters.llm_enrich as llm_enrich

    real = llm_enrich.cot_outputs
    victim = {}

    def flaky(loaded, ctx, provenance):
        victim.setdefault("uid", loaded.record.uid)
        if loaded.record.uid == victim["uid"]:
            raise KeyError("no such field")
        return real(loaded, ctx, provenance)

    monkeypatch.setattr(llm_enrich, "cot_outputs", flaky)
    result = build(_recipe(tmp_path), sample_sources, tmp_path / "o", llm_config=_cfg(tmp_path, None))
    rows = pl.read_parquet(tmp_path / "o" / "manifest.parquet").filter(pl.col("reason") == "internal_error")
    assert rows["record_uid"].to_list() == [victim["uid"]] and rows["detail"][0] == "KeyError: 'no such field'"
    assert result.summary["internal_errors"]["count"] == 1 and result.summary["tasks"]["diagnosis_mcq"] == 8
    with pytest.raises(KeyError, match="no such field"):
        build(_recipe(tmp_path), sample_sources, tmp_path / "strict", llm_config=_cfg(tmp_path, None), strict=True)


@pytest.mark.parametrize("reasoning, gold, verdict", [
    ("Round and smooth.\nAnswer: B", "B", ""),
    ("<think>Round and smooth.</think><answer>C</answer>", "C", ""),
    ("Round and smooth.\nAnswer: A", "B", COT_WRONG_LETTER),
    ("Round and smooth, so B.", "B", COT_NO_FINAL_LETTER),
])
def test_check_cot(reasoning, gold, verdict):
    assert check_cot({"reasoning": reasoning}, gold=gold).reason == verdict
