"""Dedup and decontamination inside a real build: planted copies become ``duplicate`` rows naming
the kept sample, registered benchmark images make training samples ``contaminated``, and the
accounting invariant holds with both."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import polars as pl
from PIL import Image

from datakit.build import build
from datakit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def _busi_image(sources: Path, name: str) -> Path:
    return sources / "Dataset_BUSI_with_GT" / name.split(" ")[0] / f"{name}.png"


def _jpeg_q85(path: Path) -> Image.Image:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, format="JPEG", quality=85)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_planted_copies_are_dropped_as_duplicates(tmp_path, sources_copy):
    orig = _busi_image(sources_copy, "malignant (12)")
    copy = orig.with_name("malignant (912).png")
    im = _jpeg_q85(orig)
    im.resize((int(im.width * 0.9), int(im.height * 0.9))).save(copy)  # re-encoded and resized
    mask = Image.open(orig.with_name("malignant (12)_mask.png"))
    mask.resize((int(im.width * 0.9), int(im.height * 0.9)), Image.NEAREST).save(copy.with_name("malignant (912)_mask.png"))

    result = build(load_recipe("ultrasound"), sources_copy, tmp_path / "o")
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    dups = manifest.filter((pl.col("kind") == "sample") & (pl.col("status") == "duplicate"))
    assert dups.height > 0
    assert set(dups["record_uid"]) == {"busi:malignant/malignant (912)"}  # the later id is dropped
    assert all("malignant_12" in k for k in dups["duplicate_of"])
    assert set(dups["stage"]) <= {"exact_image", "near_image"}
    rec = manifest.filter((pl.col("kind") == "record") & (pl.col("id") == "busi:malignant/malignant (912)"))
    assert rec["status"][0] == "duplicate"
    acc = result.summary["accounting"]
    assert acc["records"]["duplicate"] == 1
    s = acc["samples"]  # offline: the LLM-written and translated samples are skipped_llm rows
    assert s["converted"] == s["emitted"] + s["duplicate"] + s["balanced_out"] + s["skipped_llm"]
    assert (tmp_path / "o" / "dedup_report.json").exists() and (tmp_path / "o" / "dedup_distances.png").exists()


def test_registered_benchmark_images_contaminate_training_samples(tmp_path, sources_copy, monkeypatch):
    registry = tmp_path / "registry"
    bench = tmp_path / "bench_imgs"
    bench.mkdir()
    a = _busi_image(sources_copy, "benign (3)")
    b = _busi_image(sources_copy, "normal (7)")
    Image.open(a).save(bench / "test_0001.png")
    _jpeg_q85(b).save(bench / "test_0002.jpg", quality=95)
    res = subprocess.run([sys.executable, "-m", "datakit.cli", "decontam", "add", "mybench", str(bench),
                          "--split", "all", "--registry", str(registry)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    monkeypatch.setenv("DATAKIT_DECONTAM_DIR", str(registry))
    result = build(load_recipe("ultrasound"), sources_copy, tmp_path / "o")
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    bad = manifest.filter((pl.col("kind") == "sample") & (pl.col("status") == "contaminated"))
    assert set(bad["record_uid"]) == {"busi:benign/benign (3)", "busi:normal/normal (7)"}
    assert all(d.startswith("mybench: ") for d in bad["detail"])
    assert {d.split(": ")[1] for d in bad["detail"]} == {"test_0001.png", "test_0002.jpg"}
    assert result.summary["accounting"]["records"]["contaminated"] == 2
    assert "mybench" in result.summary["dedup"]["contamination"]


def test_bundled_grade_conflicts_are_kept_and_reported(all_build):
    """The bundled samples hold near-identical images with different grades/labels (EyePACS DR 0
    and 1, a NIfTI cyst and a solid mass): both kept, each pair a conflict entry; same-label near
    duplicates (one Brain-Tumor-MRI picture in Training and Testing) are still dropped."""
    import json

    report = json.loads((all_build.out / "dedup_report.json").read_text())
    pairs = {(c["a"], c["b"]): c for c in report["near_duplicate_label_conflict"]}
    grade = pairs[("eyepacs:train/10_left", "eyepacs:train/13_left")]
    assert (grade["label_a"], grade["label_b"], grade["action"]) == ("0", "1", "kept_both")
    assert grade["distance"] <= 8 and grade["similarity"] >= 0.95
    assert pairs[("nifti:ct_phantom_01", "nifti:ct_phantom_02")]["label_b"] == "hepatic solid mass"
    full = pl.read_parquet(all_build.out / "manifest.parquet")
    manifest = full.filter(pl.col("kind") == "record")
    status = dict(zip(manifest["id"], manifest["status"]))
    samples = full.filter(pl.col("kind") == "sample")
    record_of = dict(zip(samples["id"], samples["record_uid"]))
    dropped_for = {r: record_of[k] for r, k in zip(manifest["id"], manifest["duplicate_of"]) if k}
    assert status["eyepacs:train/13_left"] == status["eyepacs:train/10_left"] == "emitted"
    assert status["nifti:ct_phantom_01"] == status["nifti:ct_phantom_02"] == "emitted"
    for a, b in pairs:  # a record may duplicate a third record, never its conflict partner
        assert dropped_for.get(a) != b and dropped_for.get(b) != a
    assert status["brain_tumor_mri:Training/glioma/Tr-gl_0010"] == "duplicate"
    near = next(s for s in report["stages"] if s["stage"] == "near_image")
    assert near["checks"]["pixel_confirmed"] + near["checks"].get("pixel_rejected", 0) == near["checks"]["candidates"]
    assert 0 < near["hash_precision"] <= 1
