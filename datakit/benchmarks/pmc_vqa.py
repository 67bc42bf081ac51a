"""PMC-VQA (Zhang et al. 2023), multiple choice over PubMed Central figures, as released::

    <root>/test_2.csv, train_2.csv   v2: index, Figure_path, Caption, Question, Choice A..D, Answer, split
    <root>/test.csv, train.csv       v1: Figure_path, Question, Answer, Choice A..D, Answer_label
    <root>/images/<Figure_path>      (MedEvalKit also looks in figures/)

The v2 file is read when present (MedEvalKit scores ``test_2.csv``), else v1. Released option
strings carry their letter and stray spaces (``"  B: Left Anterior Descending "``): the prompt
shows them as released (``extra["option_lines"]``), the item's ``options`` are the bare texts.
The right letter comes from ``Answer_label`` (v1), or ``Answer`` when it is a letter, or the
option whose text equals ``Answer``. ``qid``: the v2 ``index`` column, else ``<file>:<row>``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from datakit.benchmarks.items import LETTERS, BenchItem, BenchmarkLayoutError, check_split, require

NAME = "pmc_vqa"
SPLITS = ("test", "train")
_PREFIX = re.compile(r"^\s*\(?([A-Da-d])\s*[:.)]\s*")


def csv_file(root: Path, split: str) -> Path:
    check_split(NAME, split, SPLITS)
    for name in (f"{split}_2.csv", f"{split}.csv"):
        if (root / name).is_file():
            return root / name
    raise BenchmarkLayoutError(f"{root}: no {split}_2.csv or {split}.csv; PMC-VQA's release holds them and images/")


def option_text(raw: str) -> str:
    return _PREFIX.sub("", raw, count=1).strip()


def _figure(root: Path, rel: str) -> Path:
    for folder in ("images", "figures"):
        if (root / folder / rel).is_file():
            return root / folder / rel
    return root / "images" / rel  # absent: reported when the image is read


def _letter(rec: dict, options: list[str], where: str) -> str:
    label = (rec.get("Answer_label") or "").strip().upper()
    answer = (rec.get("Answer") or "").strip()
    if len(label) == 1 and label in LETTERS[: len(options)]:
        return label
    if len(answer) == 1 and answer.upper() in LETTERS[: len(options)]:
        return answer.upper()
    matches = [LETTERS[i] for i, o in enumerate(options) if o.lower() == option_text(answer).lower()]
    if len(matches) != 1:
        raise BenchmarkLayoutError(f"{where}: answer {answer!r} names no single option of {options}")
    return matches[0]


def read(root: Path, split: str = "test") -> list[BenchItem]:
    root = Path(root)
    path = csv_file(root, split)
    items = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row, rec in enumerate(csv.DictReader(f)):
            where = f"{path.name}:{row + 2}"
            require(rec, ("Figure_path", "Question", "Answer", "Choice A", "Choice B"), where)
            lines = [rec[f"Choice {c}"] for c in "ABCD" if (rec.get(f"Choice {c}") or "").strip()]
            options = [option_text(line) for line in lines]
            letter = _letter(rec, options, where)
            qid = (rec.get("index") or "").strip() or f"{path.name}:{row}"
            items.append(BenchItem(
                benchmark=NAME, qid=qid, split=split, task="mcq", media=(_figure(root, rec["Figure_path"].strip()),),
                question=rec["Question"].strip(), answer=options[LETTERS.index(letter)], options=tuple(options),
                answer_letter=letter, lang="en", modality=None, root=root,
                extra={"option_lines": tuple(lines), "file": path.name},
            ))
    return items
