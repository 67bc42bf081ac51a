"""Build planning: discover every source of a recipe and cut the records into fixed slices.

The plan is the only thing array tasks share: the list of records (sorted by uid), discovery
rejections, missing sources, and a fingerprint of recipe + source files (size, mtime) that
invalidates leftover work when anything changes. Slices are contiguous runs of
``SLICE_RECORDS`` records, so how the work is cut never depends on the number of workers or
array tasks — and neither do the output bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datakit import __version__, registry
from datakit.record import RawRecord
from datakit.recipe import Recipe
from datakit.sample import canonical_json
from datakit.progress import Progress
from datakit.sources.base import Rejection
from datakit.sources.walk import OUTSIDE, claimed_paths, outside_target, unclaimed_files

SLICE_RECORDS = 128  # default; a plan records its own value so array tasks agree


@dataclass(slots=True, kw_only=True)
class BuildPlan:
    recipe: Recipe
    sources_dir: Path
    seed: int
    records: list[RawRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "source (expected path)"
    fingerprint: str = ""
    slice_size: int = SLICE_RECORDS
    # The decontamination registry the merge reads, resolved when the build is planned (so an
    # array's merge task on another node reads the same one); not part of the fingerprint.
    decontam_dir: str | None = None

    @property
    def n_slices(self) -> int:
        return (len(self.records) + self.slice_size - 1) // self.slice_size

    def slice_records(self, index: int) -> list[RawRecord]:
        return self.records[index * self.slice_size : (index + 1) * self.slice_size]

    def source_index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.recipe.sources) if s.source == name)

    # --- persistence: array tasks and resumed builds read the plan instead of rediscovering ---
    def to_json(self) -> bytes:
        return canonical_json(
            {
                "datakit_version": __version__,
                "fingerprint": self.fingerprint,
                "seed": self.seed,
                "slice_size": self.slice_size,
                "sources_dir": str(self.sources_dir),
                "recipe": self.recipe.to_dict(),
                "recipe_path": str(self.recipe.path) if self.recipe.path else None,
                "records": [_record_to_dict(r) for r in self.records],
                "rejections": [
                    {"source": j.source, "record_id": j.record_id, "path": j.path, "reason": j.reason,
                     "detail": j.detail, "status": j.status}
                    for j in self.rejections
                ],
                "missing": self.missing,
                "decontam_dir": self.decontam_dir,
            }
        )

    @classmethod
    def from_json(cls, data: bytes, recipe: Recipe) -> "BuildPlan":
        doc = json.loads(data)
        return cls(
            recipe=recipe,
            sources_dir=Path(doc["sources_dir"]),
            seed=doc["seed"],
            records=[_record_from_dict(d) for d in doc["records"]],
            rejections=[Rejection(**j) for j in doc["rejections"]],
            missing=doc["missing"],
            fingerprint=doc["fingerprint"],
            slice_size=doc["slice_size"],
            decontam_dir=doc.get("decontam_dir"),
        )


def _record_to_dict(r: RawRecord) -> dict[str, Any]:
    return {
        "source": r.source,
        "record_id": r.record_id,
        "modality": r.modality,
        "images": [str(p) for p in r.images],
        "masks": [str(p) for p in r.masks],
        "label": r.label,
        "text": r.text,
        "meta": dict(r.meta),
        "root": str(r.root) if r.root else None,
        "split_key": r.split_key,
        "official_split": r.official_split,
    }


def _record_from_dict(d: dict[str, Any]) -> RawRecord:
    return RawRecord(
        source=d["source"],
        record_id=d["record_id"],
        modality=d["modality"],
        images=tuple(Path(p) for p in d["images"]),
        masks=tuple(Path(p) for p in d["masks"]),
        label=d["label"],
        text=d["text"],
        meta=d["meta"],
        root=Path(d["root"]) if d["root"] else None,
        split_key=d["split_key"],
        official_split=d.get("official_split"),
    )


def _stat_token(paths: tuple[Path, ...]) -> list[list[int]]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([-1, -1])
    return out


def make_plan(recipe: Recipe, sources_dir: Path, seed: int | None = None,
              slice_size: int = SLICE_RECORDS, *, strict: bool = False,
              progress: Progress | None = None) -> BuildPlan:
    """Discover all sources present under ``sources_dir``; name the missing ones.

    Every file under each source's top folder is accounted for (``datakit.sources.walk``). A
    reader that fails with an unexpected exception costs its source one ``internal_error`` row,
    not the build, unless ``strict``.
    """
    if slice_size < 1:
        raise ValueError(f"slice_size must be >= 1, got {slice_size}")
    plan = BuildPlan(recipe=recipe, sources_dir=sources_dir.resolve(),
                     seed=recipe.seed if seed is None else seed, slice_size=slice_size)
    h = hashlib.sha256(canonical_json({"v": __version__, "recipe": recipe.to_dict(), "seed": plan.seed,
                                       "slice_size": slice_size}))
    bar = (progress or Progress.quiet())("discover", total=len(recipe.sources), unit="source")
    for spec in recipe.sources:
        root = plan.sources_dir / spec.path
        if not root.is_dir():
            plan.missing.append(f"{spec.source} ({root})")
            bar.update(1)
            continue
        reader = registry.get_source(spec.source)(root, **spec.options)
        try:
            records, rejections = _discover_source(reader)
        except Exception as e:  # a reader bug or an unreadable tree: one row for the source
            if strict:
                raise
            records, rejections = [], [Rejection(source=spec.source, record_id="<discover>", path=".",
                                                 reason="internal_error", detail=f"{type(e).__name__}: {e}")]
        plan.records.extend(records)
        plan.rejections.extend(rejections)
        bar.update(1)
    bar.close()
    plan.records.sort(key=lambda r: r.uid)
    plan.rejections.sort(key=lambda j: (j.uid, j.path))
    uids = [r.uid for r in plan.records]
    if len(uids) != len(set(uids)):
        from collections import Counter

        dup = next(u for u, c in Counter(uids).items() if c > 1)
        raise RuntimeError(f"two inputs share the record id {dup!r}: a reader bug")
    for r in plan.records:
        h.update(canonical_json([_record_to_dict(r), _stat_token(r.images + r.masks)]))
    for j in plan.rejections:
        h.update(canonical_json([j.uid, j.path, j.reason, j.status]))
    plan.fingerprint = h.hexdigest()
    return plan


def _discover_source(reader) -> tuple[list[RawRecord], list[Rejection]]:
    """One source's records and rejections, records with a file resolving outside the source's
    tree refused, and a row for every other file under its top folder."""
    records: list[RawRecord] = []
    rejections: list[Rejection] = []
    refused: list[RawRecord] = []
    for item in reader.discover():
        if isinstance(item, Rejection):
            rejections.append(item)
            continue
        tree = item.root or reader.root
        targets = [(p, outside_target(p, tree)) for p in reader.record_files(item)]
        escaping = [(p, t) for p, t in targets if t is not None]
        if escaping:
            path, target = escaping[0]
            rejections.append(reader.reject(item.record_id, path, OUTSIDE, f"{target}: resolves outside {tree.name}/"))
            refused.append(item)  # its other files belong to this row, not to the sweep
        else:
            records.append(item)
    claimed = claimed_paths(reader, records + refused, rejections)
    rejections.extend(unclaimed_files(reader, claimed))
    return records, rejections
