"""What a benchmark reader yields: one typed item per question (or per report / video summary).

Items are split-agnostic: a reader returns the items of whichever split it is asked for, so the
same reader serves evaluation (``split="test"``), decontamination and training sources built on a
benchmark's train split. An item names its media files; it does not decode them
(``datakit.benchmarks.media`` does, once, when a caller needs the pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

#: What an item asks for; it decides the prompt and the scoring rule.
TASKS = ("vqa", "mcq", "report", "summary")
#: How the release classes a VQA question (VQA-RAD and SLAKE label it; PathVQA by its answer).
ANSWER_TYPES = ("closed", "open")
#: What an item's media files are.
MEDIA_KINDS = ("image", "volume", "video")
LANGS = ("en", "zh")
LETTERS = "ABCDEFGH"


class BenchmarkLayoutError(ValueError):
    """A benchmark folder that does not hold the released layout; the message names the file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchItem:
    """One evaluation question (or report / summary) of a benchmark, as released.

    ``qid`` is the benchmark's own question id where it has one (SLAKE ``qid``, VQA-RAD ``qid``,
    OmniMedVQA ``question_id``), else a stable id from the released file and row. ``media`` are
    absolute paths: image files (``media_kind="image"``), one ``.npy`` volume, or one video clip.
    ``answer`` is the reference text; for multiple choice ``options`` hold the option texts
    without letters and ``answer_letter`` the letter of the right one.
    """

    benchmark: str
    qid: str
    split: str
    task: str
    media: tuple[Path, ...]
    question: str
    answer: str
    media_kind: str = "image"
    options: tuple[str, ...] = ()
    answer_letter: str | None = None
    answer_type: str | None = None
    lang: str = "en"
    modality: str | None = None
    root: Path | None = None  # the benchmark folder; media labels are relative to it
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"{self.benchmark} {self.qid}: task {self.task!r} not in {TASKS}")
        if self.answer_type is not None and self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"{self.benchmark} {self.qid}: answer_type {self.answer_type!r} not in {ANSWER_TYPES}")
        if self.media_kind not in MEDIA_KINDS:
            raise ValueError(f"{self.benchmark} {self.qid}: media_kind {self.media_kind!r} not in {MEDIA_KINDS}")
        if self.lang not in LANGS:
            raise ValueError(f"{self.benchmark} {self.qid}: lang {self.lang!r} not in {LANGS}")
        if self.task == "mcq":
            if len(self.options) < 2 or self.answer_letter is None:
                raise ValueError(f"{self.benchmark} {self.qid}: a multiple-choice item needs >= 2 options and a letter")
            if self.answer_letter not in LETTERS[: len(self.options)]:
                raise ValueError(f"{self.benchmark} {self.qid}: answer letter {self.answer_letter!r} "
                                 f"outside its {len(self.options)} options")

    @property
    def media_labels(self) -> tuple[str, ...]:
        """Media paths relative to the benchmark folder (as decontamination registers them)."""
        if self.root is None:
            return tuple(p.as_posix() for p in self.media)
        return tuple(_relative(p, self.root) for p in self.media)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def as_text(value: Any) -> str:
    """Released answers are sometimes numbers (VQA-RAD, SLAKE): compare them as text."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def require(record: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise BenchmarkLayoutError(f"{where}: missing key(s) {missing}; present: {sorted(record)[:12]}")


def check_split(benchmark: str, split: str, known: tuple[str, ...]) -> None:
    if split not in known:
        raise ValueError(f"{benchmark}: split {split!r} is not one of {known}")
