"""Checks every LLM answer passes before it becomes a sample, each failure a stable reason code.

Order of checks: JSON at all, then the task's JSON schema (strict: no missing, extra or mistyped
keys), then refusals and source leaks in any text of the answer (English and Chinese), then the
task's own rules (one correct option, distinct options, answer not given away by the question,
the verified label stated, one Chinese translation per input). The first failure is the verdict.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from jsonschema import Draft202012Validator

from datakit.llm.tasks import TASKS

MALFORMED_JSON = "malformed_json"
SCHEMA_VIOLATION = "schema_violation"
REFUSAL = "refusal"
SOURCE_LEAK = "source_leak"  # the text admits it was written from a caption / label
ANSWER_IN_QUESTION = "answer_in_question"
LABEL_MISSING = "label_missing"
MCQ_CORRECT_COUNT = "mcq_correct_count"
MCQ_DUPLICATE_OPTIONS = "mcq_duplicate_options"
TRANSLATION_COUNT = "translation_count_mismatch"
TRANSLATION_NOT_CHINESE = "translation_not_chinese"
COT_NO_FINAL_LETTER = "cot_no_final_letter"
COT_WRONG_LETTER = "cot_wrong_letter"

_SOURCES_EN = r"captions?|labels?|annotations?|descriptions?|metadata|transcripts?|masks?|(?:provided|given) (?:text|information)"
_LEAK = re.compile(
    "|".join([
        rf"\b(?:based on|according to|per|from|as (?:stated|described|mentioned|noted) in) (?:the |this |its )?(?:video |image |provided |given |expert )?(?:{_SOURCES_EN})\b",
        rf"\bthe (?:video |image |provided |given )?(?:{_SOURCES_EN}) (?:says|states|indicates|mentions|describes|notes|shows)\b",
        r"\bground[- ]truth\b",
        r"(?:根据|依据|基于|按照)(?:视频|图像|图片|所给|提供的)?(?:的)?(?:字幕|标题|说明|描述|标注|标签|注释|元数据|图注|文字)",
        r"(?:字幕|标注|标签|描述|说明)(?:中)?(?:提到|显示|指出|表明|称|写道)",
        r"真实标签|金标准标签",
    ]),
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    "|".join([
        r"\bI (?:cannot|can't|can not|am unable to|am not able to|'m unable to|do not have the ability to) (?:see|view|access|analy[sz]e|interpret|examine|open|watch|determine|provide|help|assist)\b",
        r"\bas an AI\b",
        r"\bas an? (?:large )?language model\b",
        r"\bI'?m sorry\b|\bI am sorry\b|\bI apologi[sz]e\b",
        r"\bno (?:image|video) (?:is|was|has been) (?:provided|attached|shared)\b",
        r"作为(?:一个|一名)?(?:AI|人工智能|语言模型|大语言模型)",
        r"我(?:无法|不能|没法|没有办法)(?:看到|看见|查看|观看|访问|分析|打开|提供|确定|判断|协助)",
        r"(?:无法|不能)(?:查看|看到)(?:该|这张|这个)?(?:图像|图片|视频)",
        r"抱歉|对不起",
    ]),
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
_VALIDATORS = {name: Draft202012Validator(spec.schema) for name, spec in TASKS.items()}


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str = ""  # empty: accepted
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


ACCEPTED = Verdict()


def normalise(text: str) -> str:
    """Comparison form: NFKC, case-folded, single spaces, no edge punctuation."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text.strip(" .,;:!?。，；：！？\"'()[]（）")


def mentions(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words (as a substring for Chinese)."""
    p, t = normalise(phrase), normalise(text)
    if not p:
        return False
    if _CJK.search(p):
        return p in t
    return re.search(rf"(?<!\w){re.escape(p)}(?!\w)", t) is not None


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _strings(value)


def check_schema(task: str, parsed: Any) -> Verdict:
    if parsed is None:
        return Verdict(MALFORMED_JSON, "the answer is not one JSON document")
    errors = sorted(_VALIDATORS[task].iter_errors(parsed), key=lambda e: ([str(p) for p in e.path], e.message))
    error = errors[0] if errors else None
    if error is not None:
        where = "/".join(str(p) for p in error.path) or "<root>"
        return Verdict(SCHEMA_VIOLATION, f"{where}: {error.message[:200]}")
    return ACCEPTED


def check_text(parsed: Any) -> Verdict:
    for text in _strings(parsed):
        if m := _REFUSAL.search(text):
            return Verdict(REFUSAL, m.group(0))
        if m := _LEAK.search(text):
            return Verdict(SOURCE_LEAK, m.group(0))
    return ACCEPTED


def check_label_enrichment(parsed: dict[str, Any], *, label: str) -> Verdict:
    if mentions(parsed["question"], label):
        return Verdict(ANSWER_IN_QUESTION, f"the question names the label {label!r}")
    if not mentions(parsed["answer"], label):
        return Verdict(LABEL_MISSING, f"the answer does not state the label {label!r}")
    return ACCEPTED


def check_video_mcq(parsed: dict[str, Any]) -> Verdict:
    options = parsed["options"]
    correct = [o["text"] for o in options if o["correct"]]
    if len(correct) != 1:
        return Verdict(MCQ_CORRECT_COUNT, f"{len(correct)} options marked correct, need exactly 1")
    texts = [normalise(o["text"]) for o in options]
    if len(set(texts)) != len(texts):
        return Verdict(MCQ_DUPLICATE_OPTIONS, "two options read the same")
    if mentions(parsed["question"], correct[0]):
        return Verdict(ANSWER_IN_QUESTION, "the question contains the correct option")
    return ACCEPTED


def check_translation(parsed: dict[str, Any], *, sources: Sequence[str]) -> Verdict:
    out = parsed["translations"]
    if len(out) != len(sources):
        return Verdict(TRANSLATION_COUNT, f"{len(out)} translations for {len(sources)} texts")
    for i, (src, dst) in enumerate(zip(sources, out)):
        if _LATIN.search(src) and not _CJK.search(dst):
            return Verdict(TRANSLATION_NOT_CHINESE, f"translation {i} has no Chinese text")
    return ACCEPTED


def check_cot(parsed: dict[str, Any], *, gold: str) -> Verdict:
    """The chain must end by stating a letter, and that letter must be the gold one."""
    from datakit.cot import parse_reply

    reply = parse_reply(parsed["reasoning"])
    if reply is None:
        return Verdict(COT_NO_FINAL_LETTER, "the reasoning does not end with 'Answer: <letter>'")
    if reply[1] != gold:
        return Verdict(COT_WRONG_LETTER, f"the reasoning concludes {reply[1]}, the gold answer is {gold}")
    return ACCEPTED


def validate(task: str, parsed: Any, **context: Any) -> Verdict:
    """The verdict on one answer of ``task``; ``context`` carries what the rules compare against
    (``label`` for label enrichment, ``sources`` for translation, ``gold`` for CoT)."""
    verdict = check_schema(task, parsed)
    if not verdict.ok or task == "judge":
        return verdict
    verdict = check_text(parsed)
    if not verdict.ok:
        return verdict
    if task == "label_enrichment":
        return check_label_enrichment(parsed, label=context["label"])
    if task == "video_mcq":
        return check_video_mcq(parsed)
    if task == "translate_zh":
        return check_translation(parsed, sources=context["sources"])
    if task == "cot_mcq":
        return check_cot(parsed, gold=context["gold"])
    raise KeyError(f"no validation rules for task {task!r}; known: {sorted(TASKS)}")


class ValidationStats:
    """Accepted answers and rejections by (task, reason); shared by worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[tuple[str, str]] = Counter()

    def record(self, task: str, verdict: Verdict) -> Verdict:
        with self._lock:
            if verdict.ok:
                self.accepted[task] += 1
            else:
                self.rejected[(task, verdict.reason)] += 1
        return verdict

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "accepted": dict(sorted(self.accepted.items())),
                "rejected": {f"{t}/{r}": n for (t, r), n in sorted(self.rejected.items())},
            }
