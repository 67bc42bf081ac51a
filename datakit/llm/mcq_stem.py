"""A multiple-choice stem asked open-ended: every reference to the removed options rewritten.

GRPO prep (``grpo_prep.mcq_to_open``) drops the lettered options of a multiple-choice question
and keeps its stem. A stem that still says "which of the options below", "choose the option",
"以下哪个选项" then asks about something the model no longer sees. ``open_stem`` rewrites the
forms our templates and the sources use into plain questions, in both languages;
``cites_options`` is the guard after it: a stem it still flags is dropped, never emitted
(``tests/datakit/llm/test_mcq_stem.py`` runs every multiple-choice phrasing of every template
bank through both).
"""

from __future__ import annotations

import re

# (pattern, replacement), applied in order. English patterns are case-insensitive; a
# replacement starting a sentence is capitalised afterwards.
_EN_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        # "Examine this scan and choose the correct answer. Q" -> "Examine this scan. Q"
        (r"\s*,?\s*and (?:choose|select|pick) the (?:correct|right|best) (?:answer|option|choice)\b", ""),
        # "..., which of the options below is correct?" -> "..., what does it show?"
        (r"\bwhich (?:one )?(?:of the )?(?:options?|choices?|answers?)(?: (?:below|above|given|listed|shown))? "
         r"(?:is|are) (?:correct|right|true|best)\b", "what does it show"),
        # "Choose the option that best matches what X shows." -> "What does X show?"
        (r"^(?:choose|select|pick) the (?:option|answer|choice) that (?:best )?(?:matches|fits|describes) "
         r"what (.+?) shows?\s*[.?]?$", r"what does \1 show?"),
        (r"^(?:choose|select|pick) the (?:option|answer|choice) that (?:best )?(matches|fits|describes)\b",
         r"what best \1"),
        # "Select the correct diagnosis for this image." -> "What is the correct diagnosis for ...?"
        (r"^(?:choose|select|pick|identify|determine) the ([^.?]+?)\s*[.?]?$", r"what is the \1?"),
        # "which of the following (options)" -> "what"
        (r"\bwhich of the following(?: (?:options?|choices?|answers?))?\b", "what"),
    )
)
_ZH_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"并(?:请)?选择正确(?:的)?(?:答案|选项)", ""),
        (r"(?:以下|下列|下面)?哪(?:一)?个选项是正确的", "显示的是什么"),
        (r"请选择与(.+?)最相符的(?:选项|答案)[。.？?]?$", r"与\1最相符的诊断是什么？"),
        (r"请为(.+?)选择正确的(.+?)[。.？?]?$", r"\1的正确\2是什么？"),
        (r"^请(?:选择|确定|判断)(.+?)[。.？?]?$", r"\1是什么？"),
        (r"(?:以下|下列|下面)(?:选项中)?哪(?:一)?[个项种]", "什么"),
        (r"哪一项", "什么"),
    )
)
_CITES_EN = re.compile(
    r"\b(?:options?|choices?|the following|(?:answers?|items?) (?:below|above|listed|given)"
    r"|(?:correct|right|best) answer|letter)\b",
    re.IGNORECASE,
)
_CITES_ZH = re.compile(r"选项|以下|下列|字母|正确答案|哪一项")


_SENTENCE_END = re.compile(r"(\n|(?<=[.?!])[ \t]+|(?<=[。？！]))")


def _rewrite_sentence(sentence: str) -> str:
    out = sentence
    for pattern, replacement in _EN_RULES + _ZH_RULES:
        out = pattern.sub(replacement, out)
    return out[:1].upper() + out[1:] if out and out != sentence else out


def open_stem(stem: str) -> str:
    """``stem`` (the question without its lettered options and instruction) as an open question.

    Rules apply per sentence (and line), so an anchored rule ("Choose the option that ...") matches a
    sentence wherever it stands in the stem; both languages' rules run on every stem (a Chinese
    sample may quote an English question, and the other language's rules never match)."""
    pieces = _SENTENCE_END.split(stem)  # sentences at even positions, their separators between
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(piece)
            continue
        rewritten = _rewrite_sentence(piece)
        if rewritten.strip() or not piece.strip():
            out.append(rewritten)
        elif out:
            out.pop()  # a sentence rewritten away takes its separator with it
    return "".join(out).strip()


def cites_options(text: str) -> bool:
    """Whether ``text`` still refers to a list of options (in either language)."""
    return bool(_CITES_EN.search(text) or _CITES_ZH.search(text))
