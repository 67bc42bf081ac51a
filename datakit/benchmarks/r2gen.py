"""IU-Xray and MIMIC-CXR report generation, in R2Gen's layout (Chen et al. 2020)::

    <root>/annotation.json    {"train": [...], "val": [...], "test": [...]}
    <root>/images/...         each entry: "id", "report", "image_path" (a list, relative to images/)

IU-Xray entries list a frontal and a lateral view, MIMIC-CXR entries the study's image(s); an
item holds every listed image, in the listed order (R2Gen itself reads two for IU-Xray and the
first for MIMIC-CXR). The reference is ``report`` as R2Gen ships it.

MedEvalKit scores its own IU-Xray/MIMIC-CXR ``test.json`` instead (entries ``id``, ``image`` list,
``findings``, ``impression``; reference ``"Findings: {findings} Impression: {impression}."``,
entries with both empty skipped). When a folder has that file and no ``annotation.json`` it is
read that way, so a bug-compatible comparison can use the same references.
"""

from __future__ import annotations

import json
from pathlib import Path

from datakit.benchmarks.items import BenchItem, BenchmarkLayoutError, check_split, require

SPLITS = ("test", "train", "val")


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BenchmarkLayoutError(f"{path}: not JSON ({e})") from e


def _r2gen(name: str, root: Path, split: str, modality: str) -> list[BenchItem]:
    path = root / "annotation.json"
    doc = _load(path)
    if not isinstance(doc, dict) or split not in doc:
        raise BenchmarkLayoutError(f"{path}: expected an object with a {split!r} list (R2Gen's train/val/test)")
    items = []
    for i, rec in enumerate(doc[split]):
        where = f"annotation.json[{split}][{i}]"
        require(rec, ("id", "report", "image_path"), where)
        paths = rec["image_path"] if isinstance(rec["image_path"], list) else [rec["image_path"]]
        if not paths:
            raise BenchmarkLayoutError(f"{where}: empty image_path")
        items.append(BenchItem(
            benchmark=name, qid=str(rec["id"]), split=split, task="report",
            media=tuple(root / "images" / str(p) for p in paths), question="", answer=str(rec["report"]).strip(),
            lang="en", modality=modality, root=root,
        ))
    return items


def _medevalkit(name: str, root: Path, modality: str) -> list[BenchItem]:
    path = root / "test.json"
    items = []
    for i, rec in enumerate(_load(path)):
        require(rec, ("id", "image", "findings", "impression"), f"test.json[{i}]")
        findings, impression = str(rec["findings"]).strip(), str(rec["impression"]).strip()
        if not findings and not impression:
            continue
        reference = f"Findings: {findings or 'None'} Impression: {impression or 'None'}."
        items.append(BenchItem(
            benchmark=name, qid=str(rec["id"]), split="test", task="report",
            media=tuple(root / "images" / str(p) for p in rec["image"]), question="", answer=reference,
            lang="en", modality=modality, root=root, extra={"layout": "medevalkit"},
        ))
    return items


def read_reports(name: str, root: Path, split: str, modality: str = "x-ray") -> list[BenchItem]:
    check_split(name, split, SPLITS)
    root = Path(root)
    if (root / "annotation.json").is_file():
        return _r2gen(name, root, split, modality)
    if split == "test" and (root / "test.json").is_file():
        return _medevalkit(name, root, modality)
    raise BenchmarkLayoutError(f"{root}: no annotation.json (R2Gen layout: annotation.json + images/)")
