"""Energon metadatasets: blend built recipe outputs by weight.

A built recipe (``datakit build``) is an Energon dataset folder: ``.nv-meta/dataset.yaml`` and
``split.yaml`` with its ``train`` and ``val`` shards. A metadataset YAML (energon's
``MetadatasetV2``) samples several of them for training::

    __module__: megatron.energon
    __class__: MetadatasetV2
    splits:
      train:
        blend:
          - {weight: 3.0, path: ct3d}
          - {weight: 1.0, path: video}

Energon draws each training sample from recipe i with probability ``w_i / sum(w)``, whatever
the recipes' sizes (its ``blend`` mode), repeating the smaller ones. ``val`` lists the recipes
that have validation shards (energon reads them one after the other; weights do not apply).
Paths are written relative to the YAML's folder, so a shard tree moves as a whole; the file's
bytes depend only on its entries. ``write_metadataset`` is the whole API (no CLI needed).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import yaml


@dataclass(frozen=True, slots=True)
class BlendEntry:
    """One built recipe folder and its sampling weight."""

    path: Path
    weight: float

    def __post_init__(self) -> None:
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) \
                or not math.isfinite(self.weight) or self.weight <= 0:
            raise ValueError(f"blend weight of {self.path} must be a finite number > 0, got {self.weight!r}")


def split_parts(root: Path) -> dict[str, list[str]]:
    """The shard lists of a built recipe's ``split.yaml``; raises naming what is missing."""
    meta = root / ".nv-meta"
    if not (meta / "dataset.yaml").is_file():
        raise FileNotFoundError(f"{root} is not a built recipe: no .nv-meta/dataset.yaml (run `datakit build`)")
    try:
        doc = yaml.safe_load((meta / "split.yaml").read_text(encoding="utf-8"))
    except OSError as e:
        raise FileNotFoundError(f"{root}: cannot read .nv-meta/split.yaml ({e.strerror})") from e
    parts = doc.get("split_parts") if isinstance(doc, dict) else None
    if not isinstance(parts, dict):
        raise ValueError(f"{meta / 'split.yaml'}: no split_parts mapping")
    return {str(k): list(v or []) for k, v in parts.items()}


def metadataset_dict(entries: Sequence[BlendEntry], base: Path) -> dict:
    """The MetadatasetV2 document for ``entries``, paths relative to ``base``."""
    if not entries:
        raise ValueError("a metadataset needs at least one recipe to blend")
    seen: set[Path] = set()
    train, val = [], []
    for entry in entries:
        root = Path(os.path.abspath(entry.path))
        if root in seen:
            raise ValueError(f"{entry.path} is listed twice; give it one weight")
        seen.add(root)
        parts = split_parts(root)
        if not parts.get("train"):
            raise ValueError(f"{entry.path} has no train shards to blend")
        rel = Path(os.path.relpath(root, os.path.abspath(base))).as_posix()
        train.append({"weight": float(entry.weight), "path": rel})
        if parts.get("val"):
            val.append({"weight": 1.0, "path": rel})
    splits: dict = {"train": {"blend": train}}
    if val:
        splits["val"] = {"blend": val}
    return {"__module__": "megatron.energon", "__class__": "MetadatasetV2", "splits": splits}


def write_metadataset(path: Path, blend: Sequence[BlendEntry] | Mapping[str | Path, float]) -> Path:
    """Write the metadataset YAML blending built recipe folders by weight; returns ``path``.

    ``blend`` is a list of ``BlendEntry`` or a mapping ``{recipe folder: weight}``. Relative
    folders are taken from the current directory, then written relative to ``path``'s folder.
    """
    entries = [BlendEntry(Path(p), w) for p, w in blend.items()] if isinstance(blend, Mapping) else list(blend)
    path = Path(path)
    doc = metadataset_dict(entries, path.parent)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def recipe_blend(shards_root: Path, weights: Mapping[str, float]) -> list[BlendEntry]:
    """Entries for recipes built under ``shards_root/<recipe>`` (the default ``datakit build``
    output), in the order given."""
    return [BlendEntry(Path(shards_root) / name, weight) for name, weight in weights.items()]
