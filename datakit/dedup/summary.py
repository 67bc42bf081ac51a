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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SampleSummary":
        """From the merge's per-sample summary dict (extra keys such as ``parts`` ignored)."""
        return cls(key=d["key"], group=d["group"], source=d["source"], record_uid=d["record_uid"],
                   lang=d["lang"], question_type=d["question_type"], text=d["text"],
                   media_sha256=tuple(d.get("media_sha256", ())), task=d.get("task", ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class DropRow:
    """One manifest row for a sample that is not emitted."""

    key: str
    status: str  # "duplicate" | "contaminated"
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "inputs": self.inputs,
            "kept": self.kept,
            "dropped": self.dropped,
            "clusters": self.clusters,
            "skipped": dict(sorted(self.skipped.items())),
        }
