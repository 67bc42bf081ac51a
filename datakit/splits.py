"""Train/val assignment: related records together, the releases' own held-out splits out of train.

Every sample carries a *split key*: the reader's patient / case / paper / lesion key
(``RawRecord.split_key``: PAD-UFES-20 patient, EyePACS subject, M3D case, MedICaT paper, MedPix
case), else the record itself, so two images of one patient, one case's series or one paper's
figures never straddle train and val, and EN/ZH twins and all tasks of a record stay together.

A split key goes to val when any of its records is in a release's own val or test split
(``RawRecord.official_split``: ROCOv2 valid/test, FairVLMed Validation/Testing, Brain-Tumor-MRI
Testing, AbdomenUS test, an EyePACS test table), so a dataset's test images never train the
model; the others go to val by a seeded hash below ``val_fraction``. When the hash leaves val
empty and there are at least two keys, the key with the smallest hash goes to val, so every
recipe has a val split energon can open (``split_part='val'``). Official test images join our
val rather than a separate test split: the energon layout stays train/val, and val is never
trained on (docs/data-quality.md).
"""

from __future__ import annotations

from typing import Iterable

from datakit.seeding import unit_interval

_OFFICIAL = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
HELD_OUT = frozenset({"val", "test"})


def official_split(name: str | None) -> str | None:
    """A release's split folder or table name as ``train``/``val``/``test`` (None if unknown)."""
    return _OFFICIAL.get(str(name).strip().lower()) if name else None


def assign_split(seed: int, split_key: str, val_fraction: float) -> str:
    """train/val of one split key by a seeded hash."""
    return "val" if unit_interval(seed, "split", split_key) < val_fraction else "train"


def assign_splits(seed: int, keys: Iterable[tuple[str, str | None]], val_fraction: float) -> dict[str, str]:
    """Split of every split key, from (split key, official split of one of its samples) pairs."""
    held: dict[str, bool] = {}
    for key, official in keys:
        held[key] = held.get(key, False) or official in HELD_OUT
    out = {k: "val" if h else assign_split(seed, k, val_fraction) for k, h in held.items()}
    if val_fraction > 0 and len(out) >= 2 and "val" not in out.values():
        out[min(out, key=lambda k: (unit_interval(seed, "split", k), k))] = "val"
    return out
