"""Decontamination: registering benchmark folders, matching training records, the report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from datakit.dedup.benchmarks import plan_scan
from datakit.dedup.config import DedupConfig
from datakit.dedup.decontam import (ENV_DIR, Registry, add_benchmark, decontam_stages, list_benchmarks,
                                    registry_dir, remove_benchmark)
from datakit.dedup.report import format_report, write_report
from datakit.dedup.stages import deduplicate
from datakit.volume import encode_png, to_uint8

from dedup_images import busi_images, distinct_image, jpeg85, summaries_for


def training_images() -> list[Image.Image]:
    """Eight images: four real BUSI ones when bundled, procedural ones for the rest."""
    real = busi_images()[:4]
    return real + [distinct_image(500 + s) for s in range(8 - len(real))]


def training_corpus(images: list[Image.Image]):
    sigs: dict = {}
    summaries = []
    for k, im in enumerate(images):
        summaries += summaries_for("busi", f"r{k}", [im], sigs, text=f"record {k}", tasks=("label", "region"))
    return summaries, sigs


def test_registered_training_images_are_dropped(tmp_path: Path) -> None:
    images = training_images()
    bench = tmp_path / "vqa_rad"
    folder = bench / "VQA_RAD Image Folder"
    folder.mkdir(parents=True)
    images[0].save(folder / "synpic100.png", compress_level=9)  # same pixels, another encoding
    jpeg85(images[3]).save(folder / "synpic200.jpg", quality=95)  # a re-encoded copy
    for s in range(3):
        distinct_image(900 + s).save(folder / f"synpic{300 + s}.jpg")
    (bench / "VQA_RAD Dataset Public.json").write_text("[]")
    summary = add_benchmark("vqa_rad", bench, registry=tmp_path / "reg")
    assert summary["layout"] == "vqa_rad" and summary["images"] == 5

    summaries, sigs = training_corpus(images)
    cfg = DedupConfig()
    stages = decontam_stages(cfg, tmp_path / "reg")
    result = deduplicate(summaries, sigs, cfg, ["busi"], stages=stages)
    flagged = {r.key: r for r in result.drops if r.status == "contaminated"}
    want = {f"busi-r{k}-{t}-{l}" for k in (0, 3) for t in ("label", "region") for l in ("en", "zh")}
    assert set(flagged) == want
    assert {r.matched_file for r in flagged.values() if "-r0-" in r.key} == {"VQA_RAD Image Folder/synpic100.png"}
    assert {r.matched_file for r in flagged.values() if "-r3-" in r.key} == {"VQA_RAD Image Folder/synpic200.jpg"}
    assert all(r.benchmark == "vqa_rad" and r.stage == "decontam" for r in flagged.values())
    assert flagged["busi-r0-label-en"].distance == 0 and flagged["busi-r3-label-en"].distance >= 0
    assert result.stats[0].stage == "decontam" and result.stats[0].dropped == 8

    report = write_report(result, tmp_path / "out", stages[0].registry)
    assert report["contamination"]["vqa_rad"]["samples"] == 8
    assert report["contamination"]["vqa_rad"]["matched_files"] == 2
    assert any("contaminated by vqa_rad: 8 samples" in line for line in format_report(report))
    png = (tmp_path / "out" / "dedup_distances.png").read_bytes()
    write_report(result, tmp_path / "out", stages[0].registry)
    assert (tmp_path / "out" / "dedup_distances.png").read_bytes() == png, "the plot is byte-stable"
    assert png.startswith(b"\x89PNG")


def test_known_layouts_register_their_test_split(tmp_path: Path) -> None:
    slake = tmp_path / "Slake1.0"
    for k in (1, 2, 3):
        d = slake / "imgs" / f"xmlab{k}"
        d.mkdir(parents=True)
        distinct_image(k).save(d / "source.jpg")
        Image.new("L", (32, 32), 255).save(d / "mask.png")
    (slake / "test.json").write_text(json.dumps([{"img_name": "xmlab2/source.jpg", "question": "q"}] * 2))
    plan = plan_scan(slake)
    assert (plan.layout, plan.files) == ("slake", ["imgs/xmlab2/source.jpg"])
    assert plan_scan(slake, "all").files == [f"imgs/xmlab{k}/source.jpg" for k in (1, 2, 3)], "masks are not images"

    pvqa = tmp_path / "pvqa"
    for split in ("train", "test"):
        (pvqa / "images" / split).mkdir(parents=True)
        distinct_image(7).save(pvqa / "images" / split / f"{split}_0001.jpg")
    assert plan_scan(pvqa).files == ["images/test/test_0001.jpg"]

    pmc = tmp_path / "pmc"
    (pmc / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        distinct_image(len(name)).save(pmc / "images" / name)
    (pmc / "test.csv").write_text("Figure_path,Question,Answer\nb.jpg,q,a\nmissing.jpg,q,a\n")
    plan = plan_scan(pmc)
    assert plan.files == ["images/b.jpg"] and plan.skipped == {"listed_but_missing": ["images/missing.jpg"]}


def test_any_folder_volumes_tables_and_bad_files(tmp_path: Path) -> None:
    bench = tmp_path / "mixed"
    (bench / "sub").mkdir(parents=True)
    distinct_image(1).save(bench / "sub" / "a.png")
    (bench / "notes.txt").write_text("not an image")
    (bench / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    vol = np.random.default_rng(0).random((1, 4, 64, 64)).astype(np.float32)
    vol[0, 2] = 0.5  # a constant slice: registered, but flat
    np.save(bench / "case.npy", vol)
    buf = io.BytesIO()
    distinct_image(2).save(buf, format="PNG")
    pl.DataFrame({"image": [{"bytes": buf.getvalue(), "path": "x.png"}], "question": ["q"]}).write_parquet(bench / "test.parquet")
    summary = add_benchmark("mixed", bench, registry=tmp_path / "reg", workers=2)
    assert summary["layout"] == "folder"
    assert summary["images"] == 1 + 4 + 1 and summary["flat_images"] == 1
    assert summary["skipped"] == {"not_an_image": 1, "truncated_image": 1}
    assert summary["skipped_examples"]["truncated_image"] == ["broken.png"]
    reg = Registry.load("all", tmp_path / "reg")
    files = {f for _, f in reg.owners}
    assert {"sub/a.png", "case.npy#slice=0", "case.npy#slice=3", "test.parquet#image/row=0"} <= files

    # A training slice rendered by the volume converter matches the registered slice exactly.
    rendered = Image.open(io.BytesIO(encode_png(to_uint8(vol[0, 1]), 1).data))
    sigs: dict = {}
    summaries = summaries_for("m3d", "v1", [rendered], sigs)
    # A blank slice equals the registered constant slice, and still says nothing: not flagged.
    summaries += summaries_for("m3d", "blank", [Image.new("L", (64, 64), 0)], sigs)
    stages = decontam_stages(DedupConfig(), tmp_path / "reg")
    rows = stages[0].run(summaries, sigs, {})
    assert {r.key for r in rows} == {"m3d-v1-caption-en", "m3d-v1-caption-zh"}
    assert {r.matched_file for r in rows} == {"case.npy#slice=1"} and {r.distance for r in rows} == {0.0}
    assert stages[0].stats.skipped["flat_image"] == 1


def test_registry_location_listing_and_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "env_reg"))
    assert registry_dir() == tmp_path / "env_reg"
    monkeypatch.delenv(ENV_DIR)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert registry_dir() == tmp_path / "xdg" / "datakit" / "decontam"  # never the current folder
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert registry_dir() == tmp_path / "home" / ".local" / "share" / "datakit" / "decontam"
    bench = tmp_path / "b"
    bench.mkdir()
    distinct_image(4).save(bench / "x.png")
    add_benchmark("iu_xray", bench, registry=tmp_path / "reg")
    assert [b["name"] for b in list_benchmarks(tmp_path / "reg")] == ["iu_xray"]
    with pytest.raises(FileNotFoundError, match="datakit decontam add slake"):
        Registry.load(["slake"], tmp_path / "reg")
    meta = tmp_path / "reg" / "iu_xray.json"
    meta.write_text(meta.read_text().replace('"signature_version": "', '"signature_version": "old-'))
    with pytest.raises(ValueError, match="re-register"):
        Registry.load("all", tmp_path / "reg")
    remove_benchmark("iu_xray", tmp_path / "reg")
    assert list_benchmarks(tmp_path / "reg") == []
    assert decontam_stages(DedupConfig(), tmp_path / "reg") == []
    with pytest.raises(ValueError, match="benchmark name"):
        add_benchmark("Bad Name", bench, registry=tmp_path / "reg")
