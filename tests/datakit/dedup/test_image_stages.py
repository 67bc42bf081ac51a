"""The image stages unit by unit (found by mutation testing): records without or with flat
images are skipped and counted, never paired; every exact pair is dropped, not only the first;
a record's images in order of first use; a sequence compared position by position (flat slices,
inclusive thresholds); the pixel check's counts, its inclusive minimum, and conflicts' numbers."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datakit.dedup.config import DedupConfig
from datakit.dedup.image_hash import signature
from datakit.dedup.image_index import NearImageConfig, SignatureTable, pair_distances
from datakit.dedup.image_stages import NearImageDedup, record_media
from datakit.dedup.stages import Unit, deduplicate
from datakit.dedup.summary import SampleSummary

from dedup_images import distinct_image, jpeg85, media_sha, png_level, resize90, summaries_for

IMAGES_ONLY = DedupConfig.from_recipe({"near_text": False, "decontam": "none"})


def stage(result, name):
    return next(s for s in result.stats if s.stage == name)


def text_only(k: int) -> SampleSummary:
    return SampleSummary(key=f"alpha-t{k}-en", group=f"alpha-t{k}", source="alpha", record_uid=f"alpha:t{k}",
                         lang="en", question_type="open", text=f"text only {k}")


def test_records_without_or_with_flat_images_are_skipped_and_every_pair_dropped():
    sigs: dict = {}
    ims = [distinct_image(k) for k in (20, 21, 22, 23, 24)]
    s = [text_only(0), text_only(1)]  # best ranked: they must neither pair nor stop the stage
    s += summaries_for("alpha", "flat1", [Image.new("L", (128, 128), 40)], sigs)
    s += summaries_for("alpha", "flat2", [Image.new("L", (128, 128), 200)], sigs)
    s += summaries_for("alpha", "twoflat", [ims[4], Image.new("L", (128, 128), 90)], sigs)  # middle image flat
    s += summaries_for("alpha", "a", [ims[0]], sigs)
    s += summaries_for("alpha", "c", [ims[1]], sigs)
    s += summaries_for("alpha", "n", [ims[2]], sigs)
    s += summaries_for("beta", "a-copy", [png_level(ims[0], 9)], sigs)
    s += summaries_for("gamma", "c-copy", [png_level(ims[1], 9)], sigs)
    s += summaries_for("gamma", "n-near", [jpeg85(resize90(ims[2]))], sigs)
    result = deduplicate(s, sigs, IMAGES_ONLY, ["alpha", "beta", "gamma"])
    exact = {r.key for r in result.drops if r.stage == "exact_image"}
    assert exact == {f"{g}-{lang}" for g in ("beta-a-copy-caption", "gamma-c-copy-caption") for lang in ("en", "zh")}
    assert {r.key for r in result.drops if r.stage == "near_image"} == {"gamma-n-near-caption-en", "gamma-n-near-caption-zh"}
    assert stage(result, "exact_image").skipped == {"no_image": 2}
    near = stage(result, "near_image")
    assert near.skipped == {"no_image": 2, "flat_image": 3}
    assert near.checks == {"candidates": 1, "pixel_check_not_run": 1}  # no media: said so


def test_a_records_images_in_order_of_first_use():
    sigs: dict = {}
    a, b = distinct_image(30), distinct_image(31)
    ha, hb = media_sha(a), media_sha(b)
    sigs[ha], sigs[hb] = signature(a), signature(b)

    def member(key: str, media: tuple[str, ...]) -> SampleSummary:
        return SampleSummary(key=key, group=key, source="s", record_uid="s:r", lang="en", question_type="open",
                             text="t", media_sha256=media)

    assert record_media(Unit("s:r", "s", (member("k1", (hb, ha)),)), sigs) == (hb, ha)
    both = Unit("s:r", "s", (member("k1", (ha,)), member("k2", (ha, hb)), member("k3", ("video-sha", hb))))
    assert record_media(both, sigs) == (ha, hb)  # a medium without a signature is left out
    assert record_media(Unit("s:r", "s", (member("k1", (ha,)), member("k2", (ha, hb)))), sigs) == (ha, hb)


def test_a_sequence_is_compared_position_by_position():
    im, other = distinct_image(40), distinct_image(41)
    black, white = signature(Image.new("L", (128, 128), 0)), signature(Image.new("L", (128, 128), 255))
    sig, near, far = signature(im), signature(jpeg85(resize90(im))), signature(other)
    coarse, fine = pair_distances(SignatureTable.of([sig]), np.array([0]), SignatureTable.of([near]), np.array([0]))
    exact_fit = NearImageConfig(coarse=int(coarse[0]), fine=int(fine[0]))
    distance = NearImageDedup._sequence_distance
    assert distance((sig, black), (near, black), exact_fit) == int(coarse[0])  # thresholds inclusive
    assert distance((sig, black), (near, white), exact_fit) is not None  # two flat slices: alike
    assert distance((sig, black), (near, far), exact_fit) is None  # flat against a picture
    grad = signature(Image.fromarray(np.tile(np.arange(128, dtype=np.uint8) // 8, (128, 1))))
    assert not grad.flat and distance((sig, black), (near, grad), NearImageConfig()) is None  # hashes alike
    assert distance((sig,), (far,), NearImageConfig()) is None
    assert fine[0] > 0  # this copy differs in the fine hash, which alone can refuse the pair
    assert distance((sig,), (near,), NearImageConfig(coarse=int(coarse[0]), fine=int(fine[0]) - 1)) is None


def _pixel_corpus():
    sigs, pixels, s = {}, {}, []

    def add(rid: str, im) -> None:
        pixels[media_sha(im)] = im
        s.extend(summaries_for("src", rid, [im], sigs))

    for k, rid in ((50, "a"), (51, "b")):  # JPEG copies: rejected at a strict minimum
        add(rid, distinct_image(k))
        add(f"{rid}-jpeg", jpeg85(distinct_image(k)))
    base = distinct_image(52)
    arr = np.asarray(base).copy()
    flat = arr.reshape(-1)
    flat[0] = flat[0] + 1 if flat[0] < 255 else 254  # one pixel value off by one: near-identical
    add("z", base)
    add("z-tweak", Image.fromarray(arr, base.mode))
    return s, sigs, pixels


def test_pixel_check_counts_every_candidate_and_its_minimum_is_inclusive():
    s, sigs, pixels = _pixel_corpus()

    def run(min_similarity: float):
        cfg = DedupConfig.from_recipe({"near_text": False, "decontam": "none",
                                       "near_image": {"min_similarity": min_similarity}})
        return deduplicate(s, sigs, cfg, ["src"], media=pixels.__getitem__)

    result = run(0.9999)
    near = stage(result, "near_image")
    assert near.checks == {"candidates": 3, "pixel_rejected": 2, "pixel_confirmed": 1}
    assert len(near.similarities) == 3 and all(isinstance(x, float) for x in near.similarities)
    assert {r.key for r in result.drops} == {"src-z-tweak-caption-en", "src-z-tweak-caption-zh"}
    exact = max(near.similarities)  # the tweaked pair's similarity, as the minimum itself
    assert {r.key for r in run(exact).drops} == {"src-z-tweak-caption-en", "src-z-tweak-caption-zh"}


def test_conflicts_carry_their_distance_and_similarity_and_near_ones_drop_both():
    sigs: dict = {}
    base = distinct_image(60)

    def record(rid: str, im, label: str) -> list[SampleSummary]:
        h = media_sha(im)
        sigs[h] = signature(im)
        return [SampleSummary(key=f"src-{rid}-{lang}", group=f"src:{rid}", source="src", record_uid=f"src:{rid}",
                              lang=lang, question_type="mcq", text="Grade?", media_sha256=(h,), task="q",
                              modality="fundus", label=label, slot=f"q-{lang}") for lang in ("en", "zh")]

    exact = deduplicate(record("g0", base, "0") + record("g1", png_level(base, 1), "1"), sigs, IMAGES_ONLY, ["src"])
    [c] = exact.conflicts
    assert (c.stage, c.distance, c.similarity) == ("exact_image", 0.0, 1.0)
    near_pair = record("g0", base, "0") + record("g1", jpeg85(resize90(base)), "1")
    kept = deduplicate(near_pair, sigs, IMAGES_ONLY, ["src"])  # no media: no pixel similarity, 1.0
    [c] = kept.conflicts
    assert (c.stage, c.similarity, c.action) == ("near_image", 1.0, "kept_both")
    both = deduplicate(near_pair, sigs, DedupConfig.from_recipe({"near_text": False, "decontam": "none",
                                                                 "label_conflicts": "drop_both"}), ["src"])
    assert {r.status for r in both.drops} == {"label_conflict"} and len(both.drops) == 4


def _record(sigs, pixels, rid: str, images, label: str = "x", modality: str = "fundus") -> list[SampleSummary]:
    shas = []
    for im in images:
        h = media_sha(im)
        sigs[h], pixels[h] = signature(im), im
        shas.append(h)
    return [SampleSummary(key=f"src-{rid}-{lang}", group=f"src:{rid}", source="src", record_uid=f"src:{rid}",
                          lang=lang, question_type="mcq", text="Grade?", media_sha256=tuple(shas), task="q",
                          modality=modality, label=label, slot=f"q-{lang}") for lang in ("en", "zh")]


def _tweaked(im):
    arr = np.asarray(im).copy()
    flat = arr.reshape(-1)
    flat[0] = flat[0] + 1 if flat[0] < 255 else 254
    return Image.fromarray(arr, im.mode)


def _near(s, sigs, pixels, **near_image):
    cfg = DedupConfig.from_recipe({"near_text": False, "decontam": "none", "near_image": near_image})
    return deduplicate(s, sigs, cfg, ["src"], media=pixels.__getitem__)


def test_the_pixel_check_compares_the_middle_image_and_a_failed_candidate_ends_nothing():
    sigs, pixels = {}, {}
    p, q, r = distinct_image(70), distinct_image(71), distinct_image(72)
    s = _record(sigs, pixels, "a", [p, q]) + _record(sigs, pixels, "b", [distinct_image(73), jpeg85(q)])
    s += _record(sigs, pixels, "m", [p, r]) + _record(sigs, pixels, "m-copy", [jpeg85(p), _tweaked(r)])
    result = _near(s, sigs, pixels, min_similarity=0.9999)
    # a-b: the middle images match, the first do not (a candidate, not a pair); m-copy: its first
    # image is a JPEG copy, its middle one near-identical, and the middle one is what is compared
    assert {r.key for r in result.drops} == {"src-m-copy-en", "src-m-copy-zh"}


def test_a_pair_of_two_modalities_meets_the_stricter_either_way_round():
    sigs, pixels = {}, {}
    a, c = distinct_image(80), distinct_image(81)
    s = _record(sigs, pixels, "a", [a], modality="x-ray") + _record(sigs, pixels, "b", [jpeg85(a)])
    s += _record(sigs, pixels, "c", [c]) + _record(sigs, pixels, "d", [jpeg85(c)], modality="x-ray")
    assert len(_near(s, sigs, pixels).drops) == 4  # both copies, at the default minimum
    assert _near(s, sigs, pixels, modalities={"x-ray": {"min_similarity": 0.99999}}).drops == []


def test_a_conflict_carries_the_pixel_similarity_and_later_pairs_still_count():
    sigs, pixels = {}, {}
    g, h = distinct_image(90), distinct_image(91)
    s = _record(sigs, pixels, "g0", [g], label="0") + _record(sigs, pixels, "g1", [jpeg85(g)], label="1")
    s += _record(sigs, pixels, "h0", [h]) + _record(sigs, pixels, "h1", [jpeg85(h)])
    result = _near(s, sigs, pixels)
    [c] = result.conflicts
    near = stage(result, "near_image")
    assert c.similarity == near.similarities[0] < 1.0  # the pair's own pixel similarity (checked first), not 1
    assert {r.key for r in result.drops} == {"src-h1-en", "src-h1-zh"}


def test_the_search_radius_follows_the_recipes_thresholds():
    sigs: dict = {}
    s = summaries_for("src", "a", [distinct_image(100)], sigs) + summaries_for("src", "b", [distinct_image(112)], sigs)
    assert deduplicate(s, sigs, IMAGES_ONLY, ["src"]).drops == []  # 18 coarse bits apart: not near by default
    wide = DedupConfig.from_recipe({"near_text": False, "decontam": "none", "near_image": {"coarse": 20, "fine": 64}})
    assert {r.key for r in deduplicate(s, sigs, wide, ["src"]).drops} == {"src-b-caption-en", "src-b-caption-zh"}
