"""VQA-RAD (Lau et al. 2018, OSF 89kps), as released::

    <root>/VQA_RAD Dataset Public.json     list of questions (2,248)
    <root>/VQA_RAD Image Folder/synpicNNNN.jpg

Keys read: ``qid``, ``image_name``, ``question``, ``answer`` (sometimes a number: cast to text),
``answer_type`` (``CLOSED``/``OPEN``), ``phrase_type``, ``qid_linked_id``, ``image_organ``.

Splits: ``test`` holds the questions whose ``phrase_type`` starts with ``test`` (``test_freeform``
and ``test_para``: 300 + 151 = 451); ``train`` the rest, **minus every question linked to a test
question**: a paraphrase and its free-form original share ``qid_linked_id``, and a train
paraphrase of a test question would leak its answer (``extra["leak_dropped"]`` is never set on an
item; the dropped qids are returned by ``linked_to_test``). ``all`` is every question.
"""

from __future__ import annotations

import json
from pathlib import Path

from datakit.benchmarks.items import BenchItem, BenchmarkLayoutError, as_text, check_split, require

NAME = "vqa_rad"
QUESTIONS = "VQA_RAD Dataset Public.json"
IMAGES = "VQA_RAD Image Folder"
SPLITS = ("test", "train", "all")


def _records(root: Path) -> list[dict]:
    path = root / QUESTIONS
    if not path.is_file():
        raise BenchmarkLayoutError(f"{root}: no {QUESTIONS!r}; VQA-RAD's released folder holds it and {IMAGES!r}/")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BenchmarkLayoutError(f"{path}: not JSON ({e})") from e
    if not isinstance(doc, list):
        raise BenchmarkLayoutError(f"{path}: expected a JSON list of questions")
    for i, rec in enumerate(doc):
        require(rec, ("qid", "image_name", "question", "answer", "answer_type", "phrase_type"), f"{path.name}[{i}]")
    return doc


def _is_test(rec: dict) -> bool:
    return str(rec["phrase_type"]).lower().startswith("test")


def _link(rec: dict) -> str | None:
    value = rec.get("qid_linked_id")
    return (str(value).strip() or None) if value is not None else None


def linked_to_test(root: Path) -> list[str]:
    """qids of non-test questions that share a ``qid_linked_id`` with a test question."""
    records = _records(root)
    test_links = {_link(r) for r in records if _is_test(r)} - {None}
    return sorted(as_text(r["qid"]) for r in records if not _is_test(r) and _link(r) in test_links)


def read(root: Path, split: str = "test") -> list[BenchItem]:
    check_split(NAME, split, SPLITS)
    root = Path(root)
    records = _records(root)
    leaked = set(linked_to_test(root)) if split == "train" else set()
    items = []
    for rec in records:
        if split == "test" and not _is_test(rec):
            continue
        if split == "train" and (_is_test(rec) or as_text(rec["qid"]) in leaked):
            continue
        answer_type = str(rec["answer_type"]).strip().lower()
        if answer_type not in ("closed", "open"):
            raise BenchmarkLayoutError(f"{QUESTIONS} qid {rec['qid']}: answer_type {rec['answer_type']!r} "
                                       "is neither CLOSED nor OPEN")
        items.append(BenchItem(
            benchmark=NAME, qid=as_text(rec["qid"]), split="test" if _is_test(rec) else "train", task="vqa",
            media=(root / IMAGES / str(rec["image_name"]),), question=str(rec["question"]).strip(),
            answer=as_text(rec["answer"]), answer_type=answer_type, lang="en", modality="radiology",
            root=root,
            extra={"phrase_type": rec["phrase_type"], "qid_linked_id": _link(rec),
                   "organ": rec.get("image_organ")},
        ))
    return items
