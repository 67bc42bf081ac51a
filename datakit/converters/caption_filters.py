"""Caption cleaning and quality filters: what a caption must look like to become an answer.

``clean_caption`` removes what is never part of the description: HTML entities, control
characters and runs of whitespace, a leading figure label ("Figure 2:", "Fig. 3a", "FIG 1 -",
"Supplementary Figure S2.") and trailing citations ("[12]", "[3, 5-7]", "(Smith et al., 2019)",
"(ref. 4)"). It never rewrites words.

``check_caption`` then applies the quality filters of a ``CaptionPolicy`` and returns the cleaned
text with ``None``, or the reason it must be dropped. Reasons are stable codes, counted by the
build manifest; they are checked in this order:

``non_text_caption``    not a string, or no letter at all ("12345", "---")
``empty_caption``       nothing but whitespace
``boilerplate_caption`` only a figure label ("Figure 2."), or a placeholder ("IN PROGRESS", "N/A")
``mostly_non_letters``  fewer than ``min_letter_fraction`` of the non-space characters are letters
``caption_too_short``   fewer than ``min_words`` words
``caption_too_long``    more than ``max_words`` words (a full article section, not a caption)
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

REASONS = ("non_text_caption", "empty_caption", "boilerplate_caption", "mostly_non_letters",
           "caption_too_short", "caption_too_long")
# Placeholders seen in caption fields instead of a description, compared lower-case without
# punctuation. "in progress" is MedPix's marker for an unfinished case.
BOILERPLATE = ("in progress", "n a", "na", "none", "null", "nil", "image", "figure", "photo",
               "picture", "no caption", "caption", "see text", "see caption", "not available",
               "untitled", "click to enlarge", "click here to enlarge", "tbd", "todo")

_CONTROL = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200d\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")
_LABEL = re.compile(
    r"^(?:supplementary\s+|suppl\.?\s+|extended\s+data\s+)?"
    r"(?:figure|figs?|image|panel|plate)\.?\s*"
    r"s?\d+(?:[a-z](?![a-z])|\s*\([a-z]\)|\s+[a-z](?=\s*[.:|]))?"  # 2, 3a, S2, 2 (b), 2 B:
    r"(?:\s*[.:|)\-\u2013\u2014]\s*|\s+|$)",
    re.IGNORECASE,
)
_CITATIONS = (
    re.compile(r"\s*\[\s*\d+(?:\s*[,\u2013\-]\s*\d+)*\s*\](?P<end>[.]?)\s*$"),  # [12] [3, 5-7]
    re.compile(r"\s*\((?:[A-Z][\w'\-]+(?:\s+(?:et\s+al\.?|and|&)\s*(?:[A-Z][\w'\-]+)?)?,?\s*"
               r"(?:19|20)\d{2}[a-z]?(?:\s*;\s*)?)+\)(?P<end>[.]?)\s*$"),  # (Smith et al., 2019)
    re.compile(r"\s*\((?:refs?\.?|references?)\s*\d+(?:\s*[,\u2013\-]\s*\d+)*\)(?P<end>[.]?)\s*$",
               re.IGNORECASE),  # (ref. 4)
)
_WORD_CHARS = re.compile(r"[^\w]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptionPolicy:
    """Quality bounds of a caption; validated once, when a converter step is built."""

    min_words: int = 3
    max_words: int = 400
    min_letter_fraction: float = 0.5
    boilerplate: tuple[str, ...] = BOILERPLATE

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if not 0.0 <= self.min_letter_fraction <= 1.0:
            raise ValueError(f"min_letter_fraction must be in [0, 1], got {self.min_letter_fraction}")
        object.__setattr__(self, "boilerplate", tuple(_normal(b) for b in self.boilerplate))


def _normal(text: str) -> str:
    """Lower case, punctuation and spacing removed: how placeholders are compared."""
    return " ".join(_WORD_CHARS.sub(" ", text.lower()).split())


def clean_caption(text: str) -> str:
    """Whitespace, entities, leading figure label and trailing citations removed."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()
    label = _LABEL.match(text)
    if label:
        text = text[label.end():].lstrip()
        if text[:1].islower():
            text = text[0].upper() + text[1:]
    changed = True
    while changed:
        changed = False
        for pattern in _CITATIONS:
            m = pattern.search(text)
            if m and m.start() > 0:
                text = text[: m.start()].rstrip() + m.group("end")
                changed = True
    return text.strip()


def check_caption(value: Any, policy: CaptionPolicy) -> tuple[str, str | None]:
    """``(cleaned text, None)`` for a caption to keep, else ``(cleaned text, reason)``."""
    if not isinstance(value, str):
        return "", "non_text_caption"
    if not value.strip():
        return "", "empty_caption"
    text = clean_caption(value)
    if not text or _normal(text) in policy.boilerplate:
        return text, "boilerplate_caption"
    chars = [c for c in text if not c.isspace()]
    letters = sum(1 for c in chars if unicodedata.category(c).startswith("L"))
    if letters == 0:
        return text, "non_text_caption"
    if letters < policy.min_letter_fraction * len(chars):
        return text, "mostly_non_letters"
    words = len(text.split())
    if words < policy.min_words:
        return text, "caption_too_short"
    if words > policy.max_words:
        return text, "caption_too_long"
    return text, None
