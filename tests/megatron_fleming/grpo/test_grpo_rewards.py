"""GRPO rewards: the format template, accuracy by question type through the evaluation's answer
parser (English and Chinese letter phrases), and open answers through the LLM judge over HTTP to
the local OpenAI-compatible test server (real ``openai`` client): success, timeout, malformed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from megatron_fleming.eval.answers import match_choice, reference_letter
from megatron_fleming.eval.judge import Judge, JudgeConfig
from megatron_fleming.grpo.rewards import AnswerKey, RewardScorer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "datakit" / "llm"))
from fake_openai_server import Fault, FakeOpenAIServer  # noqa: E402

OPTIONS = ("lung", "liver", "heart", "kidney", "brain")
KEY_ENV = "FLEMING_TEST_GRPO_JUDGE_KEY"


@pytest.mark.parametrize("response,letter", [
    ("B", "B"), ("(C)", "C"), ("The correct option is (C).", "C"), ("I choose B", "B"),
    ("B is correct", "B"), ("Option E is the best", "E"), ("the answer is option D", "D"),
    ("答案是B", "B"), ("选B", "B"), ("故选C", "C"), ("应选D", "D"), ("选项C正确", "C"),
    ("正确选项为C", "C"), ("正确答案：D。", "D"), ("我选择B。", "B"), ("（B）", "B"),
    ("<think>the liver is shown</think><answer>B</answer>", "B"),
    # no letter: a sentence starting with "A", two letters named, nothing at all
    ("A lesion is seen", None), ("option B or option C", None), ("It could be anything", None),
])
def test_grpo_letter_patterns_english_and_chinese(response, letter):
    got = match_choice(response, OPTIONS, nearest=False)
    assert got.letter == letter
    assert got.rule == ("letter" if letter else "none")


def test_grpo_reference_letter():
    assert [reference_letter(a, OPTIONS) for a in ("B", "(c)", "B. liver", "Heart", "F", "B. heart")] \
        == ["B", "C", "B", "C", None, None]


def test_grpo_format_and_accuracy_rewards():
    scorer = RewardScorer(format_weight=0.5, accuracy_weight=1.0)
    mcq = AnswerKey("mcq", "B", OPTIONS, "Which organ?")
    yes = AnswerKey("yes_no", "yes", (), "Is there a mass?")
    zh = AnswerKey("yes_no", "否", (), "有肿块吗？")
    open_ = AnswerKey("open", "Left lung", (), "Where is the nodule?")
    cases = [
        (mcq, "<think>bright organ under the ribs</think><answer>B</answer>", 1, 1),
        (mcq, "<think>x</think> <answer>The answer is (B)</answer>\n", 1, 1),
        (mcq, "<think>x</think><answer>C</answer>", 1, 0),
        (mcq, "B", 0, 1),
        (mcq, "<think>x</think><answer>livers</answer>", 1, 0),  # the nearest option earns nothing
        (mcq, "<think>x</think><answer>B</answer><answer>C</answer>", 0, 0),  # two answers: neither
        (mcq, "<think></think><answer>B</answer>", 0, 1),  # empty reasoning breaks the template
        (mcq, "<think>a<think>b</think><answer>B</answer>", 0, 1),
        (yes, "<think>x</think><answer>Yes, there is.</answer>", 1, 1),
        (yes, "<answer>yes and no</answer>", 0, 0),
        (zh, "<think>未见</think><answer>没有</answer>", 1, 1),
        (open_, "<think>x</think><answer>left lung.</answer>", 1, 1),
        (open_, "<think>x</think><answer>the left lung</answer>", 1, 0),  # no judge: not exact = 0
    ]
    out = scorer.score([c[0] for c in cases], [c[1] for c in cases])
    assert out.format.tolist() == [float(c[2]) for c in cases]
    assert out.accuracy.tolist() == [float(c[3]) for c in cases]
    assert out.total.tolist() == [0.5 * c[2] + c[3] for c in cases]
    assert out.counts == {"mcq": 8, "yes_no": 3, "open_exact": 1, "open_unjudged": 1}
    custom = RewardScorer(format_weight=1.0, accuracy_weight=0.0, format_pattern=r"\s*Answer: .+")
    assert custom.score([mcq, mcq], ["Answer: B", "<answer>B</answer>"]).total.tolist() == [1.0, 0.0]


def _judge_answer(body: dict) -> str:
    text = body["messages"][-1]["content"]
    ref = text.split("The standard answer: ", 1)[1].split("\n", 1)[0].strip().lower()
    got = text.split("The user's answer: ", 1)[1].split("\n", 1)[0].strip().lower()
    if "garble" in got:
        return "I cannot tell."
    return f"<think>compared</think>\n<judge>{0 if ref in got else 1}</judge>"


def test_grpo_judge_success_timeout_malformed(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k-test")
    key = AnswerKey("open", "pneumothorax", (), "What does the X-ray show?")
    with FakeOpenAIServer(answer=_judge_answer) as server:
        config = JudgeConfig(base_url=server.url, model="judge-test", cache_dir=tmp_path / "cache",
                             api_key_env=KEY_ENV, concurrency=1, timeout_s=0.5, max_attempts=1)
        judge = Judge(config)
        scorer = RewardScorer(format_weight=0.0, accuracy_weight=1.0, judge=judge)
        responses = ["<answer>a large right pneumothorax</answer>",  # judged correct
                     "<answer>pleural effusion</answer>",  # judged incorrect
                     "<answer>pneumothorax</answer>",  # exact: the judge is not asked
                     "<answer>GARBLE</answer>",  # a reply without a verdict
                     "<answer>tension pneumothorax</answer>",  # the request hangs: timeout
                     "<answer>collapsed lung, pneumothorax</answer>"]  # malformed reply
        faults = {3: Fault("hang", seconds=3.0), 4: Fault("malformed")}
        server.schedule = lambda n: faults.get(n)
        out = scorer.score([key] * len(responses), responses)
        assert out.accuracy.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        assert out.counts == {"judge_correct": 1, "judge_incorrect": 1, "open_exact": 1,
                              "judge_failed_no_judge_tag": 2, "judge_failed_llm_timeout": 1}
        assert server.requests == 5
        # Answers are cached: scoring the successes again asks nothing; the failures ask again.
        server.schedule = None
        again = scorer.score([key] * 3, responses[:3])
        assert again.accuracy.tolist() == [1.0, 0.0, 1.0] and server.requests == 5
        twice = scorer.score([key] * 2, [responses[0]] * 2)  # each verdict is counted
        assert twice.counts == {"judge_correct": 2} and server.requests == 5
        judge.close()
