"""``datakit build`` as a user meets it: exit codes of empty builds, images-only BUSI copies,
recipe names that a local file cannot shadow, a decontamination registry that does not depend on
the current folder, and progress a log file can follow. Run in-process through ``cli.main``."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import polars as pl
import pytest

from busi_variants import SAMPLES, write_original
from datakit.cli import main
from datakit.progress import Progress
from datakit.recipe import RECIPES_DIR, load_recipe
from datakit.release import release_files

BUSI_ONLY = """\
name: busi_only
seed: 7
val_fraction: 0.0
langs: [en, zh]
sources:
  - source: busi
    options: {options}
    convert:
      - converter: labels
        tasks: [diagnosis_mcq, diagnosis_open]
      - converter: spatial
        tasks: [lesion_presence, lesion_count, lesion_location, lesion_bbox, lesion_size]
"""


def recipe_file(folder: Path, options: str = "{}") -> Path:
    path = folder / "busi_only.yaml"
    path.write_text(BUSI_ONLY.format(options=options))
    return path


def images_only_copy(dst: Path) -> Path:
    """The public BUSI copies without masks: the bundled real images, no mask file."""
    for image in SAMPLES.glob("*/*.png"):
        if "_mask" not in image.name:
            (dst / "Dataset_BUSI_with_GT" / image.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, dst / "Dataset_BUSI_with_GT" / image.parent.name / image.name)
    return dst


def test_empty_or_missing_sources_exit_non_zero_naming_what_was_looked_for(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["build", "ultrasound", "--sources", str(empty), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "none of recipe ultrasound's sources" in err
    assert str(empty / "Dataset_BUSI_with_GT") in err and str(empty / "abdominal_US") in err
    assert not (tmp_path / "o").exists()  # refused before any work
    assert main(["build", "ultrasound", "--sources", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["build", "ultrasound", "--sources", str(empty), "--out", str(tmp_path / "o"), "--allow-empty"]) == 0


def test_images_only_copy_is_refused_by_the_strict_recipe(tmp_path, capsys):
    src = images_only_copy(tmp_path / "src")
    rc = main(["build", str(recipe_file(tmp_path)), "--sources", str(src), "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert rc == 1
    assert "0 samples emitted from 15 inputs (busi:image_without_mask=15)" in captured.err
    assert "masks: optional" in captured.err and "accounting OK" in captured.out
    assert main(["build", str(recipe_file(tmp_path)), "--sources", str(src), "--out", str(tmp_path / "o"),
                 "--allow-empty"]) == 0


def test_masks_optional_builds_labels_and_counts_mask_tasks_as_skipped(tmp_path):
    src = images_only_copy(tmp_path / "src")
    rc = main(["build", str(recipe_file(tmp_path, "{masks: optional}")), "--sources", str(src),
               "--out", str(tmp_path / "o")])
    assert rc == 0
    rows = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    samples = rows.filter(pl.col("kind") == "sample")
    emitted = samples.filter(pl.col("status") == "emitted")
    assert set(emitted["task"]) == {"diagnosis_mcq", "diagnosis_open"} and emitted.height == 15 * 2 * 2
    skipped = samples.filter(pl.col("status") == "skipped")
    assert skipped.height == 15 * 5 * 2 and set(skipped["reason"]) == {"no_mask"}
    build_doc = json.loads((tmp_path / "o" / "build.json").read_text())
    assert build_doc["summary"]["accounting"]["samples"]["skipped"] == 150
    with pytest.raises(Exception, match="masks must be one of"):
        load_recipe(recipe_file(tmp_path, "{masks: sometimes}"))


def test_a_local_file_never_shadows_a_packaged_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ultrasound").mkdir()
    (tmp_path / "ultrasound.yaml").write_text("name: [broken\n")
    assert load_recipe("ultrasound").path == RECIPES_DIR / "ultrasound.yaml"
    mine = recipe_file(tmp_path)
    assert load_recipe("./busi_only.yaml").path == Path("busi_only.yaml") and mine.exists()
    assert load_recipe("busi_only.yaml").name == "busi_only"  # a .yaml name is a path
    with pytest.raises(Exception, match="unknown recipe 'busi_only'.*./busi_only.yaml"):
        load_recipe("busi_only")


def _release(out: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in release_files(out)}


def test_decontam_state_is_not_in_the_current_folder(tmp_path, monkeypatch, capsys):
    """``decontam add`` run in one folder; builds run in two others read the same registry (the
    user's data folder), give the same bytes, and record the benchmark set; the lock pins it."""
    monkeypatch.delenv("DATAKIT_DECONTAM_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    names = ("benign (3)", "malignant (12)", "normal (3)")
    src = write_original(tmp_path / "src", names)
    recipe = recipe_file(tmp_path)
    bench = tmp_path / "bench"
    bench.mkdir()
    shutil.copyfile(SAMPLES / "malignant" / "malignant (12).png", bench / "img_0001.png")
    for d in "abc":
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path / "c")
    assert main(["decontam", "add", "busi_probe", str(bench), "--split", "all"]) == 0
    assert not (tmp_path / "c" / "work").exists()
    assert (tmp_path / "xdg" / "datakit" / "decontam" / "busi_probe.parquet").exists()
    outs = {}
    for d in "ab":
        monkeypatch.chdir(tmp_path / d)
        assert main(["build", str(recipe), "--sources", str(src), "--out", "out"]) == 0
        outs[d] = tmp_path / d / "out"
    assert _release(outs["a"]) == _release(outs["b"])
    doc = json.loads((outs["a"] / "build.json").read_text())
    [entry] = doc["decontam"]["benchmarks"]
    assert entry["name"] == "busi_probe" and entry["images"] == 1 and len(entry["sha256"]) == 64
    assert doc["summary"]["accounting"]["records"]["contaminated"] == 1
    lock = tmp_path / "busi_only.lock"
    assert main(["lock", "busi_only", "--out", str(outs["a"]), "--lock", str(lock)]) == 0
    assert json.loads(lock.read_text())["decontam"] == doc["decontam"]["benchmarks"]
    # the same build against another benchmark set: verify names the set, not just the bytes
    assert main(["decontam", "rm", "busi_probe"]) == 0
    assert main(["build", str(recipe), "--sources", str(src), "--out", "again"]) == 0
    capsys.readouterr()
    assert main(["verify", "busi_only", "--out", "again", "--lock", str(lock)]) == 1
    err = capsys.readouterr().err
    assert "decontamination benchmark set differs: lock [busi_probe" in err and "build [none]" in err
    # --decontam DIR names the registry explicitly
    assert main(["decontam", "add", "busi_probe", str(bench), "--split", "all", "--decontam", str(tmp_path / "r")]) == 0
    assert main(["build", str(recipe), "--sources", str(src), "--out", "third", "--decontam", str(tmp_path / "r")]) == 0
    assert _release(tmp_path / "b" / "third") == _release(outs["a"])


class _Clock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def test_progress_logs_every_interval_when_not_on_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="datakit.progress")
    # start, then updates at 1 s (quiet), 6 s (a line), 7 s (quiet), 12 s (a line), then close
    progress = Progress("log", interval_s=5.0, clock=_Clock(0, 1, 6, 6, 6, 7, 12, 12, 12, 13, 13))
    phase = progress("convert", total=5, unit="rec")
    for _ in range(4):
        phase.update(1)
    phase.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("convert: 2/5 rec (40%)") and lines[1].startswith("convert: 4/5 rec (80%)")
    assert lines[2].startswith("convert done: 4/5 rec") and len(lines) == 3
    assert Progress.for_stream(io.StringIO()).mode == "log"


def test_progress_draws_a_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress.for_stream(stream)
    assert progress.mode == "bar"
    phase = progress("dedup", total=3, unit="sample")
    phase.update(3)
    phase.close()
    assert "dedup" in stream.getvalue() and "3/3" in stream.getvalue()


def test_cli_build_logs_each_phase(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="datakit.progress")
    src = write_original(tmp_path / "src", ("benign (3)",))
    assert main(["build", str(recipe_file(tmp_path)), "--sources", str(src), "--out", str(tmp_path / "o")]) == 0
    done = {r.getMessage().split(" done:")[0] for r in caplog.records if " done:" in r.getMessage()}
    assert done == {"discover", "convert", "dedup", "merge", "prepare"}


def test_max_side_and_max_pixels_are_recipe_options(tmp_path):
    from datakit.shard_writer import iter_samples

    src = write_original(tmp_path / "src", ("benign (3)",))
    assert main(["build", str(recipe_file(tmp_path, "{max_side: 128}")), "--sources", str(src),
                 "--out", str(tmp_path / "o")]) == 0
    docs = [json.loads(p["json"]) for tar in (tmp_path / "o").glob("*/*.tar") for _, p in iter_samples(tar)]
    assert docs and all(d["media"][0]["width"] == 128 == d["media"][0]["height"] for d in docs)
    steps = docs[0]["provenance"]["normalisation"][0]["steps"]
    assert steps == ["downsized 256x256 -> 128x128 (max_side 128, Lanczos)"]
    assert main(["build", str(recipe_file(tmp_path, "{max_pixels: 1000}")), "--sources", str(src),
                 "--out", str(tmp_path / "small"), "--allow-empty"]) == 0
    rows = pl.read_parquet(tmp_path / "small" / "manifest.parquet").filter(
        (pl.col("kind") == "record") & (pl.col("path") == "benign/benign (3).png"))
    assert rows["reason"].to_list() == ["too_large"] and "65536 pixels" in rows["detail"][0]
