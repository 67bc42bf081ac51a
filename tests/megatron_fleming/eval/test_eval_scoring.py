"""Scoring rules, summaries and the LLM judge (real ``openai`` client over HTTP to the local
OpenAI-compatible test server), with expectations worked out by hand; ``fleming eval score``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from datakit.benchmarks import read_benchmark
from datakit.benchmarks.samples import write_samples
from megatron_fleming.cli import main as fleming_main
from megatron_fleming.eval.judge import Judge, JudgeConfig
from megatron_fleming.eval.runner import load, read_responses, score
from megatron_fleming.eval.scoring import score_item

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "datakit" / "llm"))
from fake_openai_server import FakeOpenAIServer  # noqa: E402

KEY_ENV = "FLEMING_TEST_JUDGE_KEY"
SYNONYMS = {"mri": "magnetic resonance", "neutrophils": "polymorphonuclear"}


def fake_judge(body: dict) -> str:
    """Correct when the user's answer holds the standard answer (or its listed synonym); a reply
    without a verdict when the answer says GARBLE."""
    text = body["messages"][-1]["content"]
    ref = text.split("The standard answer: ", 1)[1].split("\n", 1)[0].strip().lower()
    got = text.split("The user's answer: ", 1)[1].split("\n", 1)[0].strip().lower()
    if "garble" in got:
        return "I am not sure."
    ok = ref in got or SYNONYMS.get(ref, "\0") in got
    return f"<think>compared</think>\n<judge>{0 if ok else 1}</judge>"


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    return write_samples(tmp_path_factory.mktemp("bench"), ("slake", "path_vqa", "pmc_vqa", "medvideo"))


@pytest.fixture
def judge_server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k-test")
    server = FakeOpenAIServer(answer=fake_judge).start()
    try:
        yield server
    finally:
        server.stop()


def write_responses(path: Path, answers: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"id": k, "response": v}, ensure_ascii=False) + "\n" for k, v in answers.items()))
    return path


SLAKE = {"11": "Yes", "12": "The answer is left lung.", "13": "magnetic resonance imaging", "14": "是的", "15": "右肺"}


def test_rules_per_item_type(samples):
    items = {i.qid: i for i in read_benchmark("pmc_vqa", samples["pmc_vqa"]).items}
    assert (score_item(items["1"], "B").rule, score_item(items["1"], "B").correct) == ("mcq_letter", True)
    assert score_item(items["1"], "hematoxylin and eosin").rule == "mcq_text"
    assert score_item(items["0"], "").correct is False  # no answer picks no option
    video = {i.qid: i for i in read_benchmark("medvideo", samples["medvideo"]).items}
    summary = score_item(video["lumen_0001#summary"], "an endoscope advances through a lumen")
    # tokens: 6 of the response in order within the 13-token reference: P = 6/6, R = 6/13
    assert summary.correct is None and summary.metrics["rouge_l"] == pytest.approx(2 * (6 / 13) / (1 + 6 / 13))


def test_slake_summary_by_hand(samples, tmp_path):
    read = load("slake", samples["slake"], "test", False)
    responses, missing = read_responses(write_responses(tmp_path / "r.jsonl", SLAKE), read.items)
    scores, summary, _ = score(read, responses, judge=None)
    assert missing == 0 and [s.correct for s in scores] == [True, True, False, True, False]
    assert summary["accuracy"] == {"n": 5, "correct": 3, "accuracy": 0.6}
    assert {k: v["correct"] for k, v in summary["by_answer_type"].items()} == {"closed": 2, "open": 1}
    assert {k: (v["correct"], v["n"]) for k, v in summary["by_lang"].items()} == {"en": (2, 3), "zh": (1, 2)}
    assert {k: (v["correct"], v["n"]) for k, v in summary["by_modality"].items()} == {"CT": (3, 3), "MRI": (0, 2)}
    assert summary["headline"] == {"accuracy": 60.0}


def test_judge_sees_only_open_answers_and_is_cached(samples, tmp_path, judge_server):
    cfg = JudgeConfig(base_url=judge_server.url, model="judge-test", cache_dir=tmp_path / "cache",
                      api_key_env=KEY_ENV, concurrency=2)
    read = load("slake", samples["slake"], "test", False)
    responses, _ = read_responses(write_responses(tmp_path / "r.jsonl", SLAKE), read.items)
    judge = Judge(cfg)
    scores, summary, _ = score(read, responses, judge)
    # SLAKE's yes/no questions (11, 14) keep their rule; MedEvalKit sends every SLAKE question to the judge.
    assert judge_server.requests == 3
    assert [s.rule for s in scores] == ["yes_no", "judge", "judge", "yes_no", "judge"]
    assert [s.correct for s in scores] == [True, True, True, True, False]  # 13: "magnetic resonance" = MRI
    assert summary["accuracy"]["correct"] == 4 and summary["judge"]["judged"] == 3
    judge.close()
    again = Judge(cfg)
    score(read, responses, again)
    assert judge_server.requests == 3 and again.summary()["cache_hits"] == 3
    again.close()


def test_pathvqa_closed_questions_survive_the_judge(samples, tmp_path, judge_server):
    # MedEvalKit issue 30: its PathVQA zeroes every closed question's score when the judge is on
    # (here it would be 1 of 3). Ours: 2 closed right by rule + 1 open right by the judge.
    cfg = JudgeConfig(base_url=judge_server.url, model="judge-test", cache_dir=tmp_path / "cache", api_key_env=KEY_ENV)
    read = load("path_vqa", samples["path_vqa"], "test", False)
    answers = {"test_0": "Yes.", "test_1": "polymorphonuclear cells", "test_2": "No"}
    responses, _ = read_responses(write_responses(tmp_path / "r.jsonl", answers), read.items)
    scores, summary, _ = score(read, responses, Judge(cfg))
    assert judge_server.requests == 1 and summary["accuracy"]["correct"] == 3
    assert summary["by_answer_type"]["closed"]["correct"] == 2
    answers["test_1"] = "GARBLE"
    responses, _ = read_responses(write_responses(tmp_path / "r.jsonl", answers), read.items)
    scores, summary, _ = score(read, responses, Judge(cfg))
    assert scores[1].correct is False and summary["judge_failed"] == 1


def test_score_cli_with_judge(samples, tmp_path, judge_server):
    responses = write_responses(tmp_path / "slake.jsonl", SLAKE)
    out = tmp_path / "out"
    assert fleming_main(["eval", "score", "--benchmark", "slake", "--data", str(samples["slake"]), "--responses",
                         str(responses), "--out", str(out), "--judge-model", "judge-test", "--judge-base-url",
                         judge_server.url, "--judge-api-key-env", KEY_ENV, "--judge-cache", str(tmp_path / "c")]) == 0
    summary = json.loads((out / "slake" / "summary.json").read_text())
    assert summary["accuracy"]["accuracy"] == pytest.approx(0.8)
    rows = [json.loads(line) for line in (out / "slake" / "items.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["11", "12", "13", "14", "15"]
    assert rows[2]["judge"]["verdict"] is True and rows[2]["judge"]["exact_match"] is False
    assert "| SLAKE | accuracy | 80.0 | 86.5 | -6.5 |" in (out / "table3.md").read_text()
    assert (out / "table3.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "judge.json").read_text())["requests_sent"] == 3


def test_judge_cache_defaults_to_the_output_folder_not_the_current_one(samples, tmp_path, judge_server,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    responses = write_responses(tmp_path / "slake.jsonl", SLAKE)
    args = ["eval", "score", "--benchmark", "slake", "--data", str(samples["slake"]), "--responses",
            str(responses), "--judge-model", "judge-test", "--judge-base-url", judge_server.url,
            "--judge-api-key-env", KEY_ENV]
    assert fleming_main([*args, "--out", str(tmp_path / "a")]) == 0
    assert any((tmp_path / "a" / "judge-cache").rglob("*")) and not (tmp_path / "work").exists()
    assert fleming_main([*args, "--out", str(tmp_path / "b")]) == 0  # its own cache: asks again
    assert json.loads((tmp_path / "b" / "judge.json").read_text())["requests_sent"] == 3


def test_responses_file_errors(samples, tmp_path):
    read = load("slake", samples["slake"], "test", False)
    with pytest.raises(ValueError, match="id '99' is not a question"):
        read_responses(write_responses(tmp_path / "r.jsonl", {"99": "x"}), read.items)
    responses, missing = read_responses(write_responses(tmp_path / "r.jsonl", {"11": "yes"}), read.items)
    assert missing == 4 and responses.texts["12"] == ""
