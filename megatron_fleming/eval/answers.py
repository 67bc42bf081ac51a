"""Reading an answer out of a model's response: the rules MedEvalKit scores with, done right.

Pure functions on strings, shared by evaluation and the GRPO accuracy reward (`grpo.rewards`):

* ``extract_answer``: the answer span — the last ``\\boxed{...}``, else the ``<answer>`` tags,
  else the text after the last answer marker ("answer:", "the answer is", "final answer",
  "**Answer**", "答案：", "答案是", "最终答案"...), else the whole response.
* ``judge_yes_no``: a closed question is right when exactly one polarity (yes or no, 是 or 否)
  appears in the answer span, as whole words, and it is the reference's.
* ``match_choice``: multiple choice — the option letter (alone, or named by a common English or
  Chinese phrase: "option B", "I choose B", "B is correct", "选B", "故选C", "正确选项为C"), then an
  option's text, then the most similar option (``difflib`` ratio, as MedEvalKit; off for the
  GRPO reward, where a guess must not earn credit); never a choice for an empty answer.
* ``reference_letter``: the letter of a multiple-choice reference given as a letter, ``B. text``
  or the option's text.
* ``exact_match``: open questions, equal after ``normalise``.
* ``parse_judge``: the ``<judge>0|1</judge>`` verdict of the LLM judge (0 = correct, MedEvalKit's
  convention).

Where these differ from MedEvalKit's ``utils/utils.py`` (substring yes/no tests, no punctuation
normalisation, option A for an empty response...) is listed in ``docs/evaluation.md``.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

LETTERS = "ABCDEFGH"

_BOXED = re.compile(r"\\boxed\s*\{")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
# Longest first, so "the final answer is" wins over "answer is".
_MARKERS = sorted([
    "**answer**:", "**answer:**", "**answer**", "*answer*:", "final answer is", "final answer:", "final answer",
    "the answer is", "answer is", "answer:", "答案是", "答案为", "答案:", "最终答案是", "最终答案", "正确答案是",
], key=len, reverse=True)
_EDGE = " \t\r\n.,;:!?。，；：！？、\"'`*()[]{}（）【】「」《》"


def normalise(text: str) -> str:
    """Comparison form: NFKC (full-width to ASCII), case-folded, one space between words, no
    punctuation, quotes or markdown at either end."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text.strip(_EDGE)


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, braces balanced; None when there is none."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i]
    return None


def extract_answer(response: str, *, markers: bool = True) -> str:
    """The answer span of a response (see the module docstring), stripped; with
    ``markers=False`` only ``\\boxed{}`` and ``<answer>`` are looked for (what the judge reads)."""
    text = response or ""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    tags = _ANSWER_TAG.findall(text)
    if tags:
        text = tags[-1]
    if not markers:
        return text.strip()
    lowered = unicodedata.normalize("NFKC", text).casefold()
    best = -1, ""
    for marker in _MARKERS:
        at = lowered.rfind(marker)
        if at > best[0]:
            best = at, marker
    if best[0] >= 0:
        text = unicodedata.normalize("NFKC", text)[best[0] + len(best[1]):].strip().lstrip(":：")
    return text.strip()


# ---------------------------------------------------------------- closed (yes / no)

_YES_EN, _NO_EN = re.compile(r"\byes\b"), re.compile(r"\bno\b")
_NO_ZH = re.compile(r"不是|没有|否|不|无")
_YES_ZH = re.compile(r"是|有")
YES_NO = {"yes": "yes", "no": "no", "是": "yes", "否": "no", "是的": "yes", "不是": "no"}


def polarity(reference: str) -> str | None:
    """``"yes"``/``"no"`` when the reference answer is a yes/no answer (English or Chinese)."""
    return YES_NO.get(normalise(reference))


def answer_polarity(span: str) -> str | None:
    """The one polarity a response span states, or None (neither, or both)."""
    text = normalise(span)
    no_zh = bool(_NO_ZH.search(text))
    yes_zh = bool(_YES_ZH.search(_NO_ZH.sub(" ", text)))
    yes = bool(_YES_EN.search(text)) or yes_zh
    no = bool(_NO_EN.search(text)) or no_zh
    if yes == no:
        return None
    return "yes" if yes else "no"


def judge_yes_no(reference: str, response: str) -> tuple[bool, str | None]:
    """(correct, the polarity read) for a closed question whose reference is yes/no."""
    want = polarity(reference)
    if want is None:
        raise ValueError(f"reference {reference!r} is not a yes/no answer")
    got = answer_polarity(extract_answer(response))
    return got == want, got


# ---------------------------------------------------------------- multiple choice

# A capital letter alone, or followed by punctuation ("B.", "(B)", "B:", "选项B"); "A lesion..." is
# a sentence, not option A.
_LEADING_LETTER = re.compile(r"^(?:(?i:option|choice)\s*|选项\s*|选\s*)?[(\[]?([A-H])(?:[)\].:：、,，。]|\s*$)")


# A letter named by a phrase: "option B", "answer: (C)", "I choose B", "B is correct", "选B",
# "故选C", "选项C正确", "正确选项为C", "答案为B". Each has one group: the letter.
_LETTER_PHRASES = (
    re.compile(r"(?i:\b(?:option|choice)\s*(?:is\s*)?[:：]?\s*)[(\[]?([A-H])(?![A-Za-z])"),
    re.compile(r"(?i:\b(?:choose|chose|pick|select)\s+(?:option\s+)?)[(\[]?([A-H])(?![A-Za-z])"),
    re.compile(r"^[(\[]?([A-H])[)\]]?\s+(?i:is\s+(?:the\s+)?(?:correct|right|best|answer))"),
    re.compile(r"(?:选项|选择|应选|故选|选)\s*[(（\[]?([A-H])(?![A-Za-z])"),
    re.compile(r"(?:答案|选项)\s*(?:应该是|应为|是|为)?\s*[:：]?\s*[(（\[]?([A-H])(?![A-Za-z])"),
)


def _letter_named(text: str, n: int) -> str | None:
    """The one option letter (of the first `n`) that the phrases name; None if none or several."""
    found = {m.group(1) for p in _LETTER_PHRASES for m in p.finditer(text)}
    found &= set(LETTERS[:n])
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True, slots=True)
class Choice:
    """The option a response picks: its letter, and how it was read (or ``rule="none"``)."""

    letter: str | None
    rule: str  # "letter" | "text" | "nearest" | "none"
    similarity: float | None = None


def match_choice(response: str, options: tuple[str, ...] | list[str], *,
                 nearest: bool = True) -> Choice:
    """Which of ``options`` (texts, in letter order) the response picks; with ``nearest=False``
    only a letter or an option's text counts (``rule="none"`` otherwise)."""
    n = len(options)
    span = extract_answer(response)
    flat = " ".join(unicodedata.normalize("NFKC", span).split())
    bare = flat.strip("*`\"' ")
    m = _LEADING_LETTER.match(bare) or _LEADING_LETTER.match(bare.upper() if len(bare) == 1 else "")
    if m and m.group(1) in LETTERS[:n]:
        return Choice(m.group(1), "letter")
    named = _letter_named(flat, n)
    if named is not None:
        return Choice(named, "letter")
    target = normalise(span)
    if not target:
        return Choice(None, "none")
    texts = [normalise(o) for o in options]
    equal = [i for i, t in enumerate(texts) if t and t == target]
    if len(equal) == 1:
        return Choice(LETTERS[equal[0]], "text")
    # Whole-word containment for Latin text; Chinese has no spaces, so any containment counts.
    contained = [i for i, t in enumerate(texts) if t and re.search(rf"(?<![a-z0-9]){re.escape(t)}(?![a-z0-9])", target)]
    if len(contained) == 1:
        return Choice(LETTERS[contained[0]], "text")
    if not nearest:
        return Choice(None, "none")
    ratios = [difflib.SequenceMatcher(None, t, target).ratio() for t in texts]
    best = max(range(n), key=lambda i: (ratios[i], -i))
    if ratios[best] <= 0.0:
        return Choice(None, "none", 0.0)
    return Choice(LETTERS[best], "nearest", ratios[best])


def reference_letter(answer: str, options: tuple[str, ...] | list[str]) -> str | None:
    """The letter of the right option when the reference is a letter (``B``, ``(B)``), a lettered
    option (``B. text``) or an option's text; None when it names none of the options."""
    text = " ".join(unicodedata.normalize("NFKC", answer or "").split())
    m = re.fullmatch(r"[(\[]?([A-Ha-h])[)\]]?(?:[.:：、)]\s*(.*))?", text, re.S)
    if m:
        i = LETTERS.index(m.group(1).upper())
        if i < len(options) and (not m.group(2) or normalise(m.group(2)) == normalise(options[i])):
            return LETTERS[i]
    target = normalise(text)
    equal = [i for i, o in enumerate(options) if normalise(o) == target]
    return LETTERS[equal[0]] if len(equal) == 1 else None


# ---------------------------------------------------------------- open questions and the judge

def exact_match(reference: str, response: str) -> tuple[bool, str]:
    """(correct, the normalised answer span) for an open question."""
    got = normalise(extract_answer(response))
    return got == normalise(reference), got


_JUDGE = re.compile(r"<judge>\s*(.*?)\s*</judge>", re.S | re.I)


def parse_judge(text: str | None) -> bool | None:
    """The judge's verdict: ``<judge>0</judge>`` correct, ``<judge>1</judge>`` incorrect
    (MedEvalKit's convention); None when the reply holds no such verdict."""
    found = _JUDGE.findall(text or "")
    if not found:
        return None
    return {"0": True, "1": False}.get(found[-1].strip())
