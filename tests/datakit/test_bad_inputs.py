"""Every bad case a real copy of a dataset holds is rejected by name or handled, and the rest
of the build is intact and accounted: one row per file under the source's top folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from busi_variants import raw_png
from datakit.build import build
from datakit.manifest import RECORD_STATUSES
from datakit.plan import make_plan
from datakit.recipe import load_recipe
from datakit.sources.busi import BusiReader
from datakit.sources.walk import walk_tree

# path under Dataset_BUSI_with_GT -> (status, reason) the manifest must give it
EXPECTED = {
    "benign/benign (90).png": ("rejected", "too_large"),
    "benign/benign (91).png": ("rejected", "outside_source_tree"),
    "linked_elsewhere": ("rejected", "outside_source_tree"),
    "benign/benign (3)_Mask.png": ("rejected", "stray_mask_name"),
    "benign/notes.txt": ("ignored", "unknown_extension"),
    "benign/.DS_Store": ("ignored", "hidden_file"),
    "other/other (1).png": ("rejected", "unknown_class_folder"),
    "Normal/normal (99).png": ("rejected", "class_folder_case_mismatch"),
    "benign/old/benign (3).png": ("rejected", "unexpected_subfolder"),
    "README.txt": ("ignored", "outside_class_folders"),
    "malignant/malignant (93).png": ("rejected", "truncated_image"),
}


def plant_bad_inputs(sources: Path, outside: Path) -> None:
    busi = sources / "Dataset_BUSI_with_GT"
    mask = busi / "benign" / "benign (3)_mask.png"
    image = busi / "benign" / "benign (3).png"
    # over Pillow's decompression-bomb limit: a 20000 x 20000 header (never decoded)
    (busi / "benign" / "benign (90).png").write_bytes(raw_png(20000, 20000, 8, 0, b"\x00" * 10))
    shutil.copyfile(mask, busi / "benign" / "benign (90)_mask.png")
    # a symlink to a file outside the source folder, and one to a folder outside it
    outside.mkdir()
    shutil.copyfile(image, outside / "private.png")
    (busi / "benign" / "benign (91).png").symlink_to(outside / "private.png")
    shutil.copyfile(mask, busi / "benign" / "benign (91)_mask.png")
    (busi / "linked_elsewhere").symlink_to(outside, target_is_directory=True)
    shutil.copyfile(mask, busi / "benign" / "benign (3)_Mask.png")
    (busi / "benign" / "notes.txt").write_text("reader notes\n")
    (busi / "benign" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (busi / "other").mkdir()
    shutil.copyfile(image, busi / "other" / "other (1).png")
    (busi / "Normal").mkdir()
    shutil.copyfile(busi / "normal" / "normal (3).png", busi / "Normal" / "normal (99).png")
    (busi / "benign" / "old").mkdir()
    shutil.copyfile(image, busi / "benign" / "old" / "benign (3).png")
    (busi / "README.txt").write_text("BUSI\n")
    truncated = busi / "malignant" / "malignant (93).png"
    truncated.write_bytes((busi / "malignant" / "malignant (3).png").read_bytes()[:400])
    shutil.copyfile(busi / "malignant" / "malignant (3)_mask.png", busi / "malignant" / "malignant (93)_mask.png")


@pytest.fixture(scope="module")
def bad_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    src = tmp / "sources"
    shutil.copytree(Path(__file__).resolve().parents[2] / "datakit" / "sample_sources", src,
                    ignore=shutil.ignore_patterns("README.md"))
    plant_bad_inputs(src, tmp / "outside")
    return src, build(load_recipe("ultrasound"), src, tmp / "out")


def test_each_bad_case_has_its_row_naming_the_file(bad_build):
    _, result = bad_build
    rows = pl.read_parquet(result.out / "manifest.parquet").filter(
        (pl.col("kind") == "record") & (pl.col("source") == "busi"))
    by_path = {r["path"]: r for r in rows.iter_rows(named=True)}
    for path, (status, reason) in EXPECTED.items():
        assert path in by_path, f"no manifest row for {path}"
        row = by_path[path]
        assert (row["status"], row["reason"]) == (status, reason), (path, row)
    assert "20000x20000" in by_path["benign/benign (90).png"]["detail"]
    assert "private.png" in by_path["benign/benign (91).png"]["detail"]
    assert "'Normal' differs from class 'normal' only in case" in by_path["Normal/normal (99).png"]["detail"]
    assert not any("private" in p for p in by_path if p != "benign/benign (91).png")  # the link was not followed


def test_the_rest_of_the_build_is_intact_and_accounted(bad_build, ultrasound_build):
    _, result = bad_build
    clean = ultrasound_build.summary["sources"]
    got = result.summary["sources"]
    assert got["busi"]["samples"] == clean["busi"]["samples"]
    assert got["busi"]["records_emitted"] == clean["busi"]["records_emitted"] == 15
    assert got["aul"] == clean["aul"] and got["abdomen_us"] == clean["abdomen_us"]
    acc = result.summary["accounting"]["records"]
    assert acc["inputs"] == sum(acc[s] for s in RECORD_STATUSES)
    assert acc["ignored"] >= 3 and acc["rejected"] >= 8


def test_every_file_under_the_top_folder_is_accounted_for(bad_build):
    src, _ = bad_build
    root = src / "Dataset_BUSI_with_GT"
    plan = make_plan(load_recipe("ultrasound"), src)
    rows = {j.path for j in plan.rejections if j.source == "busi"} | {r.primary_file for r in plan.records}
    # a record's masks are accounted with its row (emitted, or refused as a whole)
    records = [r for r in BusiReader(root).discover() if not hasattr(r, "reason")]
    assert {r.primary_file for r in records} <= rows
    covered = rows | {r.rel(p) for r in records for p in r.masks}
    files = {e.rel.as_posix() for e in walk_tree(root)}
    assert files - covered == set()
    assert {"benign/notes.txt", "linked_elsewhere", "benign/benign (90)_mask.png"} <= files


def test_one_unexpected_error_is_one_row_unless_strict(tmp_path, sources_copy, monkeypatch, capsys):
    from datakit.cli import print_summary

    original_load = BusiReader.load

    def flaky(self, record):
        if record.record_id == "benign/benign (3)":
            raise KeyError("no such field")
        return original_load(self, record)

    monkeypatch.setattr(BusiReader, "load", flaky)
    result = build(load_recipe("ultrasound"), sources_copy, tmp_path / "o")
    rows = pl.read_parquet(tmp_path / "o" / "manifest.parquet").filter(pl.col("reason") == "internal_error")
    assert rows.height == 1 and rows["path"][0] == "benign/benign (3).png"
    assert rows["detail"][0] == "KeyError: 'no such field'"
    assert result.summary["internal_errors"]["count"] == 1
    assert result.summary["sources"]["busi"]["records_emitted"] == 14
    print_summary(result.summary, result.out, result.release_sha256)
    assert "INTERNAL ERRORS: 1" in capsys.readouterr().out
    with pytest.raises(KeyError, match="no such field"):
        build(load_recipe("ultrasound"), sources_copy, tmp_path / "strict", strict=True)


def test_a_reader_crash_costs_its_source_only(tmp_path, sources_copy, monkeypatch):
    def broken(self):
        raise PermissionError(13, "Permission denied")
        yield  # pragma: no cover

    monkeypatch.setattr(BusiReader, "discover", broken)
    result = build(load_recipe("ultrasound"), sources_copy, tmp_path / "o")
    assert result.summary["rejects"]["busi:internal_error"] == 1
    assert result.summary["sources"]["aul"]["samples"] > 0
