"""The dedup stages run at merge time over every sample of a recipe, across all its sources.

Input is one ``SampleSummary`` per converted sample plus the ``ImageSignature`` of each stored
image (keyed by the sha256 of its stored bytes, computed once in the conversion worker). Each
stage is a small class whose ``run`` returns one ``DropRow`` per dropped sample and counts what
it kept and dropped (datatrove style); ``deduplicate`` chains them, each on the survivors of the
one before: decontamination, exact image, near image, near text.

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
import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Callable, ClassVar, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from datakit.dedup.clusters import Decision, keep_first
from datakit.dedup.config import DedupConfig, NearTextConfig
from datakit.dedup.image_hash import ImageSignature
from datakit.dedup.image_index import NearImageConfig, SignatureTable, near_pairs, pair_distances
from datakit.dedup.pixel_check import PixelViews, decode_views, similarity
from datakit.dedup.summary import DropRow, LabelConflict, SampleSummary, StageStats
from datakit.dedup.text_minhash import MinHasher, near_duplicate_pairs


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


def unit_claims(unit: Unit) -> tuple[str | None, dict[str, str]]:
    """A unit's label (its records' labels joined, None without one) and closed answers by slot."""
    label = "|".join(sorted({m.label for m in unit.members if m.label})) or None
    return label, {m.slot: m.claim for m in unit.members if m.slot and m.claim is not None}


def disagreement(a: Unit, b: Unit) -> tuple[str, str] | None:
    """What two units say differently (label first, then the first differing closed answer),
    or None when they agree on everything both state."""
    la, ca = unit_claims(a)
    lb, cb = unit_claims(b)
    if la and lb and la != lb:
        return la, lb
    for slot in sorted(ca.keys() & cb.keys()):
        if ca[slot] != cb[slot]:
            return f"{slot}: {ca[slot]}", f"{slot}: {cb[slot]}"
    return None


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


def record_media(unit: Unit, signatures: Mapping[str, ImageSignature]) -> tuple[str, ...]:
    """The sha256 of the record's images in order of first use by its samples (by key); media
    without a signature (video, audio) are left out."""
    if len(unit.members) == 1:
        shas: Iterable[str] = unit.members[0].media_sha256
    else:
        shas = dict.fromkeys(h for m in unit.members for h in m.media_sha256)
    return tuple(h for h in shas if h in signatures)


def record_images(unit: Unit, signatures: Mapping[str, ImageSignature]) -> tuple[ImageSignature, ...]:
    """The record's image signatures, in ``record_media`` order."""
    return tuple(signatures[h] for h in record_media(unit, signatures))


class ExactImageDedup(DuplicateStage):
    name, unit = "exact_image", "record"

    def decide(self, units: list[Unit], signatures: Mapping[str, ImageSignature]) -> dict[int, Decision]:
        keys = []
        for u in units:
            sigs = record_images(u, signatures)
            if not sigs:
                self.stats.skipped["no_image"] += 1
                keys.append(f"\x00{u.uid}")  # unique: never equal to an image key or another record
                continue
            keys.append(hashlib.sha256("|".join(s.exact for s in sigs).encode()).hexdigest())
        # Within a set of equal images: a unit is a duplicate of the best-ranked kept one it
        # agrees with; one that disagrees with every kept unit is kept (a conflict per pair).
        kept: dict[str, list[int]] = defaultdict(list)
        dropped: dict[int, Decision] = {}
        for rank, key in enumerate(keys):
            first = next((k for k in kept[key] if disagreement(units[k], units[rank]) is None), None)
            if first is not None:
                dropped[rank] = Decision(kept=first, distance=0.0)
                continue
            for k in kept[key]:
                self.conflict(units, k, rank, 0.0, 1.0)
            kept[key].append(rank)
        return dropped


class NearImageDedup(DuplicateStage):
    """Records whose images are near duplicates position by position; candidates are searched
    on each record's middle image (the most informative slice or frame of a sequence), checked
    against their modalities' hash thresholds, then confirmed on the pixels of that image.

    ``media`` returns a stored image's bytes by its sha256 (the build reads them back from its
    slice files); without it (benchmarks, unit tests on signatures alone) the pixel check is
    not run and ``checks`` says so."""

    name, unit = "near_image", "record"

    def __init__(self, cfg: DedupConfig, media: Callable[[str], bytes] | None = None) -> None:
        super().__init__(cfg.label_conflicts)
        self.cfg = cfg
        self.media = media
        self._views: dict[str, PixelViews] = {}

    def decide(self, units: list[Unit], signatures: Mapping[str, ImageSignature]) -> dict[int, Decision]:
        ranks, images, anchors = [], [], []
        for rank, u in enumerate(units):
            shas = record_media(u, signatures)
            sigs = tuple(signatures[h] for h in shas)
            if not sigs:
                self.stats.skipped["no_image"] += 1
            elif sigs[len(sigs) // 2].flat:
                self.stats.skipped["flat_image"] += 1
            else:
                ranks.append(rank)
                images.append(sigs)
                anchors.append(shas[len(shas) // 2])
        base = self.cfg.near_image or NearImageConfig()
        search = base.widest(self.cfg.near_image_modalities.values())
        table = SignatureTable.of([sigs[len(sigs) // 2] for sigs in images])
        i, j, dist = near_pairs(table, None, search)
        lo, hi, d = [], [], []
        for a, b, anchor in zip(i.tolist(), j.tolist(), dist.tolist()):
            ua, ub = units[ranks[a]], units[ranks[b]]
            cfg = self.cfg.near_image_for(ua.members[0].modality, ub.members[0].modality)
            seq = self._sequence_distance(images[a], images[b], cfg)
            if seq is None:
                continue
            self.stats.checks["candidates"] += 1
            sim = self._similarity(anchors[a], anchors[b])
            if sim is not None:
                self.stats.similarities.append(sim)
                if sim < cfg.min_similarity:
                    self.stats.checks["pixel_rejected"] += 1
                    continue
                self.stats.checks["pixel_confirmed"] += 1
            distance = float(max(seq, anchor))
            if self.conflict(units, ranks[a], ranks[b], distance, 1.0 if sim is None else sim):
                continue
            lo.append(ranks[a])
            hi.append(ranks[b])
            d.append(distance)
        if self.media is None:
            self.stats.checks["pixel_check_not_run"] = self.stats.checks["candidates"]
        return keep_first(len(units), np.array(lo, np.int64), np.array(hi, np.int64), np.array(d))

    def _similarity(self, a: str, b: str) -> float | None:
        """Pixel similarity of two stored images by sha256 (None without ``media``)."""
        if self.media is None:
            return None
        for sha in (a, b):
            if sha not in self._views:
                self._views[sha] = decode_views(self.media(sha))
        return similarity(self._views[a], self._views[b])

    @staticmethod
    def _sequence_distance(a: tuple[ImageSignature, ...], b: tuple[ImageSignature, ...],
                           cfg: NearImageConfig) -> int | None:
        """Largest coarse distance over aligned positions, or None if any position differs."""
        if len(a) != len(b):
            return None
        idx = np.arange(len(a))
        coarse, fine = pair_distances(SignatureTable.of(a), idx, SignatureTable.of(b), idx)
        for k in range(len(a)):
            if a[k].flat or b[k].flat:
                if a[k].exact != b[k].exact and not (a[k].flat and b[k].flat):
                    return None
            elif coarse[k] > cfg.coarse or fine[k] > cfg.fine:
                return None
        return int(coarse.max())


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
    media: Callable[[str], bytes] | None = None,
) -> DedupResult:
    """Run ``stages`` (decontamination, built by the caller) then the configured dedup stages,
    each on the survivors of the previous one. Rows come out sorted by (stage order, key).
    ``media`` (stored image bytes by sha256) lets the near-image stage check pixels.

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
    media: Callable[[str], bytes] | None,
) -> DedupResult:
    priority = source_priority if isinstance(source_priority, Mapping) else {s: i for i, s in enumerate(source_priority)}
    keys = [s.key for s in summaries]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, n in Counter(keys).items() if n > 1)[0]
        raise ValueError(f"sample key {dup!r} appears twice in the dedup input")
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
