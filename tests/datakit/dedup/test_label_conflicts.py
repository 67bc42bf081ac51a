"""Label-aware near-duplicate dedup: images that match but whose labels or answers differ are
never merged silently; candidates are confirmed on pixels, with per-modality thresholds; and on
the bundled real BUSI images the near-image stage has precision and recall 1 on planted copies."""

from __future__ import annotations

import io
import itertools

import pytest

from datakit.dedup.config import DedupConfig
from datakit.dedup.image_hash import signature
from datakit.dedup.stages import deduplicate
from datakit.dedup.summary import SampleSummary
from datakit.errors import RecipeError

from dedup_images import (busi_images, crop3_each_side, crop3_offset, distinct_image, jpeg85, media_sha,
                          png_level, resize90)

CFG = {"near_text": False, "decontam": "none"}


def png_bytes(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


class Corpus:
    """Records of one image each, with a label and a closed answer; media readable by sha."""

    def __init__(self) -> None:
        self.summaries: list[SampleSummary] = []
        self.sigs: dict = {}
        self.bytes: dict[str, bytes] = {}
        self.pixels: dict = {}  # the decoded images, as a reader holds them (Media.pixels)

    def add(self, rid: str, im, label: str | None, modality: str = "fundus", claim: str | None = None,
            source: str = "src") -> None:
        h = media_sha(im)
        self.sigs[h] = signature(im)
        self.bytes[h] = png_bytes(im)
        self.pixels[h] = im
        for lang in ("en", "zh"):
            self.summaries.append(SampleSummary(
                key=f"{source}-{rid}-q-{lang}", group=f"{source}:{rid}", source=source, record_uid=f"{source}:{rid}",
                lang=lang, question_type="yes_no" if claim else "mcq", text="Is it?", media_sha256=(h,), task="q",
                modality=modality, label=label, slot=f"q-{lang}", claim=claim))

    def run(self, media=None, **cfg):
        return deduplicate(self.summaries, self.sigs, DedupConfig.from_recipe({**CFG, **cfg}), ["src"],
                           media=media or self.bytes.__getitem__)


def dropped(result) -> dict[str, str]:
    return {r.key.rsplit("-", 2)[0]: r.status for r in result.drops}


def test_a_different_grade_is_a_conflict_kept_both_same_grade_is_dropped():
    base = distinct_image(4)
    c = Corpus()
    c.add("grade0", base, "0")
    c.add("grade1", jpeg85(base), "1")  # same picture, another grade: the subtle positive case
    c.add("grade0_copy", resize90(base), "0")  # a true duplicate of grade0
    result = c.run()
    assert dropped(result) == {"src-grade0_copy": "duplicate"}
    [conflict] = [x for x in result.conflicts if {x.a, x.b} == {"src:grade0", "src:grade1"}]
    assert (conflict.label_a, conflict.label_b, conflict.action) == ("0", "1", "kept_both")
    assert conflict.stage == "near_image" and conflict.distance >= 0 and conflict.similarity >= 0.95
    dup = next(r for r in result.drops if r.key.startswith("src-grade0_copy"))
    assert dup.duplicate_of.startswith("src-grade0-")  # never merged into the other grade


def test_a_differing_closed_answer_is_a_conflict_and_drop_both_drops_both():
    base = distinct_image(10)
    c = Corpus()
    c.add("yes", base, None, claim="yes")
    c.add("no", png_level(base, 1), None, claim="no")  # exact pixels, answers differ
    c.add("other", distinct_image(11), None, claim="no")
    kept = c.run()
    assert dropped(kept) == {} and [(x.stage, x.label_a, x.label_b) for x in kept.conflicts] == \
        [("exact_image", "q-en: no", "q-en: yes")]  # reported once, by the first stage that met it
    both = c.run(label_conflicts="drop_both")
    assert dropped(both) == {"src-yes": "label_conflict", "src-no": "label_conflict"}
    assert both.conflicts[0].action == "dropped_both"
    with pytest.raises(RecipeError, match="label_conflicts"):
        DedupConfig.from_recipe({"label_conflicts": "merge"})


def test_pixel_check_with_per_modality_thresholds():
    base = distinct_image(22)
    c = Corpus()
    c.add("a", base, "x", modality="x-ray")
    c.add("b", jpeg85(crop3_offset(base, 1)), "x", modality="x-ray")
    assert dropped(c.run()) == {"src-b": "duplicate"}
    strict = c.run(near_image={"modalities": {"x-ray": {"min_similarity": 0.99999}}})
    stats = next(s for s in strict.stats if s.stage == "near_image")
    assert dropped(strict) == {} and stats.checks["pixel_rejected"] == 1 and stats.checks["candidates"] == 1
    # held decoded pixels are compared as they are, with the verdicts of the stored bytes decoded
    from_pixels = c.run(media=c.pixels.__getitem__)
    assert dropped(from_pixels) == {"src-b": "duplicate"}
    assert next(s for s in from_pixels.stats if s.stage == "near_image").similarities == \
        next(s for s in c.run().stats if s.stage == "near_image").similarities
    # other modalities keep the recipe's thresholds; a pair of two modalities meets the stricter
    assert dropped(c.run(near_image={"modalities": {"fundus": {"min_similarity": 0.99999}}})) == {"src-b": "duplicate"}
    cfg = DedupConfig.from_recipe({"near_image": {"fine": 14, "modalities": {"fundus": {"fine": 10}}}})
    assert cfg.near_image_for("fundus", "ct").fine == 10 and cfg.near_image_for("ct", "mri").fine == 14
    with pytest.raises(RecipeError, match="unknown modality"):
        DedupConfig.from_recipe({"near_image": {"modalities": {"xray": {"fine": 3}}}})


@pytest.mark.skipif(not busi_images(), reason="bundled BUSI images absent")
def test_precision_and_recall_on_the_bundled_real_images():
    """Every real BUSI image plus one planted copy each (JPEG, resize, crops), all labelled the
    same: every copy is dropped against its own original, and no two originals pair up."""
    c = Corpus()
    copies = (jpeg85, resize90, crop3_each_side, lambda im: crop3_offset(im, 5))
    for k, im in enumerate(busi_images()):
        c.add(f"real{k}", im, "same", modality="ultrasound")
        c.add(f"real{k}_copy", copies[k % 4](im), "same", modality="ultrasound")
    result = c.run()
    drops = {r.key.rsplit("-", 2)[0]: r.duplicate_of.rsplit("-", 2)[0] for r in result.drops}
    n = len(busi_images())
    assert drops == {f"src-real{k}_copy": f"src-real{k}" for k in range(n)}
    stats = next(s for s in result.stats if s.stage == "near_image")
    assert stats.checks["pixel_confirmed"] == n and stats.checks.get("pixel_rejected", 0) == stats.checks["candidates"] - n
    # the pixel check alone separates originals from each other by a wide margin
    from datakit.dedup.pixel_check import pixel_views, similarity
    views = [pixel_views(im) for im in busi_images()]
    assert max(similarity(a, b) for a, b in itertools.combinations(views, 2)) < 0.8
