"""The records dedup reads and writes: ``SampleSummary`` in, ``DropRow`` out, ``StageStats``
counted along the way. Plain dataclasses, so the merge can build them from its own
per-sample summaries and write the rows into the manifest as they are."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleSummary:
    """What dedup needs of one sample; ``media_sha256`` are the sha256 of its stored media
    (``Media.sha256``), in order, and key the ``ImageSignature``s."""

    key: str
    group: str
    source: str
    record_uid: str
    lang: str
    question_type: str
    text: str  # question + "\n" + answer
    media_sha256: tuple[str, ...] = ()
    task: str = ""
    modality: str = ""
    # What a near duplicate must agree on to be dropped: the record's label (class, grade) and
    # this sample's closed answer (the correct option's text, the yes/no word) under ``slot``,
    # the sample's task and language within its record ("organ_presence_liver-en").
    label: str | None = None
    slot: str = ""
    claim: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SampleSummary":
        """From the merge's per-sample summary dict (extra keys such as ``parts`` ignored)."""
        return cls(key=d["key"], group=d["group"], source=d["source"], record_uid=d["record_uid"],
                   lang=d["lang"], question_type=d["question_type"], text=d["text"],
                   media_sha256=tuple(d.get("media_sha256", ())), task=d.get("task", ""),
                   modality=d.get("modality", ""), label=d.get("label"), slot=d.get("slot", ""),
                   claim=d.get("claim"))


@dataclass(frozen=True, slots=True, kw_only=True)
class DropRow:
    """One manifest row for a sample that is not emitted."""

    key: str
    status: str  # "duplicate" | "contaminated" | "label_conflict"
    stage: str
    duplicate_of: str | None  # the kept sample's key (duplicates)
    distance: float  # Hamming bits (images), 1 - Jaccard (text), 0 for exact
    benchmark: str | None = None  # contaminated: the benchmark and its file that matched
    matched_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class StageStats:
    """Samples in/kept/dropped (``inputs == kept + dropped``), clusters (kept units with at least
    one duplicate; for decontamination, benchmark files matched), what the stage could not judge
    by reason (records without or with only blank images; samples of exempt question types or
    without text), and the distance of every drop (for the report)."""

    stage: str
    inputs: int = 0
    kept: int = 0
    dropped: int = 0
    clusters: int = 0
    skipped: Counter = field(default_factory=Counter)
    distances: list[float] = field(default_factory=list)
    # near_image: hash candidates, pixel-confirmed / rejected pairs, label conflicts
    checks: Counter = field(default_factory=Counter)
    similarities: list[float] = field(default_factory=list)  # pixel check of every candidate

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "inputs": self.inputs,
            "kept": self.kept,
            "dropped": self.dropped,
            "clusters": self.clusters,
            "skipped": dict(sorted(self.skipped.items())),
            **({"checks": dict(sorted(self.checks.items()))} if self.checks else {}),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelConflict:
    """Two near-identical images whose labels or answers differ: never merged silently."""

    stage: str
    a: str  # record uids, the better-ranked first
    b: str
    label_a: str  # what each says: the label, or "<slot>: <answer>"
    label_b: str
    distance: float  # Hamming bits (0 for exact pixels)
    similarity: float  # pixel check (1.0 for exact pixels)
    action: str  # "kept_both" | "dropped_both"

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]
