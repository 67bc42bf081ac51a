"""The dedup stages over sample summaries: units, keep choice, rows, counts, determinism."""

from __future__ import annotations

import random

import pytest

from datakit.dedup.config import DedupConfig
from datakit.dedup.stages import deduplicate
from datakit.dedup.summary import SampleSummary
from datakit.errors import RecipeError

from dedup_images import distinct_image, jpeg85, png_level, resize90, summaries_for

_WORDS = ("axial coronal liver kidney spleen lesion mass cyst hypodense hyperdense margin segment lobe "
          "contrast enhancement calcification wall fluid duct vessel nodule rim thin thick left right").split()


def caption(k: int) -> str:
    """A distinct 30-word caption per ``k``."""
    rng = random.Random(k)
    return " ".join(rng.choice(_WORDS) for _ in range(30))


def build_corpus():
    """Three sources; planted: an exact copy, a near copy, a caption paraphrase, template
    questions that share wording but not images, and a 3-slice record with its JPEG copy."""
    sigs: dict = {}
    s = []
    ims = [distinct_image(k) for k in range(12)]
    for k in range(8):
        s += summaries_for("alpha", f"r{k}", [ims[k]], sigs, text=caption(k),
                           tasks=("caption", "region"))
    s += summaries_for("beta", "exact", [png_level(ims[0], 9)], sigs, text="unrelated one")
    s += summaries_for("beta", "near", [jpeg85(resize90(ims[1]))], sigs, text="unrelated two")
    s += summaries_for("gamma", "para", [ims[8]], sigs, text=paraphrase(caption(2)))
    for k in (9, 10):
        s += summaries_for("gamma", f"mcq{k}", [ims[k]], sigs, text="Which organ is shown? A. liver B. kidney",
                           question_type="mcq", tasks=("organ_mcq",))
    slices = [distinct_image(100 + k) for k in range(3)]
    s += summaries_for("alpha", "vol", slices, sigs, text="volume one")
    s += summaries_for("gamma", "volcopy", [jpeg85(im) for im in slices], sigs, text="volume two")
    s += summaries_for("gamma", "volother", slices[:2] + [ims[11]], sigs, text="volume three")
    return s, sigs


def paraphrase(text: str) -> str:
    """Case, punctuation and one word changed: Jaccard of word 3-grams about 0.8."""
    words = text.split()
    words[15] = "adenoma"
    return ", ".join(words).upper() + "."


PRIORITY = ["alpha", "beta", "gamma"]


def by_key(result) -> dict:
    return {r.key: r for r in result.drops}


def test_planted_duplicates_dropped_with_their_twins() -> None:
    summaries, sigs = build_corpus()
    result = deduplicate(summaries, sigs, DedupConfig(), PRIORITY)
    drops = by_key(result)
    assert {k for k, r in drops.items() if r.stage == "exact_image"} == {"beta-exact-caption-en", "beta-exact-caption-zh"}
    assert drops["beta-exact-caption-en"].duplicate_of == "alpha-r0-caption-en"
    assert drops["beta-exact-caption-zh"].duplicate_of == "alpha-r0-caption-zh"
    assert drops["beta-exact-caption-en"].distance == 0
    assert {k for k, r in drops.items() if r.stage == "near_image"} == {
        "beta-near-caption-en", "beta-near-caption-zh", "gamma-volcopy-caption-en", "gamma-volcopy-caption-zh"}
    assert drops["gamma-volcopy-caption-en"].duplicate_of == "alpha-vol-caption-en"
    # The paraphrase of r2's caption: its EN text matches, and its ZH twin goes with it.
    assert {k for k, r in drops.items() if r.stage == "near_text"} == {"gamma-para-caption-en", "gamma-para-caption-zh"}
    assert drops["gamma-para-caption-en"].duplicate_of == "alpha-r2-caption-en"
    assert 0 < drops["gamma-para-caption-en"].distance <= 0.3
    assert all(r.status == "duplicate" for r in result.drops)


def test_what_must_stay() -> None:
    summaries, sigs = build_corpus()
    dropped = set(by_key(deduplicate(summaries, sigs, DedupConfig(), PRIORITY)))
    # Template questions repeat wording across different images by design.
    assert not {k for k in dropped if "mcq" in k}
    # Same record, two tasks with the same caption text: a converter's choice, not a duplicate.
    assert not {k for k in dropped if k.startswith("alpha-r")}
    # A sequence sharing two of three slices is a different record.
    assert not {k for k in dropped if "volother" in k}


def test_accounting_per_stage() -> None:
    summaries, sigs = build_corpus()
    result = deduplicate(summaries, sigs, DedupConfig(), PRIORITY)
    alive = len(summaries)
    for st in result.stats:
        assert st.inputs == alive and st.kept + st.dropped == st.inputs
        alive = st.kept
    assert len(result.emitted(summaries)) + len(result.drops) == len(summaries)
    assert [st.clusters for st in result.stats] == [1, 2, 1]


def test_same_result_for_any_input_order() -> None:
    summaries, sigs = build_corpus()
    ref = deduplicate(summaries, sigs, DedupConfig(), PRIORITY)
    for seed in range(3):
        shuffled = list(summaries)
        random.Random(seed).shuffle(shuffled)
        got = deduplicate(shuffled, dict(reversed(list(sigs.items()))), DedupConfig(), PRIORITY)
        assert got.drops == ref.drops
        assert [s.to_dict() for s in got.stats] == [s.to_dict() for s in ref.stats]


def test_source_priority_decides_which_copy_stays() -> None:
    summaries, sigs = build_corpus()
    result = deduplicate(summaries, sigs, DedupConfig(), ["beta", "alpha", "gamma"])
    drops = by_key(result)
    assert "alpha-r0-caption-en" in drops and "alpha-r0-region-zh" in drops, "all tasks of the record go"
    assert drops["alpha-r0-region-zh"].duplicate_of == "beta-exact-caption-zh"
    assert "beta-exact-caption-en" not in drops


def test_stages_can_be_switched_off() -> None:
    summaries, sigs = build_corpus()
    cfg = DedupConfig.from_recipe({"near_image": False, "near_text": False, "decontam": "none"})
    result = deduplicate(summaries, sigs, cfg, PRIORITY)
    assert [s.stage for s in result.stats] == ["exact_image"]


def test_bad_input_is_refused() -> None:
    a = SampleSummary(key="k1", group="g", source="s", record_uid="s:1", lang="en", question_type="open", text="t")
    b = SampleSummary(key="k2", group="g", source="s", record_uid="s:2", lang="zh", question_type="open", text="t")
    with pytest.raises(ValueError, match="group 'g' spans records"):
        deduplicate([a, b], {}, DedupConfig(), [])
    with pytest.raises(ValueError, match="appears twice"):
        deduplicate([a, a], {}, DedupConfig(), [])


def test_config_from_recipe() -> None:
    cfg = DedupConfig.from_recipe({"near_image": {"coarse": 6}, "near_text": {"threshold": 0.8, "question_types": ["caption"]},
                                   "decontam": ["vqa_rad"]})
    assert cfg.near_image.coarse == 6 and cfg.near_image.fine == 16
    assert cfg.near_text.minhash.threshold == 0.8 and cfg.near_text.question_types == ("caption",)
    assert DedupConfig.from_recipe(cfg.to_dict()) == cfg
    assert DedupConfig.from_recipe(None) == DedupConfig()
    for bad, where in [({"near_txt": {}}, "dedup.near_txt"), ({"near_image": {"coarse": 40}}, "dedup.near_image"),
                       ({"near_text": {"threshold": 1.5}}, "dedup.near_text"),
                       ({"near_text": {"question_types": ["essay"]}}, "dedup.near_text"),
                       ({"decontam": 3}, "dedup.decontam"), ({"exact_image": "yes"}, "dedup.exact_image")]:
        with pytest.raises(RecipeError, match=where.replace(".", r"\.")):
            DedupConfig.from_recipe(bad)
