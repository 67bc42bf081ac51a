"""Training sources on the evaluation benchmarks' train splits (vqa_rad, slake, path_vqa, pmc_vqa,
iu_xray, mimic_cxr) on their bundled released layouts: the questions are exactly the benchmark
reader's train items, every file is a row with its reason, the test split is refused as a
training split, and a build checked against the registered test splits drops the shared images
as ``contaminated``."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from datakit.benchmarks import read_benchmark
from datakit.build import build
from datakit.cli import main as datakit_main
from datakit.converters.base import ConvertContext
from datakit.plan import make_plan
from datakit.recipe import load_recipe
from datakit.registry import get_converter, get_source
from datakit.sample import IMAGE_TOKEN
from datakit.sources.base import Rejection

VQA = ("vqa_rad", "slake", "path_vqa", "pmc_vqa")
REPORTS = ("iu_xray", "mimic_cxr")
# source -> {path: (status, reason)} the plan gives the bundled files and rows that are not records
ROWS = {
    "vqa_rad": {"VQA_RAD Dataset Public.json#8": ("rejected", "missing_image"),
                "VQA_RAD Image Folder/synpic203.jpg": ("ignored", "other_split_image"),
                "VQA_RAD Image Folder/synpic205.jpg": ("ignored", "other_split_image"),
                "VQA_RAD Image Folder/synpic204.jpg": ("ignored", "image_not_named")},
    "slake": {"train.json#105": ("rejected", "missing_image"),
              "imgs/xmlab3/source.jpg": ("ignored", "other_split_image"),
              "imgs/xmlab4/source.jpg": ("ignored", "other_split_image"),
              "test.json": ("ignored", "file_not_selected"), "validate.json": ("ignored", "file_not_selected")},
    "path_vqa": {"qas/train/train_qa.pkl#train_4": ("rejected", "missing_image"),
                 "images/test/test_0000.jpg": ("ignored", "other_split_image"),
                 "images/test/test_0001.jpg": ("ignored", "other_split_image"),
                 "images/val/val_0000.jpg": ("ignored", "other_split_image"),
                 "qas/test/test_qa.pkl": ("ignored", "file_not_selected"),
                 "qas/val/val_qa.pkl": ("ignored", "file_not_selected")},
    "pmc_vqa": {"train_2.csv#2": ("rejected", "missing_image"),
                "images/PMC9001_fig2.jpg": ("ignored", "other_split_image"),
                "test_2.csv": ("ignored", "file_not_selected")},
    "iu_xray": {"annotation.json#CXR13_IM-0013": ("rejected", "missing_image"),
                **{f"images/{s}/{v}.png": ("ignored", "other_split_image")
                   for s in ("CXR12_IM-0012", "CXR14_IM-0014") for v in (0, 1)}},
    "mimic_cxr": {"annotation.json#deadbeef": ("rejected", "missing_image"),
                  "images/p10/p10000898/s50771383/2a280266.jpg": ("ignored", "other_split_image")},
}
# the images train and test share (PathVQA: a train file with a test file's very pixels)
SHARED = {"vqa_rad": "VQA_RAD Image Folder/synpic201.jpg", "slake": "imgs/xmlab1/source.jpg",
          "path_vqa": "images/train/train_0001.jpg"}


def reader_for(name: str, base: Path, **options):
    cls = get_source(name)
    return cls(base / cls.top_folder, **options)


def recipe_file(tmp: Path, names: tuple[str, ...]) -> Path:
    sources = []
    for name in names:
        step = ({"converter": "captions", "tasks": ["report"], "options": {"langs": ["en"], "texts": {"report": "report"}}}
                if name in REPORTS else {"converter": "conversations", "tasks": ["vqa"]})
        sources.append({"source": name, "convert": [step]})
    path = tmp / "benchtrain.yaml"
    path.write_text(yaml.safe_dump({"name": "benchtrain", "seed": 3, "langs": ["en", "zh"], "sources": sources}))
    return path


def test_every_file_and_refused_row_has_its_reason(tmp_path, sample_sources):
    plan = make_plan(load_recipe(recipe_file(tmp_path, VQA + REPORTS)), sample_sources)
    for name, want in ROWS.items():
        got = {j.path: (j.status, j.reason) for j in plan.rejections if j.source == name}
        assert got == want, name
        assert all(r.images and all(p.is_file() for p in r.images) for r in plan.records if r.source == name)


@pytest.mark.parametrize("name", VQA)
def test_questions_are_the_benchmark_readers_train_items(sample_sources, name):
    reader = reader_for(name, sample_sources)
    records = [r for r in reader.discover() if not isinstance(r, Rejection)]
    got = {d["provenance"]["qid"] for r in records for d in r.meta["dialogues"]}
    items = read_benchmark(name, reader.root, "train").items
    assert got == {i.qid for i in items if all(p.is_file() for p in i.media)} and got
    assert all(d["provenance"]["split"] == "train" for r in records for d in r.meta["dialogues"])


def samples(name: str, base: Path, langs=("en", "zh")) -> list:
    reader = reader_for(name, base)
    loaded = [reader.load(r) for r in reader.discover() if not isinstance(r, Rejection)]
    if name in REPORTS:
        spec, ctx = get_converter("captions"), ConvertContext(seed=1, tasks=("report",), langs=langs,
                                                              options={"langs": ["en"], "texts": {"report": "report"}})
    else:
        spec, ctx = get_converter("conversations"), ConvertContext(seed=1, tasks=("vqa",), langs=langs)
    return [s for record in loaded for s in spec.fn(record, ctx)]


def test_vqa_answers_languages_and_multiple_choice(sample_sources):
    rad = {s.conversation[0]["value"]: s for s in samples("vqa_rad", sample_sources)}
    ribs = rad[f"{IMAGE_TOKEN}\nHow many ribs are fractured?"]
    assert ribs.answer == "3" and ribs.question_type == "open"
    assert rad[f"{IMAGE_TOKEN}\nIs the trachea midline?"].question_type == "yes_no"
    assert not any("Does the liver appear enlarged?" in q for q in rad)  # linked to a test question: dropped
    slake = samples("slake", sample_sources)
    zh = [s for s in slake if s.lang == "zh"]
    assert {s.answer for s in zh} == {"是", "左肺"} and [s.question_type for s in zh if s.answer == "是"] == ["yes_no"]
    assert samples("slake", sample_sources, langs=("en",)) == [s for s in slake if s.lang == "en"]
    stain = next(s for s in samples("pmc_vqa", sample_sources) if "stain" in s.conversation[0]["value"])
    assert stain.question_type == "mcq" and stain.answer == "B"
    assert stain.options == ["Gram stain", "Hematoxylin and eosin", "PAS", "Silver"]
    assert "\nB. Hematoxylin and eosin\n" in stain.conversation[0]["value"]
    assert stain.conversation[1]["value"] == "B. Hematoxylin and eosin"


def test_reports_are_report_samples_with_every_view(sample_sources):
    iu = samples("iu_xray", sample_sources)
    assert len(iu) == 2 and all(s.question_type == "report" and len(s.media) == 2 for s in iu)
    assert all(s.conversation[0]["value"].count(IMAGE_TOKEN) == 2 for s in iu)
    items = read_benchmark("iu_xray", sample_sources / "iu_xray", "train").items
    assert sorted(s.answer for s in iu) == sorted(i.answer for i in items if all(p.is_file() for p in i.media))
    assert {s.provenance["text_origin"] for s in iu} == {"annotation.json#CXR10_IM-0010", "annotation.json#CXR11_IM-0011"}
    assert [len(s.media) for s in samples("mimic_cxr", sample_sources)] == [1, 1]


def test_splits_option_refuses_the_evaluation_split_and_reads_validation(sample_sources):
    for name, split in (("slake", "test"), ("vqa_rad", "all"), ("path_vqa", "test")):
        with pytest.raises(ValueError, match="evaluation"):
            reader_for(name, sample_sources, splits=["train", split])
    with pytest.raises(ValueError, match="'dev' is not one of"):
        reader_for("slake", sample_sources, splits=["dev"])
    both = reader_for("slake", sample_sources, splits=["train", "validation"])
    ids = {r.record_id for r in both.discover() if not isinstance(r, Rejection)}
    assert "imgs/xmlab4/source.jpg" in ids


def test_a_file_the_benchmark_reader_refuses_is_one_row_naming_it(sources_copy):
    (sources_copy / "Slake1.0" / "train.json").write_text('[{"qid": 1, "img_name": "xmlab1/source.jpg"')
    out = list(reader_for("slake", sources_copy).discover())
    [bad] = [r for r in out if isinstance(r, Rejection) and r.status == "rejected"]
    assert (bad.path, bad.reason) == ("train.json", "bad_layout") and "not JSON" in bad.detail
    assert not [r for r in out if not isinstance(r, Rejection)]


def test_registered_test_splits_make_the_shared_train_images_contaminated(tmp_path, sample_sources):
    registry = tmp_path / "registry"
    for name, folder in (("vqa_rad", "VQA_RAD"), ("slake", "Slake1.0"), ("path_vqa", "pvqa")):
        assert datakit_main(["decontam", "add", name, str(sample_sources / folder), "--benchmark", name,
                             "--registry", str(registry)]) == 0
    result = build(load_recipe(recipe_file(tmp_path, tuple(SHARED))), sample_sources, tmp_path / "out",
                   decontam_dir=registry)
    rows = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    records = rows.filter((pl.col("kind") == "record") & (pl.col("status") == "contaminated"))
    assert dict(zip(records["source"], records["path"])) == SHARED
    samples_ = rows.filter((pl.col("kind") == "sample") & (pl.col("status") == "contaminated"))
    assert set(samples_["detail"]) == {"vqa_rad: VQA_RAD Image Folder/synpic201.jpg", "slake: imgs/xmlab1/source.jpg",
                                       "path_vqa: images/test/test_0000.jpg"}
    assert {b["name"] for b in result.summary["decontam"]} == set(SHARED)
    for name in SHARED:  # every other train record of these sets is emitted
        assert result.summary["sources"][name]["records_emitted"] >= 1
