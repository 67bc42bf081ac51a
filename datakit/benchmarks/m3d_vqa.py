"""M3D-VQA (Bai et al. 2024), closed-ended questions over 3D CT volumes, as released::

    <root>/M3D-VQA/M3D_VQA_{train,val,test,test5k}.csv
    <root>/M3D_Cap_npy/ct_case/<caseID>/<series>.npy        ``Image Path`` is relative to <root>

(``<root>`` may also be the ``M3D-VQA`` folder itself; its parent is then the data root.) Rows are
parsed by the training source's own CSV reader (``datakit.sources.m3d_vqa.read_vqa_csv``), so
evaluation and training agree on every column and quirk; a row that cannot form a question
(``NA`` as the right choice, fewer than two parsed choices, a missing volume...) is not an item
and is returned, with its reason, by ``read_all``. Volumes become 11 slices at evaluation time
(``datakit.benchmarks.media``). ``qid``: ``<csv file>:<line>``.
"""

from __future__ import annotations

from pathlib import Path

from datakit.benchmarks.items import LETTERS, BenchItem, BenchmarkLayoutError, check_split
from datakit.sources.m3d_vqa import M3D_QUESTION_TYPES, read_vqa_csv

NAME = "m3d_vqa"
SPLITS = ("test", "test5k", "val", "train")


def data_root(root: Path) -> Path:
    root = Path(root)
    return root.parent if root.name == "M3D-VQA" and not (root / "M3D-VQA").is_dir() else root


def read_all(root: Path, split: str = "test") -> tuple[list[BenchItem], list[tuple[str, str]]]:
    """The items of ``split`` and the rows refused, as (file:line, reason)."""
    check_split(NAME, split, SPLITS)
    base = data_root(root)
    path = base / "M3D-VQA" / f"M3D_VQA_{split}.csv"
    if not path.is_file():
        raise BenchmarkLayoutError(f"{base}: no M3D-VQA/M3D_VQA_{split}.csv; M3D's data root holds M3D-VQA/ "
                                   "and M3D_Cap_npy/")
    items, refused = [], []
    for place, q, reason, detail in read_vqa_csv(path, base, M3D_QUESTION_TYPES):
        if q is None:
            refused.append((place, f"{reason}: {detail}" if detail else reason))
            continue
        items.append(BenchItem(
            benchmark=NAME, qid=place, split=split, task="mcq", media=(Path(q["volume"]),), media_kind="volume",
            question=q["question"], answer=q["answer"], options=tuple(q["options"]),
            answer_letter=LETTERS[q["answer_index"]], lang="en", modality="CT", root=base,
            extra={"question_type": q["question_type"]},
        ))
    return items, refused


def read(root: Path, split: str = "test") -> list[BenchItem]:
    return read_all(root, split)[0]
