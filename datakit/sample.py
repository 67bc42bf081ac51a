"""The sample contract between datakit and the trainer (DESIGN.md, "Shards"; docs/multi-turn-samples.md).

On disk a sample is ``<key>.json`` plus its ordered media ``<key>.0.png``, ``<key>.1.jpg`` ...
(or ``<key>.0.mp4``). The JSON (schema ``fleming-vqa/2``) holds one InternVL-style conversation
of one or more question/answer turns over media stored once, and, per turn, the structured
fields (``turns[i]``: task, question_type, options, answer, provenance) aligned with the i-th
human/gpt pair. ``megatron_fleming`` reads it through ``datakit.energon_format``; nothing else
about the tar layout is part of the contract.

Converters make ``Sample``s: one question and answer over a record's media (``to_json_dict``
is that item's form, ``fleming-qa/1``, used inside a build). The merge joins a record's template
samples of one language into one conversation (``conversation_doc``); a recipe may keep them
single-turn, and a single-turn conversation is the same document with one turn.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from datakit.record import Media

SCHEMA = "fleming-vqa/2"  # a shard sample: a conversation of one or more turns
QA_SCHEMA = "fleming-qa/1"  # one converter-made question/answer (inside a build; GRPO items)
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
        """The one-QA item form (``QA_SCHEMA``); ``conversation_doc`` makes it a shard sample."""
        return {
            "schema": QA_SCHEMA,
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


# Fields of a QA item that describe its turn; the rest (source, modality, lang, group, media)
# belong to the whole conversation.
TURN_FIELDS = ("task", "question_type", "options", "answer")


def conversation_doc(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The shard sample (``SCHEMA``) of QA items (``Sample.to_json_dict()`` plus the item's
    ``key``) of one record, one language and the same media, in turn order. The first human turn keeps the media's
    ``<image>`` lines; later turns drop theirs (the conversation holds the media once). Provenance
    entries equal in every item go to the top; the rest stay with their turn."""
    if not items:
        raise ValueError(f"conversation {key}: no items")
    first = items[0]
    for it in items[1:]:
        for f in ("source", "modality", "lang", "group", "media"):
            if it[f] != first[f]:
                raise ValueError(f"conversation {key}: items differ in {f} ({first[f]!r} / {it[f]!r})")
    prefix = f"{IMAGE_TOKEN}\n" * len(first["media"])
    shared = dict(first["provenance"])
    for it in items[1:]:
        shared = {k: v for k, v in shared.items() if it["provenance"].get(k, object()) == v}
    conversation, turns = [], []
    for n, it in enumerate(items):
        human, gpt = it["conversations"]
        question = human["value"]
        if n:
            if not question.startswith(prefix):
                raise ValueError(f"conversation {key}: turn {n} does not open with its {len(first['media'])} "
                                 f"{IMAGE_TOKEN} line(s): {question[:60]!r}")
            question = question[len(prefix):]
        conversation += [{"from": "human", "value": question}, {"from": "gpt", "value": gpt["value"]}]
        turns.append({**{f: it[f] for f in TURN_FIELDS}, "key": it["key"],
                      "provenance": {k: v for k, v in it["provenance"].items() if k not in shared}})
    return {
        "schema": SCHEMA,
        "source": first["source"],
        "modality": first["modality"],
        "lang": first["lang"],
        "group": first["group"],
        "conversations": conversation,
        "turns": turns,
        "media": first["media"],
        "provenance": shared,
    }


def turn_docs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each turn of a shard sample as a single-turn shard sample of its own (key ``turns[i].key``),
    its question carrying the media's ``<image>`` lines again (GRPO prep asks one question at a
    time)."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} sample: schema {doc.get('schema')!r}")
    n_media = len(doc.get("media") or [])
    prefix = f"{IMAGE_TOKEN}\n" * n_media
    out = []
    convo = doc["conversations"]
    for n, turn in enumerate(doc["turns"]):
        question, answer = convo[2 * n]["value"], convo[2 * n + 1]["value"]
        if n:
            question = prefix + question
        out.append({**doc, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
                    "turns": [{**turn, "provenance": {}}],
                    "provenance": {**doc.get("provenance", {}), **turn.get("provenance", {})}})
    return out


def canonical_json(obj: Any) -> bytes:
    """One byte form per value: sorted keys, no whitespace, UTF-8 (Chinese kept readable)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
