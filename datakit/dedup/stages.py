"""The dedup stages run at merge time over every sample of a recipe, across all its sources.

Input is one ``SampleSummary`` per converted sample plus the ``ImageSignature`` of each stored
image (keyed by the sha256 of its stored bytes, computed once in the conversion worker). Each
stage is a small class whose ``run`` returns one ``DropRow`` per dropped sample and counts what
it kept and dropped (datatrove style); ``deduplicate`` chains them, each on the survivors of the
one before: decontamination, exact image, near image (the image stages: ``image_stages``), near text.

Units: the image stages decide per *record* (all samples made from one source record share its
images, and a duplicate record goes with all its tasks and languages); the text stage decides per
*group* (the EN and ZH twins of one sample). Either way twins are kept or dropped together.
Units are ranked by (source priority, id) before anything else happens, so the result never
depends on input order.

Labels first: two records whose images match (exactly or nearly) but whose labels, grades or
closed answers differ are not duplicates. The image stages list every such pair as a
``LabelConflict`` and keep both (or, with ``label_conflicts: drop_both``, drop both as
``label_conflict``); only records that agree are merged. A near-image candidate found by the
hashes is dropped only after the pixel check (``pixel_check``) confirms it, with the thresholds
of its modality.
"""

from __future__ import annotations

import abc
import gc
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping, NamedTuple, Sequence

import numpy as np

from datakit.dedup.clusters import Decision, keep_first
from datakit.dedup.config import DedupConfig, NearTextConfig
from datakit.dedup.image_hash import ImageSignature
from datakit.dedup.label_conflicts import disagreement
from datakit.dedup.summary import DropRow, LabelConflict, SampleSummary, StageStats
from datakit.dedup.text_minhash import MinHasher, near_duplicate_pairs

if TYPE_CHECKING:
    from datakit.dedup.pixel_check import MediumPixels


class Unit(NamedTuple):
    """A record or a group: the samples decided together (a tuple: built 100,000s of times)."""

    uid: str
    source: str
    members: tuple[SampleSummary, ...]  # sorted by key


def rank_units(summaries: Sequence[SampleSummary], by: str, priority: Mapping[str, int]) -> list[Unit]:
    """Records (``by="record"``) or groups (``by="group"``), best first: (source priority, id).
    A group spanning two records is a converter bug and is refused."""
    members: dict[str, list[SampleSummary]] = defaultdict(list)
    record_of_group: dict[str, str] = {}
    unit_of = attrgetter("record_uid" if by == "record" else "group")
    for s in sorted(summaries, key=attrgetter("key")):  # one sort: members come out in key order
        if record_of_group.setdefault(s.group, s.record_uid) != s.record_uid:
            raise ValueError(f"group {s.group!r} spans records {record_of_group[s.group]!r} and {s.record_uid!r}")
        members[unit_of(s)].append(s)
    last = len(priority)
    sources = {uid: ms[0].source for uid, ms in members.items()}
    ranked = sorted(members, key=lambda uid: (priority.get(sources[uid], last), sources[uid], uid))
    return [Unit(uid, sources[uid], tuple(members[uid])) for uid in ranked]


def counterpart(sample: SampleSummary, kept: Unit) -> str:
    """The kept sample a dropped one is reported against: same language and task if there is
    one, else same language, else the kept unit's first key."""
    for match in (
        lambda m: m.lang == sample.lang and m.task == sample.task,
        lambda m: m.lang == sample.lang,
        lambda m: True,
    ):
        for m in kept.members:
            if match(m):
                return m.key
    raise AssertionError("a unit has at least one member")


class DedupStage(abc.ABC):
    """A stage over the survivors of the previous one: rows for what it drops, and counts."""

    name: ClassVar[str]
    unit: ClassVar[str]  # "record" | "group"

    def __init__(self) -> None:
        self.stats = StageStats(self.name)

    def run(self, summaries: Sequence[SampleSummary], signatures: Mapping[str, ImageSignature],
            priority: Mapping[str, int]) -> list[DropRow]:
        """One row per dropped sample."""
        return self.run_units(rank_units(summaries, self.unit, priority), signatures)

    @abc.abstractmethod
    def run_units(self, units: list[Unit], signatures: Mapping[str, ImageSignature]) -> list[DropRow]:
        """``run`` on units already ranked (``deduplicate`` ranks once per unit kind)."""

    def _account(self, units: list[Unit], rows: list[DropRow]) -> None:
        n = sum(len(u.members) for u in units)
        self.stats.inputs += n
        self.stats.dropped += len(rows)
        self.stats.kept += n - len(rows)
        self.stats.distances.extend(r.distance for r in rows)


class DuplicateStage(DedupStage):
    """A stage that drops units duplicating a better-ranked unit, unless the two disagree on a
    label or answer (a ``LabelConflict``: both kept, or both dropped under ``drop_both``)."""

    def __init__(self, label_conflicts: str = "keep") -> None:
        super().__init__()
        self.label_conflicts = label_conflicts
        self.conflicts: list[LabelConflict] = []
        # pairs already reported (shared by the image stages: an exact conflict is also near)
        self.known_conflicts: set[tuple[str, str]] = set()
        self._conflict_drops: dict[int, tuple[int, float]] = {}  # rank -> (the other rank, distance)

    @abc.abstractmethod
    def decide(self, units: list[Unit], signatures: Mapping[str, ImageSignature]) -> dict[int, Decision]:
        """Dropped unit ranks -> the rank they duplicate."""

    def conflict(self, units: list[Unit], a: int, b: int, distance: float, sim: float) -> bool:
        """Whether ranks ``a`` < ``b`` disagree; if so the pair is recorded (and, under
        ``drop_both``, both are marked for dropping) and must not become a duplicate edge."""
        said = disagreement(units[a], units[b])
        if said is None:
            return False
        pair = (units[a].uid, units[b].uid)
        if pair in self.known_conflicts:
            return True
        self.known_conflicts.add(pair)
        drop = self.label_conflicts == "drop_both"
        self.conflicts.append(LabelConflict(stage=self.name, a=units[a].uid, b=units[b].uid, label_a=said[0],
                                            label_b=said[1], distance=float(distance), similarity=float(sim),
                                            action="dropped_both" if drop else "kept_both"))
        self.stats.checks["label_conflicts"] += 1
        if drop:
            self._conflict_drops.setdefault(a, (b, float(distance)))
            self._conflict_drops.setdefault(b, (a, float(distance)))
        return True

    def run_units(self, units: list[Unit], signatures: Mapping[str, ImageSignature]) -> list[DropRow]:
        self._conflict_drops = {}
        decisions = self.decide(units, signatures)
        rows = [
            DropRow(key=s.key, status="label_conflict", stage=self.name, duplicate_of=counterpart(s, units[other]),
                    distance=d)
            for rank, (other, d) in sorted(self._conflict_drops.items())
            for s in units[rank].members
        ]
        rows += [
            DropRow(key=s.key, status="duplicate", stage=self.name, duplicate_of=counterpart(s, units[d.kept]),
                    distance=d.distance)
            for rank, d in sorted(decisions.items()) if rank not in self._conflict_drops
            for s in units[rank].members
        ]
        self._account(units, rows)
        self.stats.clusters += len({d.kept for r, d in decisions.items() if r not in self._conflict_drops})
        return rows


class NearTextDedup(DuplicateStage):
    """Groups whose question + answer texts are near duplicates (MinHash LSH, then the estimated
    Jaccard similarity checked), in the same language; groups of the same record never count
    as duplicates of each other (a converter may ask several questions about one caption)."""

    name, unit = "near_text", "group"

    def __init__(self, cfg: NearTextConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def decide(self, units: list[Unit], signatures: Mapping[str, ImageSignature]) -> dict[int, Decision]:
        doc_rank, texts, langs, records = [], [], [], []
        for rank, u in enumerate(units):
            for m in u.members:
                if m.question_type not in self.cfg.question_types:
                    self.stats.skipped["exempt_question_type"] += 1
                    continue
                doc_rank.append(rank)
                texts.append(m.text)
                langs.append(m.lang)
                records.append(m.record_uid)
        sig = MinHasher(self.cfg.minhash).signatures(texts, langs)
        empty = int((sig == np.uint32(0xFFFFFFFF)).all(axis=1).sum())
        if empty:
            self.stats.skipped["empty_text"] += empty
        i, j, sim = near_duplicate_pairs(sig, self.cfg.minhash)
        ranks = np.array(doc_rank, dtype=np.int64)
        lang_of, record_of = np.array(langs, dtype=object), np.array(records, dtype=object)
        ok = (lang_of[i] == lang_of[j]) & (record_of[i] != record_of[j])
        return keep_first(len(units), ranks[i[ok]], ranks[j[ok]], np.round(1.0 - sim[ok], 6))


@dataclass(slots=True)
class DedupResult:
    drops: list[DropRow]
    stats: list[StageStats]
    conflicts: list[LabelConflict] = field(default_factory=list)  # by stage, then ids

    def emitted(self, summaries: Sequence[SampleSummary]) -> list[SampleSummary]:
        gone = {r.key for r in self.drops}
        return [s for s in summaries if s.key not in gone]


def deduplicate(
    summaries: Sequence[SampleSummary],
    signatures: Mapping[str, ImageSignature],
    cfg: DedupConfig,
    source_priority: Mapping[str, int] | Sequence[str] = (),
    stages: Sequence[DedupStage] = (),
    media: Callable[[str], "MediumPixels"] | None = None,
) -> DedupResult:
    """Run ``stages`` (decontamination, built by the caller) then the configured dedup stages,
    each on the survivors of the previous one. Rows come out sorted by (stage order, key).
    ``media`` (a stored image by sha256: decoded pixels when held, else bytes) lets the
    near-image stage check pixels.

    The cyclic garbage collector is paused meanwhile: nothing here builds reference cycles,
    and with a million summaries alive it would rescan all of them every few thousand
    allocations (a third of the run time, measured)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _deduplicate(summaries, signatures, cfg, source_priority, stages, media)
    finally:
        if was_enabled:
            gc.enable()


def _deduplicate(
    summaries: Sequence[SampleSummary],
    signatures: Mapping[str, ImageSignature],
    cfg: DedupConfig,
    source_priority: Mapping[str, int] | Sequence[str],
    stages: Sequence[DedupStage],
    media: Callable[[str], "MediumPixels"] | None,
) -> DedupResult:
    priority = source_priority if isinstance(source_priority, Mapping) else {s: i for i, s in enumerate(source_priority)}
    keys = [s.key for s in summaries]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, n in Counter(keys).items() if n > 1)[0]
        raise ValueError(f"sample key {dup!r} appears twice in the dedup input")
    from datakit.dedup.image_stages import ExactImageDedup, NearImageDedup  # they build on this module

    chain = list(stages)
    if cfg.exact_image:
        chain.append(ExactImageDedup(cfg.label_conflicts))
    if cfg.near_image is not None:
        chain.append(NearImageDedup(cfg, media))
    if cfg.near_text is not None:
        chain.append(NearTextDedup(cfg.near_text))
    known: set[tuple[str, str]] = set()
    for stage in chain:
        if isinstance(stage, DuplicateStage):
            stage.known_conflicts = known
    ranked: dict[str, list[Unit]] = {}
    alive = set(keys)
    drops: list[DropRow] = []
    for stage in chain:
        if stage.unit not in ranked:
            ranked[stage.unit] = rank_units(summaries, stage.unit, priority)
        units = []
        for u in ranked[stage.unit]:
            if all(m.key in alive for m in u.members):
                units.append(u)
            elif any(m.key in alive for m in u.members):  # a group stage ran before a record stage
                units.append(Unit(u.uid, u.source, tuple(m for m in u.members if m.key in alive)))
        rows = stage.run_units(units, signatures)
        alive.difference_update(r.key for r in rows)
        drops.extend(sorted(rows, key=lambda r: r.key))
    conflicts = [c for s in chain for c in sorted(getattr(s, "conflicts", ()), key=lambda c: (c.a, c.b))]
    return DedupResult(drops=drops, stats=[s.stats for s in chain], conflicts=conflicts)
