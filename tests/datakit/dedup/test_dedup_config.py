"""The recipe's dedup section: per-modality near-image thresholds (each key defaulting to the
recipe's own, a pair meeting the stricter of its two modalities in either order), the form written
back (``to_dict``) for every stage switched off, and each refusal with its message."""

from __future__ import annotations

import pytest

from datakit.dedup.config import DedupConfig
from datakit.dedup.image_index import NearImageConfig
from datakit.errors import RecipeError


def test_a_modality_inherits_the_recipes_thresholds_key_by_key():
    cfg = DedupConfig.from_recipe({"near_image": {"coarse": 5, "fine": 20, "min_similarity": 0.9,
                                                  "modalities": {"fundus": {"fine": 12},
                                                                 "x-ray": {"coarse": 3, "min_similarity": 0.99}}}})
    assert cfg.near_image == NearImageConfig(coarse=5, fine=20, min_similarity=0.9)
    assert cfg.near_image_modalities == {"fundus": NearImageConfig(coarse=5, fine=12, min_similarity=0.9),
                                         "x-ray": NearImageConfig(coarse=3, fine=20, min_similarity=0.99)}
    # without a recipe section the defaults are the base
    assert DedupConfig.from_recipe({"near_image": {"modalities": {"ct": {"fine": 9}}}}).near_image_modalities == \
        {"ct": NearImageConfig(fine=9)}


@pytest.mark.parametrize("a,b", [("fundus", "x-ray"), ("x-ray", "fundus")])
def test_a_pair_meets_the_stricter_of_its_modalities_in_either_order(a, b):
    cfg = DedupConfig.from_recipe({"near_image": {"coarse": 5, "fine": 20, "min_similarity": 0.9,
                                                  "modalities": {"fundus": {"fine": 12},
                                                                 "x-ray": {"coarse": 3, "min_similarity": 0.99}}}})
    assert cfg.near_image_for(a, b) == NearImageConfig(coarse=3, fine=12, min_similarity=0.99)
    assert cfg.near_image_for(a, "ct") == cfg.near_image_modalities[a].stricter(cfg.near_image)
    assert cfg.near_image_for("ct", a) == cfg.near_image_modalities[a].stricter(cfg.near_image)
    assert cfg.near_image_for("ct", "mri") == cfg.near_image
    assert cfg.near_image_for(a, a) == cfg.near_image_modalities[a]
    off = DedupConfig(near_image=None, near_image_modalities={"ct": NearImageConfig(fine=3)})
    assert off.near_image_for("ct", "mri") == NearImageConfig(fine=3)


def test_every_stage_off_is_written_back_as_read():
    cfg = DedupConfig.from_recipe({"exact_image": False, "near_image": False, "near_text": False, "decontam": "none"})
    assert (cfg.exact_image, cfg.near_image, cfg.near_text, cfg.decontam) == (False, None, None, "none")
    assert cfg.to_dict() == {"exact_image": False, "near_image": None, "label_conflicts": "keep", "near_text": None,
                             "decontam": "none"}
    assert DedupConfig.from_recipe(cfg.to_dict()) == cfg


def test_modalities_and_policies_are_written_back():
    raw = {"near_image": {"coarse": 6, "modalities": {"x-ray": {"fine": 10}, "fundus": {"min_similarity": 0.98}}},
           "label_conflicts": "drop_both", "decontam": ["vqa_rad"]}
    cfg = DedupConfig.from_recipe(raw)
    out = cfg.to_dict()
    assert out["near_image"] == {"coarse": 6, "fine": 16, "min_similarity": 0.95, "modalities": {
        "fundus": {"coarse": 6, "fine": 16, "min_similarity": 0.98},
        "x-ray": {"coarse": 6, "fine": 10, "min_similarity": 0.95}}}
    assert list(out["near_image"]["modalities"]) == ["fundus", "x-ray"]  # sorted
    assert out["label_conflicts"] == "drop_both" and out["decontam"] == ["vqa_rad"]
    assert DedupConfig.from_recipe(out) == cfg
    assert DedupConfig().to_dict()["decontam"] == "all"


@pytest.mark.parametrize("modalities,message", [
    (["fundus"], "dedup.near_image.modalities: must be a mapping of modality -> thresholds, got ['fundus']"),
    ({"xray": {"fine": 3}}, "dedup.near_image.modalities.xray: unknown modality; known: "),
    ({"ct": 5}, "dedup.near_image.modalities.ct: must be a mapping with keys among coarse, fine, min_similarity"),
    ({"ct": {"fine": 3, "radius": 1}},
     "dedup.near_image.modalities.ct: must be a mapping with keys among coarse, fine, min_similarity"),
    ({"ct": {"fine": 99}}, "dedup.near_image.modalities.ct: near-image thresholds coarse=8 fine=99 out of range"),
    ({"ct": {"min_similarity": 0}}, "dedup.near_image.modalities.ct: near-image min_similarity=0 must be in (0, 1]"),
])
def test_bad_modality_thresholds_are_refused_by_name(modalities, message):
    with pytest.raises(RecipeError) as e:
        DedupConfig.from_recipe({"near_image": {"modalities": modalities}})
    assert str(e.value).startswith(message)


def test_each_threshold_key_may_be_set_per_modality():
    cfg = DedupConfig.from_recipe({"near_image": {"modalities": {"ct": {"coarse": 2, "fine": 4, "min_similarity": 1.0}}}})
    assert cfg.near_image_modalities["ct"] == NearImageConfig(coarse=2, fine=4, min_similarity=1.0)
