"""SLAKE (Liu et al. 2021), bilingual (English and Chinese) radiology VQA, as released::

    <root>/train.json, validate.json (HF mirror BoKelvin/SLAKE: validation.json), test.json
    <root>/imgs/xmlab<N>/source.jpg

Keys read: ``qid``, ``img_name`` (``xmlab102/source.jpg``, relative to ``imgs/``), ``question``,
``answer`` (sometimes a number), ``q_lang`` (``en``/``zh``), ``answer_type`` (``OPEN``/``CLOSED``),
``modality`` (CT, MRI, X-Ray), ``location``, ``content_type``. Every question of both languages
is an item (``lang`` from ``q_lang``; scores break down per language). Splits: ``test``,
``train``, ``validation`` (whichever of the two released validation names exists).
"""

from __future__ import annotations

import json
from pathlib import Path

from datakit.benchmarks.items import BenchItem, BenchmarkLayoutError, as_text, check_split, require

NAME = "slake"
SPLITS = ("test", "train", "validation")
_FILES = {"test": ("test.json",), "train": ("train.json",), "validation": ("validate.json", "validation.json")}


def split_file(root: Path, split: str) -> Path:
    check_split(NAME, split, SPLITS)
    for name in _FILES[split]:
        if (root / name).is_file():
            return root / name
    raise BenchmarkLayoutError(f"{root}: no {' or '.join(_FILES[split])}; SLAKE's released folder holds "
                               "train.json, validate.json, test.json and imgs/")


def read(root: Path, split: str = "test") -> list[BenchItem]:
    root = Path(root)
    path = split_file(root, split)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BenchmarkLayoutError(f"{path}: not JSON ({e})") from e
    items = []
    for i, rec in enumerate(doc):
        where = f"{path.name}[{i}]"
        require(rec, ("qid", "img_name", "question", "answer", "q_lang", "answer_type"), where)
        lang, answer_type = str(rec["q_lang"]).lower(), str(rec["answer_type"]).lower()
        if lang not in ("en", "zh") or answer_type not in ("open", "closed"):
            raise BenchmarkLayoutError(f"{where}: q_lang {rec['q_lang']!r} / answer_type {rec['answer_type']!r} "
                                       "not en|zh / OPEN|CLOSED")
        items.append(BenchItem(
            benchmark=NAME, qid=as_text(rec["qid"]), split=split, task="vqa",
            media=(root / "imgs" / str(rec["img_name"]),), question=str(rec["question"]).strip(),
            answer=as_text(rec["answer"]), answer_type=answer_type, lang=lang,
            modality=rec.get("modality") or None, root=root,
            extra={k: rec[k] for k in ("location", "content_type", "base_type") if k in rec},
        ))
    return items
