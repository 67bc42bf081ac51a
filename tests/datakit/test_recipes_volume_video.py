"""The ct3d and video recipes end to end from the bundled samples: accounting, languages, groups,
energon's loader, byte reproducibility; and the `all` recipe holding every other recipe."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from PIL import Image

from datakit.build import build
from datakit.converters.base import ConvertContext
from datakit.recipe import list_recipes, load_recipe
from datakit.registry import get_converter
from datakit.release import release_files
from datakit.shard_writer import iter_samples
from datakit.sources.m3d_cap import M3DCapReader

BILINGUAL_TASKS = {"plane_mcq", "plane_open"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, sample_sources):
    root = tmp_path_factory.mktemp("volume_video")
    return {name: build(load_recipe(name), sample_sources, root / name) for name in ("ct3d", "video")}


def on_disk(out: Path) -> dict[str, dict[str, bytes]]:
    return {key: parts for tar in sorted(out.glob("*/*.tar")) for key, parts in iter_samples(tar)}


def turn_items(out: Path) -> list[dict]:
    """Every turn of every shard sample, with its conversation's fields and its own."""
    items = []
    for key, parts in on_disk(out).items():
        doc = json.loads(parts["json"])
        for n, turn in enumerate(doc["turns"]):
            items.append({**doc, **turn, "provenance": {**doc["provenance"], **turn["provenance"]},
                          "conversation": key, "turn": n, "question": doc["conversations"][2 * n]["value"],
                          "reply": doc["conversations"][2 * n + 1]["value"]})
    return items


def release_bytes(out: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in release_files(out)}


def test_ct3d_accounting_languages_and_groups(built):
    summary = built["ct3d"].summary
    acc = summary["accounting"]
    r = acc["records"]  # dedup may drop near-identical synthetic samples: they are accounted too
    assert r["inputs"] == r["emitted"] + r["rejected"] + r["duplicate"] + r["contaminated"] + r["ignored"]
    assert r["ignored"] == 1  # the held-out test phantom's report
    s = acc["samples"]  # offline: the LLM-written and translated samples are skipped_llm rows
    assert s["converted"] == s["emitted"] + s["duplicate"] + s["balanced_out"] + s["skipped_llm"]
    assert acc["samples"]["emitted"] > 0
    assert set(summary["sources"]) == {"m3d_cap", "nifti"}
    # the test phantom, and the M3D-VQA row about it, are held out
    assert summary["rejects"] == {"m3d_cap:held_out_split": 2}
    docs = turn_items(built["ct3d"].out)
    assert {d["task"] for d in docs} == {"report", "vqa_mcq", "vqa_open", "plane_mcq", "plane_open",
                                         "label_mcq", "label_open"}
    for d in docs:
        assert d["modality"] == "ct" and len(d["media"]) == 11
        assert d["lang"] == "en" or d["task"] in BILINGUAL_TASKS  # free text is English only offline
        # the slices are held once, ahead of the first question
        assert d["question"].startswith("<image>\n" * 11) == (d["turn"] == 0)
        assert "<image>" not in d["question"].removeprefix("<image>\n" * 11)
        assert "discussion:" not in d["reply"] and "study_findings:" not in d["reply"]
    manifest = pl.read_parquet(built["ct3d"].out / "manifest.parquet").filter(pl.col("kind") == "sample")
    records_of_group = manifest.group_by("group").agg(pl.col("record_uid").n_unique())
    assert records_of_group["record_uid"].max() == 1  # dedup's unit: no group spans two records
    volume = [d for d in docs if d["group"] == "m3d_cap:ct_quizze/000008/Axial_C__arterial_phase"]
    assert sorted({d["task"] for d in volume}) == ["plane_mcq", "plane_open", "report", "vqa_mcq", "vqa_open"]
    assert len([d for d in volume if d["task"] == "vqa_mcq"]) == 5  # one per M3D-VQA row of the volume
    twins = {}
    for d in docs:
        if d["task"] == "plane_mcq":
            twins.setdefault(d["group"], {})[d["lang"]] = d["answer"]
    assert twins and all(t["en"] == t["zh"] for t in twins.values())  # same letter in both languages


def test_video_accounting_and_frames(built):
    summary = built["video"].summary
    assert summary["accounting_line"].startswith("accounting OK")
    assert summary["tasks"] == {"caption": 3, "summary": 3} and summary["langs"] == {"en": 6}
    docs = {d["provenance"]["source_file"] + d["task"]: d for d in turn_items(built["video"].out)}
    real = docs["videos/surgery_endoscopy_monitor.mp4summary"]
    assert real["question_type"] == "summary" and [m["part"] for m in real["media"]] == [f"{i}.jpg" for i in range(6)]
    assert real["provenance"]["frame_indices"] == [3, 11, 19, 27, 34, 42]
    assert real["answer"].startswith("The clip opens on a darkened operating room")
    # summary and caption of one clip are two turns of one sample: the frames are stored once
    assert real["conversation"] == docs["videos/surgery_endoscopy_monitor.mp4caption"]["conversation"]


@pytest.mark.parametrize("name", ["ct3d", "video"])
def test_energon_loader_round_trips_every_sample(built, name):
    from megatron.energon import DefaultTaskEncoder, WorkerConfig, get_loader, get_train_dataset, get_val_dataset
    from megatron.energon.flavors.webdataset.sample_decoder import SampleDecoder

    from datakit.energon_format import COOKERS

    class Encoder(DefaultTaskEncoder):
        cookers = COOKERS
        decoder = SampleDecoder(image_decode="pil")

    out = built[name].out
    expected = on_disk(out)
    splits = yaml.safe_load((out / ".nv-meta" / "split.yaml").read_text())["split_parts"]
    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    seen = {}
    assert splits["train"] and splits["val"]  # every recipe has a val split energon can open
    for split in ("train", "val"):
        ds = get_val_dataset(out, split_part=split, worker_config=wc, batch_size=None, task_encoder=Encoder())
        seen.update({s.__key__: s for s in get_loader(ds)})
    assert set(seen) == set(expected)
    for key, sample in seen.items():
        doc = json.loads(expected[key]["json"])
        assert sample.conversation == doc["conversations"] and sample.meta["turns"] == doc["turns"]
        assert sum(t["value"].count("<image>") for t in sample.conversation) == len(sample.images) == len(doc["media"])
        for im, part in zip(sample.images, (m["part"] for m in doc["media"])):
            ref = Image.open(io.BytesIO(expected[key][part]))
            assert im.size == ref.size and im.tobytes() == ref.convert(im.mode).tobytes()
    train = get_train_dataset(out, split_part="train", worker_config=wc, batch_size=2, shuffle_buffer_size=8,
                              max_samples_per_sequence=4, task_encoder=Encoder())
    assert len(next(iter(get_loader(train))).__key__) == 2


@pytest.mark.parametrize("name", ["ct3d", "video"])
def test_rebuild_is_byte_identical(built, name, tmp_path, sample_sources):
    again = build(load_recipe(name), sample_sources, tmp_path / name, workers=2, slice_size=3)
    assert release_bytes(again.out) == release_bytes(built[name].out)
    assert again.release_sha256 == built[name].release_sha256


def _steps(recipe) -> dict[str, tuple]:
    return {s.source: (s.path, json.dumps(s.options, sort_keys=True),
                       [(c.converter, c.tasks, json.dumps(c.options, sort_keys=True)) for c in s.convert])
            for s in recipe.sources}


def test_all_recipe_holds_every_source_of_every_other_recipe():
    everything = _steps(load_recipe("all"))
    stages = {"stage1", "stage2", "stage3", "grpo"}  # composites checked in test_stage_recipes.py
    stages.add("modality")  # one task over many sources (test_converter_modality.py), not a source recipe
    others = [name for name in list_recipes() if name != "all" and name not in stages]
    assert {"ultrasound", "ct3d", "video"} <= set(others)
    covered = set()
    for name in others:
        for source, steps in _steps(load_recipe(name)).items():
            assert everything.get(source) == steps, f"recipe {name}: source {source} differs in all.yaml"
            covered.add(source)
    assert covered == set(everything)  # and nothing that no modality recipe has


def test_chinese_free_text_needs_the_translation(sample_sources):
    """Without the LLM's answer a Chinese report is a ``skipped_llm`` Missing, never English
    text under a Chinese question; the templated plane questions need no LLM."""
    from datakit.converters.base import Missing
    from datakit.llm.request import LLMReply
    from datakit.sample import Sample

    reader = M3DCapReader(sample_sources / "M3D_Cap_npy")
    record = next(r for r in reader.discover() if hasattr(r, "images"))
    loaded = reader.load(record)
    spec = get_converter("volume_vqa")
    ctx = ConvertContext(seed=1, tasks=("report", "plane_mcq"), langs=("en", "zh"))
    out = spec.fn(loaded, ctx)
    assert sorted((s.task, s.lang) for s in out if isinstance(s, Sample)) == [
        ("plane_mcq", "en"), ("plane_mcq", "zh"), ("report", "en")]
    assert [(m.task, m.lang, m.status, m.reason) for m in out if isinstance(m, Missing)] == [
        ("report", "zh", "skipped_llm", "not_asked")]
    [(name, request)] = spec.requests(loaded, ctx).items()
    report = loaded.facts["report"]
    assert request.task == "translate_zh" and report in request.messages[1].content[0]
    reply = LLMReply(cache_key="k", parsed={"translations": ["中文报告。"]})
    zh = [s for s in spec.fn(loaded, ConvertContext(seed=1, tasks=("report",), langs=("en", "zh"),
                                                    answers={name: reply})) if s.lang == "zh"]
    assert [s.answer for s in zh] == ["中文报告。"] and zh[0].provenance["llm_translation_cache_key"] == "k"
    with pytest.raises(ValueError, match="subset"):
        spec.fn(loaded, ConvertContext(seed=1, tasks=("report",), langs=("en",), options={"langs": ["zh"]}))


@pytest.mark.parametrize("bank", ["volume", "video"])
def test_every_task_has_ten_phrasings_per_language(bank):
    from datakit.converters.templates import template_bank

    templates = template_bank(bank)
    for task in templates.tasks:
        for lang in ("en", "zh"):
            assert len(templates.pool(task, "question", lang)) >= 10, (bank, task, lang)
