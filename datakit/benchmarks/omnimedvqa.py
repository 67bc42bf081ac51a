"""OmniMedVQA (Hu et al. 2024), multiple choice over 73 medical datasets, as released::

    <root>/QA_information/Open-access/<dataset>.json        (some are named Modality_<X>.json)
    <root>/QA_information/Restricted-access/<dataset>.json
    <root>/Images/<dataset>/...                             ``image_path`` is relative to <root>

Each file is a JSON array (or JSON Lines) of questions with ``question_id``, ``question``,
``gt_answer`` (the right option's text), ``image_path``, ``option_A`` .. ``option_D`` (not all
present), ``question_type``, ``modality_type`` (one file says ``modality``) and ``dataset``.
Splits: ``test`` is the Open-access part (what the paper and MedEvalKit score), ``restricted``
the other (its images are usually not shipped). Files are read in name order, rows in file order.
"""

from __future__ import annotations

import json
from pathlib import Path

from datakit.benchmarks.items import LETTERS, BenchItem, BenchmarkLayoutError, as_text, check_split, require

NAME = "omnimedvqa"
SPLITS = ("test", "restricted")
_FOLDERS = {"test": "Open-access", "restricted": "Restricted-access"}


def _rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as e:
            raise BenchmarkLayoutError(f"{path}: neither a JSON array nor JSON Lines ({e})") from e
    if isinstance(doc, dict):  # JSON Lines with a single line
        doc = [doc]
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise BenchmarkLayoutError(f"{path}: expected a list of question objects")
    return doc


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def read(root: Path, split: str = "test") -> list[BenchItem]:
    check_split(NAME, split, SPLITS)
    root = Path(root)
    folder = root / "QA_information" / _FOLDERS[split]
    if not folder.is_dir():
        raise BenchmarkLayoutError(f"{root}: no QA_information/{_FOLDERS[split]}/; OmniMedVQA's release "
                                   "holds QA_information/ and Images/")
    items = []
    for path in sorted(folder.glob("*.json*")):
        for i, rec in enumerate(_rows(path)):
            where = f"{path.name}[{i}]"
            require(rec, ("question_id", "question", "gt_answer", "image_path"), where)
            letters = [c for c in "ABCDEFGH" if f"option_{c}" in rec and as_text(rec[f"option_{c}"])]
            options = [as_text(rec[f"option_{c}"]) for c in letters]
            if letters != list(LETTERS[: len(letters)]) or len(options) < 2:
                raise BenchmarkLayoutError(f"{where}: options {letters} are not A, B, ... without gaps")
            gt = as_text(rec["gt_answer"])
            hits = [k for k, o in enumerate(options) if o == gt] or [k for k, o in enumerate(options) if _norm(o) == _norm(gt)]
            if len(hits) != 1:
                raise BenchmarkLayoutError(f"{where}: gt_answer {gt!r} is not exactly one of {options}")
            items.append(BenchItem(
                benchmark=NAME, qid=as_text(rec["question_id"]), split=split, task="mcq",
                media=(root / str(rec["image_path"]),), question=str(rec["question"]).strip(),
                answer=options[hits[0]], options=tuple(options), answer_letter=LETTERS[hits[0]], lang="en",
                modality=rec.get("modality_type") or rec.get("modality") or None, root=root,
                extra={"question_type": rec.get("question_type"), "dataset": rec.get("dataset") or path.stem,
                       "file": path.name},
            ))
    return items
