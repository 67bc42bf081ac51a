"""The sample contract between datakit and the trainer (DESIGN.md, "Shards").

On disk a sample is ``<key>.json`` plus its ordered media ``<key>.0.png``, ``<key>.1.jpg`` ...
(or ``<key>.0.mp4``). The JSON holds the InternVL-style conversation and the structured fields
below. ``megatron_fleming`` reads it through ``datakit.energon_format``; nothing else about the
tar layout is part of the contract.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from datakit.record import Media

SCHEMA = "fleming-vqa/1"
IMAGE_TOKEN = "<image>"
QUESTION_TYPES = frozenset({"mcq", "open", "yes_no", "caption", "summary", "report"})
LANGS = frozenset({"en", "zh"})
#: The one ``modality`` vocabulary of every sample (docs/data-quality.md): the imaging modality,
#: whatever the storage form, so a CT volume is "ct" whether it came from M3D or from NIfTI.
MODALITIES = frozenset({
    "ultrasound", "x-ray", "ct", "mri", "fundus", "clinical_photo", "dermoscopy", "pathology",
    "endoscopy", "microscopy", "oct", "video", "radiology", "mixed",
})
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def make_key(*parts: str) -> str:
    """Webdataset key from readable parts: lower-case, ``[a-z0-9_-]`` only, never a dot."""
    cleaned = [re.sub(r"[^a-z0-9]+", "_", p.lower()).strip("_") or "x" for p in parts]
    return "-".join(cleaned)


def sample_key(source: str, record_id: str, task: str, lang: str, index: int = 0) -> str:
    """The key of one sample: readable, plus a short hash of the record id so two ids that
    clean to the same text (``benign (1)`` / ``benign_1``) never collide."""
    digest = hashlib.sha1(record_id.encode("utf-8")).hexdigest()[:8]
    tail = make_key(digest, task, lang, *([str(index)] if index else []))
    # Keep keys short enough for a ustar member name ("<key>.<n>.<ext>" <= 100 bytes): the
    # readable part of a long record id is cut; the digest keeps the key unique.
    head = make_key(source, record_id)[: max(8, 80 - len(tail))].rstrip("_-")
    return f"{head}-{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One bilingual-VQA training sample (one language; its twin shares ``group``)."""

    key: str
    source: str
    modality: str
    task: str
    lang: str
    group: str
    question_type: str
    conversation: list[dict[str, str]]
    answer: str
    media: list[Media]
    options: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _KEY_RE.match(self.key):
            raise ValueError(f"sample key {self.key!r} must match [A-Za-z0-9_-]+ (no dots)")
        if self.lang not in LANGS:
            raise ValueError(f"sample {self.key}: lang {self.lang!r} not in {sorted(LANGS)}")
        if self.modality not in MODALITIES:
            raise ValueError(f"sample {self.key}: modality {self.modality!r} not in {sorted(MODALITIES)}")
        if self.question_type not in QUESTION_TYPES:
            raise ValueError(f"sample {self.key}: question_type {self.question_type!r} unknown")
        n_tokens = sum(turn["value"].count(IMAGE_TOKEN) for turn in self.conversation)
        if n_tokens != len(self.media):
            raise ValueError(
                f"sample {self.key}: {n_tokens} {IMAGE_TOKEN} tokens for {len(self.media)} media"
            )

    def media_parts(self) -> list[str]:
        """Webdataset part names of the media, in order: ``0.png``, ``1.png`` ..."""
        return [f"{i}.{m.ext}" for i, m in enumerate(self.media)]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "modality": self.modality,
            "task": self.task,
            "lang": self.lang,
            "group": self.group,
            "question_type": self.question_type,
            "conversations": self.conversation,
            "options": self.options,
            "answer": self.answer,
            "media": [
                {"part": part, "sha256": m.sha256, "width": m.width, "height": m.height}
                for part, m in zip(self.media_parts(), self.media)
            ],
            "provenance": self.provenance,
        }

    def json_bytes(self) -> bytes:
        return canonical_json(self.to_json_dict())

    def parts(self) -> list[tuple[str, bytes]]:
        """(part name, bytes) in the fixed order they are written to a tar."""
        out = [("json", self.json_bytes())]
        out.extend((part, m.data) for part, m in zip(self.media_parts(), self.media))
        return out


def canonical_json(obj: Any) -> bytes:
    """One byte form per value: sorted keys, no whitespace, UTF-8 (Chinese kept readable)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
