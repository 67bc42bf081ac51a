"""The chain-of-thought form of a multiple-choice sample, shared by every CoT source.

The paper adds "chain-of-thought (CoT) reasoning data to address the shortcut learning problem
prevalent in multiple-choice medical questions". Whether the chain comes from a release
(OpenMedReason) or from the LLM step (``datakit.llm.cot``), a CoT sample reads the same:

    human: <image>\\n<question with lettered options>\\n<COT_INSTRUCTION>
    gpt:   <think>\\n<reasoning>\\n</think>\\n<answer>B</answer>

the ``<think>``/``<answer>`` layout GRPO's format reward checks (stage 4), so stage 3 teaches the
form stage 4 rewards. ``parse_reply`` reads the letter back from a reply in that layout (or a
chain whose last line states the letter); a chain whose letter is not the gold one is rejected by
the caller, never emitted.
"""

from __future__ import annotations

import re

LETTERS = "ABCDEFGH"
COT_INSTRUCTION = {
    "en": "Reason step by step inside <think></think>, then give the letter of the correct option inside "
          "<answer></answer>.",
    "zh": "请先在<think></think>中逐步推理，再在<answer></answer>中给出正确选项的字母。",
}
_TAGGED = re.compile(r"^\s*<think>(?P<chain>.*?)</think>\s*<answer>\s*\(?(?P<letter>[A-H])\)?[.)]?\s*</answer>\s*$",
                     re.DOTALL)
_OPTION_LINE = re.compile(r"^\s*\(?([A-H])[.):：]\s*(\S.*?)\s*$")
# "... Answer: B", "Therefore, the answer is (B).", "答案：B"
_FINAL_LETTER = re.compile(r"(?:answer(?:\s+is)?|答案(?:是|为)?)\s*[:：]?\s*\(?([A-H])\)?[.)。]?\s*$", re.IGNORECASE)


def render_reply(reasoning: str, letter: str) -> str:
    """The gpt turn of a CoT sample."""
    if letter not in LETTERS:
        raise ValueError(f"option letter {letter!r} not in {LETTERS}")
    return f"<think>\n{reasoning.strip()}\n</think>\n<answer>{letter}</answer>"


def parse_reply(text: str) -> tuple[str, str] | None:
    """``(reasoning, letter)`` of a CoT reply: the tagged layout, or a chain whose last line
    ends by stating the letter; None when no final letter can be read."""
    m = _TAGGED.match(text)
    if m:
        chain = m.group("chain").strip()
        return (chain, m.group("letter")) if chain else None
    lines = text.strip().splitlines()
    if not lines:
        return None
    m = _FINAL_LETTER.search(lines[-1].strip())
    if not m:
        return None
    chain = "\n".join(lines[:-1]).strip()
    return (chain, m.group(1).upper()) if chain else None


def split_options(question: str) -> tuple[str, list[str]] | None:
    """A question's stem and its lettered options (one ``A. ...`` line each, letters in order),
    or None when fewer than two are found. Lines after the options (an instruction) are allowed."""
    stem: list[str] = []
    options: list[str] = []
    for line in question.splitlines():
        m = _OPTION_LINE.match(line)
        expected = LETTERS[len(options)] if len(options) < len(LETTERS) else None
        if m and m.group(1) == expected:
            options.append(m.group(2))
        elif options:
            break
        else:
            stem.append(line)
    text = "\n".join(stem).strip()
    return (text, options) if text and len(options) >= 2 else None
