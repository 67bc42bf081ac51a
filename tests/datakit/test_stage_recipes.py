"""The stage recipes (stage1, stage2, stage3, grpo) built from the bundled samples: each verifies
against its committed lock, every planted bad input is a manifest row with its reason, the
interleaved build is its own Energon sample kind, and the GRPO set is drawn from stage3's train
split only."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from datakit.build import build
from datakit.recipe import load_recipe
from datakit.release import compare_with_lock, sample_keys
from datakit.sample import INTERLEAVED_SCHEMA, SCHEMA
from datakit.shard_writer import iter_samples

REPO = Path(__file__).resolve().parents[2]
STAGES = ("stage1", "stage2", "stage3", "grpo")


@pytest.mark.parametrize("recipe", STAGES)
def test_stage_build_matches_committed_lock(stage_builds, recipe):
    assert compare_with_lock(stage_builds[recipe].out, REPO / "shards" / f"{recipe}.lock") == []


def _manifest(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "manifest.parquet")


def test_stage1_is_an_interleaved_dataset_with_near_duplicate_documents_dropped(stage_builds):
    out = stage_builds["stage1"].out
    meta = yaml.safe_load((out / ".nv-meta" / "dataset.yaml").read_text())
    assert meta["subflavors"]["datakit_format"] == INTERLEAVED_SCHEMA
    docs = [json.loads(p["json"]) for tar in sorted(out.glob("*/*.tar")) for _, p in iter_samples(tar)]
    assert docs and all(d["schema"] == INTERLEAVED_SCHEMA and "conversations" not in d for d in docs)
    assert all(d["text"].count("<image>") == len(d["media"]) for d in docs)
    rows = _manifest(out).filter((pl.col("status") == "duplicate") & (pl.col("kind") == "sample"))
    # the mirror of the knee page (one word changed, its own picture) is a MinHash near duplicate
    assert rows["stage"].to_list() == ["near_text"] and rows["record_uid"].to_list() == ["mmc4:docs_no_face_shard_0_v2:5"]
    assert rows["duplicate_of"].to_list()[0].startswith("mmc4-docs_no_face_shard_0_v2_1-")


@pytest.mark.parametrize("recipe, source, reasons", [
    ("stage1", "mmc4", {"bad_json", "missing_images", "empty_document", "image_without_document"}),
    ("stage2", "pubmedvision", {"image_token_mismatch"}),
    ("stage3", "pubmedvision", {"missing_image", "empty_conversation", "url_only_image"}),
    ("stage3", "llava_med", {"bad_conversation", "missing_image", "empty_conversation"}),
    ("stage3", "quilt_llava", {"bad_conversation"}),
    ("stage3", "vqa_med_2019", {"malformed_row", "missing_image", "image_without_questions"}),
    ("stage3", "mimic_cxr_vqa", {"missing_answer", "missing_image"}),
    ("stage3", "openmedreason", {"answer_mismatch", "no_options", "missing_image"}),
    *(("stage3", source, {"missing_image"}) for source in ("vqa_rad", "slake", "path_vqa", "pmc_vqa", "iu_xray",
                                                           "mimic_cxr")),
])
def test_bad_inputs_are_manifest_rows_with_their_reason(stage_builds, recipe, source, reasons):
    rows = _manifest(stage_builds[recipe].out).filter((pl.col("kind") == "record") & (pl.col("source") == source))
    rejected = rows.filter(pl.col("status") == "rejected")
    assert set(rejected["reason"].to_list()) == reasons
    assert all(p for p in rejected["path"].to_list())  # each names its file (and row)
    assert rows.filter(pl.col("status") == "emitted").height > 0


def test_stage3_holds_public_sets_and_counts_offline_cot_as_skipped(stage_builds):
    summary = stage_builds["stage3"].summary
    for source in ("pubmedvision", "llava_med", "quilt_llava", "vqa_med_2019", "mimic_cxr_vqa", "openmedreason", "busi",
                   "vqa_rad", "slake", "path_vqa", "pmc_vqa", "iu_xray", "mimic_cxr"):
        assert summary["sources"][source]["samples"] > 0, source
    assert summary["tasks"]["cot"] == 2 and summary["tasks"]["instruction"] > 0 and summary["tasks"]["vqa"] > 0
    skipped = _manifest(stage_builds["stage3"].out).filter(pl.col("status") == "skipped_llm")
    cot = skipped.filter(pl.col("task") == "cot_mcq")  # offline: every planned CoT sample is counted
    assert cot.height > 0 and set(cot["reason"].to_list()) == {"offline"}
    # the other LLM steps `all` wires (enrichment, video MCQ, translations) are skipped alike
    assert {"enriched_qa", "video_mcq", "report"} <= set(skipped["task"].to_list())
    meta = yaml.safe_load((stage_builds["stage3"].out / ".nv-meta" / "dataset.yaml").read_text())
    assert meta["subflavors"]["datakit_format"] == SCHEMA


def test_stage3_public_conversations_are_v2_samples(stage_builds):
    """A released multi-turn conversation is one sample, its turns in order; one image's
    single-turn questions (VQA-Med-2019) are the turns of one sample; CoT stays single-turn."""
    out = stage_builds["stage3"].out
    docs = [json.loads(p["json"]) for tar in sorted(out.glob("*/*.tar")) for _, p in iter_samples(tar)]
    assert all(d["schema"] == SCHEMA and len(d["turns"]) * 2 == len(d["conversations"]) for d in docs)
    quilt = [d for d in docs if d["source"] == "quilt_llava" and len(d["turns"]) > 1]
    assert quilt and all([t.get("follows_previous", False) for t in d["turns"]] ==
                         [False] + [True] * (len(d["turns"]) - 1) for d in quilt)
    vqa_med = [d for d in docs if d["source"] == "vqa_med_2019"]
    assert max(len(d["turns"]) for d in vqa_med) > 1 and all("follows_previous" not in t
                                                              for d in vqa_med for t in d["turns"])
    cot = [d for d in docs if d["source"] == "openmedreason"]
    assert cot and all(len(d["turns"]) == 1 and d["turns"][0]["question_type"] == "mcq" for d in cot)
    emitted = _manifest(out).filter((pl.col("status") == "emitted") & (pl.col("kind") == "sample"))
    assert emitted["conversation"].null_count() == 0 and emitted["turn"].null_count() == 0


def test_grpo_is_drawn_from_stage3_train_only(stage_builds):
    drawn = sample_keys(stage_builds["grpo"].out)
    stage3 = {split: {t["key"] for tar in sorted((stage_builds["stage3"].out / split).glob("*.tar"))
                      for _, p in iter_samples(tar) for t in json.loads(p["json"])["turns"]}
              for split in ("train", "val")}
    assert set(drawn) == {"train"} and drawn["train"]
    assert set(drawn["train"]) <= stage3["train"]  # each drawn sample is one turn of a stage3 train sample
    report = json.loads((stage_builds["grpo"].out / "grpo_report.json").read_text())
    assert report["selected_total"] == len(drawn["train"]) and report["yes_no_share"] <= 0.05 + 1e-9
    docs = [json.loads(p["json"]) for tar in sorted(stage_builds["grpo"].out.glob("grpo-*.tar"))
            for _, p in iter_samples(tar)]
    assert docs and all(len(d["turns"]) == 1 for d in docs)  # one question at a time
    assert not any(d["turns"][0]["question_type"] == "mcq" for d in docs)  # rewritten as open questions


def test_a_recipe_mixing_documents_and_vqa_is_refused(tmp_path, sample_sources):
    recipe = {"name": "mixed", "seed": 1, "langs": ["en"], "sources": [
        {"source": "mmc4", "convert": [{"converter": "interleaved", "tasks": ["document"]}]},
        {"source": "quilt_llava", "convert": [{"converter": "conversations", "tasks": ["instruction"]}]}]}
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(RuntimeError, match="mixes sample kinds"):
        build(load_recipe(path), sample_sources, tmp_path / "out")


def test_grpo_recipe_names_an_existing_base(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "seed": 1, "grpo_prep": {"from": "nope"}}))
    with pytest.raises(ValueError, match="grpo_prep.from"):
        load_recipe(path)
    path.write_text(yaml.safe_dump({"name": "g", "seed": 1, "grpo_prep": {"from": "stage3", "yes_no_share": 2}}))
    with pytest.raises(ValueError, match="yes_no_share"):
        load_recipe(path)


def _steps(recipe) -> dict[str, tuple]:
    return {s.source: (s.path, json.dumps(s.options, sort_keys=True),
                       [(c.converter, c.tasks, json.dumps(c.options, sort_keys=True)) for c in s.convert])
            for s in recipe.sources}


def test_stage_recipes_convert_table1_sources_as_their_own_recipes_do():
    everything, stage3 = _steps(load_recipe("all")), _steps(load_recipe("stage3"))
    captions, stage2 = _steps(load_recipe("captions")), _steps(load_recipe("stage2"))
    cot = ("llm_enrich", ("cot_mcq",), "{}")
    for source, (path, options, steps) in everything.items():
        if source in captions:  # image-caption pairs are stage 2, converted as `captions` does
            assert source not in stage3 and stage2[source] == captions[source]
            continue
        got_path, got_options, got_steps = stage3[source]
        assert (got_path, got_options) == (path, options), source
        assert [s for s in got_steps if s != cot] == steps, source  # plus CoT on its multiple choice
