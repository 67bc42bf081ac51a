"""PathVQA (He et al. 2020), pathology VQA, in its original ``pvqa`` release::

    <root>/qas/<split>/<split>_qa.pkl     a pickled list of {"image", "question", "answer"}
    <root>/images/<split>/<image>.jpg     ``image`` has no extension (e.g. ``test_0261``)

The pickles hold only lists, dicts and strings, so they are read with an unpickler that refuses
every class (a pickle can otherwise run code). PathVQA has no question ids: ``qid`` is
``<split>_<row>`` (row in the released pickle). Closed questions are those answered yes or no,
as MedEvalKit and the PathVQA paper count them. Splits: ``test``, ``train``, ``val``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from datakit.benchmarks.items import BenchItem, BenchmarkLayoutError, as_text, check_split, require

NAME = "path_vqa"
SPLITS = ("test", "train", "val")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class _PlainUnpickler(pickle.Unpickler):
    """Builds only built-in containers and scalars; any class reference is refused."""

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle's hook
        raise pickle.UnpicklingError(f"refusing {module}.{name}: PathVQA's pickles hold plain data only")


def load_qa(path: Path) -> list[dict]:
    try:
        with path.open("rb") as f:
            doc = _PlainUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise BenchmarkLayoutError(f"{path}: not a plain-data pickle ({e})") from e
    if not isinstance(doc, list):
        raise BenchmarkLayoutError(f"{path}: expected a list of questions, got {type(doc).__name__}")
    return doc


def _image(root: Path, split: str, name: str) -> Path:
    folder = root / "images" / split
    if Path(name).suffix.lower() in IMAGE_EXTS:
        return folder / name
    for ext in IMAGE_EXTS:
        if (folder / f"{name}{ext}").is_file():
            return folder / f"{name}{ext}"
    return folder / f"{name}.jpg"  # absent: reported when the image is read


def read(root: Path, split: str = "test") -> list[BenchItem]:
    check_split(NAME, split, SPLITS)
    root = Path(root)
    path = root / "qas" / split / f"{split}_qa.pkl"
    if not path.is_file():
        raise BenchmarkLayoutError(f"{root}: no qas/{split}/{split}_qa.pkl; PathVQA's pvqa folder holds "
                                   "qas/<split>/<split>_qa.pkl and images/<split>/")
    items = []
    for row, rec in enumerate(load_qa(path)):
        where = f"{path.name}[{row}]"
        if not isinstance(rec, dict):
            raise BenchmarkLayoutError(f"{where}: expected a dict, got {type(rec).__name__}")
        require(rec, ("image", "question", "answer"), where)
        answer = as_text(rec["answer"])
        items.append(BenchItem(
            benchmark=NAME, qid=f"{split}_{row}", split=split, task="vqa",
            media=(_image(root, split, str(rec["image"])),), question=str(rec["question"]).strip(),
            answer=answer, answer_type="closed" if answer.lower() in ("yes", "no") else "open",
            lang="en", modality="pathology", root=root,
        ))
    return items
