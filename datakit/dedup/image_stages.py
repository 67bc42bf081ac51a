"""The image dedup stages: exact pixels and near duplicates (hashes, then pixels), label-aware.

Both decide per record (all samples of a record share its images). A record duplicating a
better-ranked record it agrees with is dropped; one that disagrees with it on a label or closed
answer is a ``LabelConflict`` (``DuplicateStage.conflict``). A near-image candidate found by the
hashes is dropped only after the pixel check (``pixel_check``) confirms it, with the thresholds of
its modalities (``DedupConfig.near_image_for``).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Callable, Iterable, Mapping

import numpy as np

from datakit.dedup.clusters import Decision, keep_first
from datakit.dedup.config import DedupConfig
from datakit.dedup.image_hash import ImageSignature
from datakit.dedup.image_index import NearImageConfig, SignatureTable, near_pairs, pair_distances
from datakit.dedup.label_conflicts import disagreement
from datakit.dedup.pixel_check import MediumPixels, PixelViews, views_of, similarity
from datakit.dedup.stages import DuplicateStage, Unit


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

    ``media`` returns a stored image by its sha256: its decoded pixels where the caller still
    holds them (``Media.pixels``), else its bytes (the build reads them back from its slice
    files and decodes each candidate once); without it (benchmarks, unit tests on signatures
    alone) the pixel check is not run and ``checks`` says so."""

    name, unit = "near_image", "record"

    def __init__(self, cfg: DedupConfig, media: Callable[[str], MediumPixels] | None = None) -> None:
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
                self._views[sha] = views_of(self.media(sha))
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
