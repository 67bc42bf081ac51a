"""What the public instruction sets share: JSON rows, conversation checks, dialogue facts.

PubMedVision, LLaVA-Med and Quilt-LLaVA ship LLaVA-style records (``id``, ``image``,
``conversations: [{"from": "human"|"gpt", "value": ...}]``); VQA-Med-2019, MIMIC-CXR-VQA and
OpenMedReason ship question/answer rows that their readers turn into one-turn conversations. Either
way a loaded record carries ``facts["dialogues"]``: one entry per sample the ``conversations``
converter will emit, holding the turns (one ``<image>`` per record image), the task (``caption``,
``instruction``, ``vqa`` or ``cot``), question type, answer, options and the row it came from.

Conversation rules (``check_turns``), each failure a stable reason the manifest counts:

* ``empty_conversation``: no turns, or a turn whose value is blank;
* ``bad_conversation``: a turn that is not ``{"from": "human"|"gpt", "value": str}``, roles that
  do not alternate human, gpt, human, ... and end on gpt, or an ``<image>`` in a gpt turn;
* ``image_token_mismatch``: the human turns hold ``<image>`` markers but not one per image. A
  conversation with no marker at all gets one per image at the start of its first human turn
  (where InternVL's SFT data puts them); LLaVA's own ``…\\n<image>`` suffix form is kept as is.

Loading (``load_dialogues``) reads each record image through the reader's one normalisation
(``SourceReader.read_image``), so these sets honour ``max_pixels``/``max_side`` and record
``provenance.normalisation`` like every other source.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.sample import IMAGE_TOKEN

if TYPE_CHECKING:
    from datakit.sources.base import SourceReader

ROLES = ("human", "gpt")
TASKS = ("caption", "instruction", "vqa", "cot")
YES_NO = frozenset({"yes", "no", "是", "否"})
#: Extensions of the image files these releases hold, and of their JSON row files (lower case).
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"})
JSON_EXTS = frozenset({".json", ".jsonl"})

Row = tuple[str, Any, str, str]  # (place, parsed object or None, reason, detail)


def read_json_rows(path: Path, rel: str) -> Iterator[Row]:
    """Every object of a JSON list (``rel[i]``) or JSON Lines file (``rel:line``), or the reason
    a row (or the whole file) cannot be read: ``bad_json``, ``non_utf8``, ``unreadable_file``."""
    try:
        data = path.read_bytes()
    except OSError as e:
        yield rel, None, "unreadable_file", e.strerror or str(e)
        return
    if path.suffix.lower() == ".jsonl":
        for number, raw in enumerate(data.splitlines(), start=1):
            if raw.strip():
                yield _parse(raw, f"{rel}:{number}")
        return
    place, doc, reason, detail = _parse(data, rel)
    if doc is None:
        yield place, None, reason, detail
    elif not isinstance(doc, list):
        yield rel, None, "bad_json", "expected a JSON list of objects"
    else:
        for index, obj in enumerate(doc):
            yield f"{rel}[{index}]", obj, "", ""


def _parse(raw: bytes, place: str) -> Row:
    try:
        return place, json.loads(raw.decode("utf-8")), "", ""
    except UnicodeDecodeError as e:
        return place, None, "non_utf8", f"byte {e.start}: {e.reason}"
    except ValueError as e:
        return place, None, "bad_json", str(e)


def check_turns(turns: Any, n_images: int) -> list[dict[str, str]] | tuple[str, str]:
    """The conversation with one ``<image>`` per image, or ``(reason, detail)`` (module doc)."""
    if not isinstance(turns, list) or not turns:
        return "empty_conversation", "no turns"
    out: list[dict[str, str]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES or not isinstance(turn.get("value"), str):
            return "bad_conversation", f"turn {i} is not {{'from': 'human'|'gpt', 'value': str}}: {str(turn)[:80]}"
        if turn["from"] != ROLES[i % 2]:
            return "bad_conversation", f"turn {i} is from {turn['from']!r}; turns alternate human, gpt"
        value = turn["value"].strip()
        if not value.replace(IMAGE_TOKEN, "").strip():
            return "empty_conversation", f"turn {i} ({turn['from']}) is empty"
        if turn["from"] == "gpt" and IMAGE_TOKEN in value:
            return "bad_conversation", f"turn {i}: {IMAGE_TOKEN} in a gpt turn"
        out.append({"from": turn["from"], "value": value})
    if out[-1]["from"] != "gpt":
        return "bad_conversation", "the conversation ends on a human turn (no answer)"
    markers = sum(t["value"].count(IMAGE_TOKEN) for t in out)
    if markers == 0 and n_images:
        out[0] = {"from": "human", "value": f"{IMAGE_TOKEN}\n" * n_images + out[0]["value"]}
    elif markers != n_images:
        return "image_token_mismatch", f"{markers} {IMAGE_TOKEN} markers for {n_images} image(s)"
    return out


def one_turn(question: str, answer: str, n_images: int = 1) -> list[dict[str, str]]:
    """A question/answer pair as a conversation, the images first (one marker each)."""
    return [{"from": "human", "value": f"{IMAGE_TOKEN}\n" * n_images + question.strip()},
            {"from": "gpt", "value": answer.strip()}]


def dialogue(conversation: list[dict[str, str]], *, task: str, question_type: str, row: str,
             answer: str | None = None, options: list[str] | None = None, lang: str = "en",
             **provenance: Any) -> dict[str, Any]:
    """One sample-to-be of ``facts["dialogues"]``; ``answer`` defaults to the last reply."""
    if task not in TASKS:
        raise ValueError(f"dialogue task {task!r} not in {TASKS}")
    return {"conversation": conversation, "task": task, "question_type": question_type, "row": row,
            "answer": conversation[-1]["value"] if answer is None else answer, "options": options,
            "lang": lang, "provenance": provenance}


def yes_no_or_open(answer: str) -> str:
    """``yes_no`` for a bare yes/no (是/否) answer, else ``open``."""
    return "yes_no" if answer.strip().rstrip(".").lower() in YES_NO else "open"


def local_image(root: Path, rel: str, what: str) -> Path:
    """The file ``rel`` under ``root``; raises ``Rejected`` for a URL (URL-only item) or a path
    leaving the top folder. Whether the file exists is the caller's check (it names the row)."""
    if "://" in rel:
        raise Rejected("url_only_image", what, f"{rel} is a URL: download it into the image folder first")
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise Rejected("bad_image_path", what, f"{rel!r} is not a path inside the top folder")
    return root.joinpath(*parts)


def load_dialogues(reader: "SourceReader", record: RawRecord, dialogues: list[dict[str, Any]]) -> LoadedRecord:
    """A record's images read and normalised once each, with the dialogues its samples carry."""
    media, sums = [], {}
    for path in record.images:
        image = reader.read_image(record, path)
        media.append(image.media)
        sums[record.rel(path)] = image.file_sha256
    return LoadedRecord(record=record, media=media, facts={"dialogues": dialogues}, file_sha256=sums)
