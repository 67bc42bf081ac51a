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

The second sample kind, ``InterleavedSample`` (schema ``fleming-interleaved/1``), is a document
of text with its images in place (stage-1 pretraining): no question, no answer, no turns; a
recipe's shards hold one kind only (``dataset.yaml`` names it).
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
#: The second sample kind: a document of text with images in place (stage-1 pretraining).
INTERLEAVED_SCHEMA = "fleming-interleaved/1"
IMAGE_TOKEN = "<image>"
QUESTION_TYPES = frozenset({"mcq", "open", "yes_no", "caption", "summary", "report"})
#: What dedup and the manifest call an interleaved document in place of a question type.
INTERLEAVED = "interleaved"
LANGS = frozenset({"en", "zh"})
#: The one ``modality`` vocabulary of every sample (docs/data-quality.md): the imaging modality,
#: whatever the storage form, so a CT volume is "ct" whether it came from M3D or from NIfTI.
#: Two are not medical: "web" (general-domain web images, MMC4's interleaved documents) and
#: "synthetic" (generated data such as the GRPO toy task, never a real source).
MODALITIES = frozenset({
    "ultrasound", "x-ray", "ct", "mri", "fundus", "clinical_photo", "dermoscopy", "pathology",
    "endoscopy", "microscopy", "oct", "video", "radiology", "mixed", "web", "synthetic",
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


def _check_identity(key: str, lang: str, modality: str) -> None:
    if not _KEY_RE.match(key):
        raise ValueError(f"sample key {key!r} must match [A-Za-z0-9_-]+ (no dots)")
    if lang not in LANGS:
        raise ValueError(f"sample {key}: lang {lang!r} not in {sorted(LANGS)}")
    if modality not in MODALITIES:
        raise ValueError(f"sample {key}: modality {modality!r} not in {sorted(MODALITIES)}")


def _media_parts(media: list[Media]) -> list[str]:
    return [f"{i}.{m.ext}" for i, m in enumerate(media)]


def _media_rows(media: list[Media]) -> list[dict[str, Any]]:
    return [{"part": part, "sha256": m.sha256, "width": m.width, "height": m.height}
            for part, m in zip(_media_parts(media), media)]


def _shared_fields(sample: Sample | InterleavedSample) -> dict[str, Any]:
    """The JSON fields both sample kinds carry (identity, media rows, provenance)."""
    return {"source": sample.source, "modality": sample.modality, "task": sample.task,
            "lang": sample.lang, "group": sample.group, "media": _media_rows(sample.media),
            "provenance": with_normalisation(sample.provenance, sample.media)}


def _tar_parts(json_bytes: bytes, media: list[Media]) -> list[tuple[str, bytes]]:
    """The JSON first, then the media in order: the fixed order a sample is written to a tar."""
    return [("json", json_bytes), *((part, m.data) for part, m in zip(_media_parts(media), media))]


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
        _check_identity(self.key, self.lang, self.modality)
        if self.question_type not in QUESTION_TYPES:
            raise ValueError(f"sample {self.key}: question_type {self.question_type!r} unknown")
        n_tokens = sum(turn["value"].count(IMAGE_TOKEN) for turn in self.conversation)
        if n_tokens != len(self.media):
            raise ValueError(
                f"sample {self.key}: {n_tokens} {IMAGE_TOKEN} tokens for {len(self.media)} media"
            )

    def media_parts(self) -> list[str]:
        """Webdataset part names of the media, in order: ``0.png``, ``1.png`` ..."""
        return _media_parts(self.media)

    def to_json_dict(self) -> dict[str, Any]:
        """The one-QA item form (``QA_SCHEMA``); ``conversation_doc`` makes it a shard sample."""
        return {
            **_shared_fields(self),
            "schema": QA_SCHEMA,
            "question_type": self.question_type,
            "conversations": self.conversation,
            "options": self.options,
            "answer": self.answer,
        }

    def json_bytes(self) -> bytes:
        return canonical_json(self.to_json_dict())

    def parts(self) -> list[tuple[str, bytes]]:
        """(part name, bytes) in the fixed order they are written to a tar."""
        return _tar_parts(self.json_bytes(), self.media)

    def shard_parts(self) -> list[tuple[str, bytes]]:
        """The parts of this one QA as a shard sample of its own (a one-turn ``SCHEMA``
        conversation), for tools that write an energon dataset without the merge step."""
        doc = conversation_doc(self.key, [{**self.to_json_dict(), "key": self.key}])
        return _tar_parts(canonical_json(doc), self.media)


@dataclass(frozen=True, slots=True, kw_only=True)
class InterleavedSample:
    """One document of text and images in document order (MMC4-style pretraining); no
    question or answer. ``text`` holds one ``<image>`` marker at the place of each medium, in
    ``media`` order; the trainer puts the loss on every text token.

    On disk it is ``<key>.json`` (schema ``fleming-interleaved/1``) plus ``<key>.0.jpg`` ...,
    exactly as a VQA sample; a recipe's shards hold one kind only (``dataset.yaml`` names it).
    """

    key: str
    source: str
    modality: str
    task: str
    lang: str
    group: str
    text: str
    media: list[Media]
    provenance: dict[str, Any] = field(default_factory=dict)

    schema = INTERLEAVED_SCHEMA
    question_type = INTERLEAVED

    def __post_init__(self) -> None:
        _check_identity(self.key, self.lang, self.modality)
        n_tokens = self.text.count(IMAGE_TOKEN)
        if n_tokens != len(self.media) or not self.media:
            raise ValueError(f"sample {self.key}: {n_tokens} {IMAGE_TOKEN} markers for {len(self.media)} "
                             "media (a document holds at least one image, one marker each)")
        if not self.text.replace(IMAGE_TOKEN, "").strip():
            raise ValueError(f"sample {self.key}: a document needs text besides its {IMAGE_TOKEN} markers")

    def plain_text(self) -> str:
        """The document's words without the image markers: what near-text dedup compares."""
        return " ".join(self.text.replace(IMAGE_TOKEN, " ").split())

    def media_parts(self) -> list[str]:
        return _media_parts(self.media)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            **_shared_fields(self),
            "schema": INTERLEAVED_SCHEMA,
            "text": self.text,
        }

    def json_bytes(self) -> bytes:
        return canonical_json(self.to_json_dict())

    def parts(self) -> list[tuple[str, bytes]]:
        return _tar_parts(self.json_bytes(), self.media)
# Fields of a QA item that describe its turn; the rest (source, modality, lang, group, media)
# belong to the whole conversation.
TURN_FIELDS = ("task", "question_type", "options", "answer")


def conversation_doc(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The shard sample (``SCHEMA``) of QA items (``Sample.to_json_dict()`` plus the item's
    ``key``) of one record, one language and the same media, in turn order. The first human turn
    keeps the media's ``<image>`` lines; later turns drop theirs (the conversation holds the media
    once). Provenance entries equal in every item go to the top; the rest stay with their turn.

    A released conversation of several question/answer pairs (``converters.conversations``) is
    one item, alone in its sample: each pair is a turn, in the release's order; its task applies
    to every turn, its options and answer to the last (earlier turns: their reply, and ``open``
    where the conversation's type is a closed one); turn ``j > 0`` is keyed ``<key>-turn<j>`` and
    marked ``follows_previous`` (it may refer to what was said before)."""
    if not items:
        raise ValueError(f"conversation {key}: no items")
    first = items[0]
    for it in items[1:]:
        for f in ("source", "modality", "lang", "group", "media"):
            if it[f] != first[f]:
                raise ValueError(f"conversation {key}: items differ in {f} ({first[f]!r} / {it[f]!r})")
        if len(it["conversations"]) != 2:
            raise ValueError(f"conversation {key}: item {it['key']} of several turns joined with others")
    prefix = f"{IMAGE_TOKEN}\n" * len(first["media"])
    shared = dict(first["provenance"])
    for it in items[1:]:
        shared = {k: v for k, v in shared.items() if it["provenance"].get(k, object()) == v}
    conversation, turns = [], []
    for n, it in enumerate(items):
        human, gpt = it["conversations"][:2]
        question = human["value"]
        if n:
            if not question.startswith(prefix):
                raise ValueError(f"conversation {key}: turn {n} does not open with its {len(first['media'])} "
                                 f"{IMAGE_TOKEN} line(s): {question[:60]!r}")
            question = question[len(prefix):]
        provenance = {k: v for k, v in it["provenance"].items() if k not in shared}
        conversation += [{"from": "human", "value": question}, {"from": "gpt", "value": gpt["value"]}]
        turns += _item_turns(it, provenance)
        conversation += it["conversations"][2:]
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


def _item_turns(item: dict[str, Any], provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``turns`` entries of one item: one, or one per pair of a released conversation."""
    last = {**{f: item[f] for f in TURN_FIELDS}, "key": item["key"], "provenance": provenance}
    pairs = len(item["conversations"]) // 2
    if pairs == 1:
        return [last]
    open_type = "open" if item["question_type"] in ("mcq", "yes_no") else item["question_type"]
    out = [{"task": item["task"], "question_type": open_type, "options": None,
            "answer": item["conversations"][2 * j + 1]["value"], "key": item["key"], "provenance": provenance}
           for j in range(pairs - 1)] + [last]
    for j in range(1, pairs):  # a later turn may refer to the earlier ones: never asked alone
        out[j] = {**out[j], "key": f"{item['key']}-turn{j}", "follows_previous": True}
    return out


def turn_docs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each turn of a shard sample as a single-turn shard sample of its own (key ``turns[i].key``),
    its question carrying the media's ``<image>`` lines again (GRPO prep asks one question at a
    time); a turn that ``follows_previous`` is left out (not answerable alone)."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} sample: schema {doc.get('schema')!r}")
    n_media = len(doc.get("media") or [])
    prefix = f"{IMAGE_TOKEN}\n" * n_media
    out = []
    convo = doc["conversations"]
    for n, turn in enumerate(doc["turns"]):
        if turn.get("follows_previous"):  # a released conversation's later turn needs its context
            continue
        question, answer = convo[2 * n]["value"], convo[2 * n + 1]["value"]
        if n:
            question = prefix + question
        out.append({**doc, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
                    "turns": [{**turn, "provenance": {}}],
                    "provenance": {**doc.get("provenance", {}), **turn.get("provenance", {})}})
    return out


def with_normalisation(provenance: dict[str, Any], media: list[Media]) -> dict[str, Any]:
    """``provenance`` plus ``normalisation``, one entry per medium, when any medium is an image
    read through ``datakit.normalise`` (stored as read, or how it was changed)."""
    notes = [m.normalisation for m in media]
    if not any(n is not None for n in notes):
        return provenance
    return {**provenance, "normalisation": [dict(n) if n else None for n in notes]}


def canonical_json(obj: Any) -> bytes:
    """One byte form per value: sorted keys, no whitespace, UTF-8 (Chinese kept readable)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
