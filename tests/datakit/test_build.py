"""The ultrasound recipe end to end: shards energon loads, byte reproducibility, the lock,
resume after SIGKILL, accounting, and partial sources."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from datakit.build import build
from datakit.manifest import RECORD_STATUSES
from datakit.recipe import load_recipe
from datakit.release import release_checksums, release_files
from datakit.shard_writer import iter_samples

REPO = Path(__file__).resolve().parents[2]
DATAKIT = [sys.executable, "-m", "datakit.cli"]


def _release_bytes(out: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in release_files(out)}


def _all_samples(out: Path) -> dict[str, dict[str, bytes]]:
    found = {}
    for tar in sorted(out.glob("*/*.tar")):
        for key, parts in iter_samples(tar):
            found[key] = parts
    return found


def test_build_layout_and_accounting(ultrasound_build):
    out = ultrasound_build.out
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.tar"))[0].startswith("train/")
    assert (out / ".nv-meta" / "dataset.yaml").read_text().startswith("__module__: megatron.energon")
    split = (out / ".nv-meta" / "split.yaml").read_text()
    assert "train" in split and "val" in split
    acc = ultrasound_build.summary["accounting"]
    r = acc["records"]  # dedup may drop near-identical synthetic samples: they are accounted too
    assert r["inputs"] == sum(r[k] for k in RECORD_STATUSES)
    assert r["ignored"] == 6  # AUL's scan-outline polygons, read only where they are the liver
    # offline, the LLM-written samples are skipped_llm rows; the rest emitted or capped
    s = acc["samples"]
    assert s["converted"] == s["emitted"] + s["balanced_out"] + s["skipped_llm"] and s["skipped_llm"] > 0
    # every recipe source contributed samples, in both languages
    assert set(ultrasound_build.summary["sources"]) == {"busi", "aul", "abdomen_us"}
    assert set(ultrasound_build.summary["langs"]) == {"en", "zh"}
    assert ultrasound_build.summary["langs"]["en"] == ultrasound_build.summary["langs"]["zh"]
    manifest = pl.read_parquet(out / "manifest.parquet")
    samples = manifest.filter((pl.col("kind") == "sample") & (pl.col("status") == "emitted"))
    assert samples.height == acc["samples"]["emitted"]
    assert samples["conversation"].n_unique() == len(_all_samples(out))
    # a record's QA of one language is one conversation: the image is stored once per language
    sizes = ultrasound_build.summary["bytes"]
    assert sizes["shard_bytes"] <= 2.5 * sizes["source_bytes"]
    assert len(_all_samples(out)) == 2 * manifest.filter((pl.col("kind") == "record")
                                                         & (pl.col("status") == "emitted")).height


def test_splits_keep_groups_together(ultrasound_build):
    out = ultrasound_build.out
    group_split: dict[str, set[str]] = {}
    for tar in out.glob("*/*.tar"):
        split = tar.parent.name
        for _, parts in iter_samples(tar):
            group_split.setdefault(json.loads(parts["json"])["group"], set()).add(split)
    assert group_split and all(len(s) == 1 for s in group_split.values())
    assert {"train", "val"} == set().union(*group_split.values())


def test_energon_loader_round_trips_every_sample(ultrasound_build):
    from megatron.energon import DefaultTaskEncoder, WorkerConfig, get_loader, get_train_dataset, get_val_dataset
    from megatron.energon.flavors.webdataset.sample_decoder import SampleDecoder

    from datakit.energon_format import COOKERS

    class Encoder(DefaultTaskEncoder):
        cookers = COOKERS
        decoder = SampleDecoder(image_decode="pil")

    out = ultrasound_build.out
    on_disk = _all_samples(out)
    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    seen = {}
    for split in ("train", "val"):
        ds = get_val_dataset(out, split_part=split, worker_config=wc, batch_size=None,
                             task_encoder=Encoder())
        for sample in get_loader(ds):
            seen[sample.__key__] = sample
    assert set(seen) == set(on_disk)
    for key, sample in seen.items():
        doc = json.loads(on_disk[key]["json"])
        assert sample.conversation == doc["conversations"]
        n_tokens = sum(t["value"].count("<image>") for t in sample.conversation)
        assert n_tokens == len(sample.images) == len(doc["media"]) >= 1
        for i, im in enumerate(sample.images):
            part = doc["media"][i]["part"]
            expected = Image.open(io.BytesIO(on_disk[key][part]))
            assert im.size == expected.size
            assert im.tobytes() == expected.convert(im.mode).tobytes()
    # and the training path (shuffled, infinite) yields cooked samples too
    train = get_train_dataset(out, split_part="train", worker_config=wc, batch_size=2,
                              shuffle_buffer_size=16, max_samples_per_sequence=8, task_encoder=Encoder())
    batch = next(iter(get_loader(train)))
    assert len(batch.__key__) == 2


def test_two_builds_are_byte_identical(ultrasound_build, tmp_path, sample_sources):
    other = build(load_recipe("ultrasound"), sample_sources, tmp_path / "again", workers=2, slice_size=5)
    assert _release_bytes(ultrasound_build.out) == _release_bytes(other.out)
    assert other.release_sha256 == ultrasound_build.release_sha256


def test_verify_against_committed_lock(ultrasound_build, tmp_path):
    out = ultrasound_build.out
    ok = subprocess.run([*DATAKIT, "verify", "ultrasound", "--out", str(out)], cwd=REPO,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # tamper with one byte of a copy
    import shutil

    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    tar = sorted(bad.glob("train/*.tar"))[0]
    data = bytearray(tar.read_bytes())
    data[2000] ^= 0xFF
    tar.write_bytes(bytes(data))
    res = subprocess.run([*DATAKIT, "verify", "ultrasound", "--out", str(bad)], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert "checksum differs" in res.stderr and tar.name in res.stderr


def _complete_tar(path: Path) -> bool:
    try:
        with tarfile.open(path) as t:
            t.getmembers()
        return path.stat().st_size % 512 == 0
    except tarfile.TarError:
        return False


@pytest.mark.parametrize("delay", [0.6, 1.5, 3.0])
def test_sigkill_then_rerun_gives_same_bytes(ultrasound_build, tmp_path, sample_sources, delay):
    out = tmp_path / "killed"
    cmd = [*DATAKIT, "build", "ultrasound", "--sources", str(sample_sources), "--out", str(out),
           "--slice-records", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # never a half-written tar under a final name
    for tar in out.glob("*/*.tar"):
        assert _complete_tar(tar), f"incomplete tar under final name: {tar}"
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert _release_bytes(out) == _release_bytes(ultrasound_build.out)
    assert not list(out.rglob("*.tmp-*"))


def test_partial_sources_build_present_and_name_missing(tmp_path, sample_sources):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(sample_sources / "Dataset_BUSI_with_GT", src / "Dataset_BUSI_with_GT")
    res = subprocess.run([*DATAKIT, "build", "ultrasound", "--sources", str(src), "--out", str(tmp_path / "o")],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "missing sources" in res.stdout and "aul" in res.stdout and "abdomen_us" in res.stdout
    assert "busi" in res.stdout and "accounting OK" in res.stdout


def test_bad_input_is_rejected_with_file_and_the_rest_is_emitted(tmp_path, sources_copy):
    busi = sources_copy / "Dataset_BUSI_with_GT"
    victim = sorted((busi / "benign").glob("benign (*).png"))
    victim = [p for p in victim if "_mask" not in p.name][0]
    victim.write_bytes(victim.read_bytes()[:300])  # truncated PNG
    result = build(load_recipe("ultrasound"), sources_copy, tmp_path / "o")
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    rej = manifest.filter((pl.col("kind") == "record") & (pl.col("status") == "rejected"))
    hit = rej.filter(pl.col("path").str.contains(victim.name, literal=True))
    assert hit.height == 1 and hit["reason"][0] in ("truncated_image", "corrupt_image")
    acc = result.summary["accounting"]["records"]
    assert acc["inputs"] == acc["emitted"] + acc["rejected"] + acc["ignored"]
    assert acc["emitted"] >= 20


def test_bad_recipe_fails_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nseed: 1\nsources:\n  - source: busi\n    convert: [{converter: labels, tasks: [nope]}]\n")
    out = tmp_path / "o"
    res = subprocess.run([*DATAKIT, "build", str(bad), "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2
    assert str(bad) in res.stderr and "sources[0].convert[0].tasks[0]" in res.stderr and "nope" in res.stderr
    assert not out.exists()
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    res = subprocess.run([*DATAKIT, "build", str(broken)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "malformed YAML" in res.stderr and str(broken) in res.stderr


def test_records_sharing_a_split_key_share_a_split(tmp_path, sources_copy):
    """PAD-UFES-20 images of one patient never straddle train and val (reader sets split_key)."""
    from datakit.merge import assign_split

    meta = sources_copy / "PAD-UFES-20" / "metadata.csv"
    lines = meta.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    # give every row one patient whose key lands in val: all its samples must then be in val
    # (without the split key, each record would be split on its own and most would go to train)
    recipe = load_recipe("dermoscopy")
    patient = next(f"PAT_{i}" for i in range(1000)
                   if assign_split(recipe.seed, f"pad_ufes_20:patient/PAT_{i}", recipe.val_fraction) == "val")
    cols = header.split(",")
    rows = [",".join([patient] + r.split(",")[1:]) for r in rows]
    meta.write_text("\n".join([header, *rows]) + "\n")
    assert cols[0] == "patient_id"
    build(recipe, sources_copy, tmp_path / "o")
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    samples = manifest.filter((pl.col("kind") == "sample") & (pl.col("status") == "emitted"))
    assert samples["record_uid"].n_unique() >= 3
    assert set(samples["split"]) == {"val"}
    # while distinct keys do spread over both splits
    spread = {assign_split(7, f"pad_ufes_20:patient/P{i}", 0.3) for i in range(50)}
    assert spread == {"train", "val"}
