"""The label and caption recipes end to end on the bundled samples: each builds, passes the
accounting check, loads back through energon's loader, and rebuilds to the same bytes; filter drops
and malformed CSV rows show up in the manifest with their reasons and locations."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from datakit.build import build
from datakit.recipe import load_recipe
from datakit.release import release_files
from datakit.shard_writer import iter_samples

RECIPES = {
    "xray": {"knee_xray"},
    "mri": {"brain_tumor_mri"},
    "dermoscopy": {"pad_ufes_20"},
    "ophthalmology": {"eyepacs", "fairvlmed"},
    "captions": {"roco_v2", "medicat", "medpix2"},
}


@pytest.fixture(scope="module")
def builds(tmp_path_factory, sample_sources):
    root = tmp_path_factory.mktemp("recipes")
    return {name: build(load_recipe(name), sample_sources, root / name) for name in RECIPES}


def _release_bytes(out: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in release_files(out)}


def _on_disk(out: Path) -> dict[str, dict[str, bytes]]:
    return {key: parts for tar in sorted(out.glob("*/*.tar")) for key, parts in iter_samples(tar)}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_builds_and_accounts_for_every_input(builds, name):
    summary = builds[name].summary
    acc = summary["accounting"]
    r = acc["records"]  # dedup may drop near-identical synthetic samples: they are accounted too
    assert r["inputs"] == r["emitted"] + r["rejected"] + r["duplicate"] + r["contaminated"] + r["ignored"]
    s = acc["samples"]  # offline: the LLM-written and translated samples are skipped_llm rows
    assert s["converted"] == s["emitted"] + s["duplicate"] + s["balanced_out"] + s["skipped_llm"]
    assert acc["samples"]["emitted"] > 0
    assert summary["missing_sources"] == []
    assert {s for s, c in summary["sources"].items() if c.get("samples")} == RECIPES[name]
    manifest = pl.read_parquet(builds[name].out / "manifest.parquet")
    emitted = manifest.filter((pl.col("kind") == "sample") & (pl.col("status") == "emitted"))
    on_disk = _on_disk(builds[name].out)
    # every emitted QA item is one turn of one shard sample, named in the manifest
    assert set(emitted["conversation"]) == set(on_disk)
    turns = {key: [t["key"] for t in json.loads(parts["json"])["turns"]] for key, parts in on_disk.items()}
    assert sorted(k for ks in turns.values() for k in ks) == sorted(emitted["id"])
    assert all(turns[c][t] == k for k, c, t in zip(emitted["id"], emitted["conversation"], emitted["turn"]))


def test_languages_per_recipe(builds):
    for name in ("xray", "mri", "dermoscopy"):
        langs = builds[name].summary["langs"]
        assert langs["en"] == langs["zh"] > 0, name
    assert set(builds["captions"].summary["langs"]) == {"en"}  # captions are English until translated
    # FairVLMed's notes are English only: 4 report samples more in English than in Chinese
    # (counted before dedup, which may drop near-identical synthetic fundus records)
    rows = pl.read_parquet(builds["ophthalmology"].out / "manifest.parquet").filter(
        (pl.col("kind") == "sample") & pl.col("status").is_in(["emitted", "duplicate"]))
    langs = Counter(rows["lang"])
    assert langs["en"] - langs["zh"] == Counter(rows["task"])["report"] == 4


@pytest.mark.parametrize("name", RECIPES)
def test_energon_loader_reads_every_sample(builds, name):
    from megatron.energon import DefaultTaskEncoder, WorkerConfig, get_loader, get_val_dataset
    from megatron.energon.flavors.webdataset.sample_decoder import SampleDecoder

    from datakit.energon_format import COOKERS

    class Encoder(DefaultTaskEncoder):
        cookers = COOKERS
        decoder = SampleDecoder(image_decode="pil")

    out = builds[name].out
    on_disk = _on_disk(out)
    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    seen = {}
    for split in ("train", "val"):  # every recipe has both: energon opens split_part='val'
        assert (out / split / "shard-000000.tar").exists(), split
        ds = get_val_dataset(out, split_part=split, worker_config=wc, batch_size=None, task_encoder=Encoder())
        for sample in get_loader(ds):
            seen[sample.__key__] = sample
    assert set(seen) == set(on_disk)
    for key, sample in seen.items():
        doc = json.loads(on_disk[key]["json"])
        assert sample.conversation == doc["conversations"]
        assert sample.meta["turns"] == doc["turns"] and doc["source"] in RECIPES[name]
        assert len(sample.conversation) == 2 * len(doc["turns"])
        assert len(sample.images) == len(doc["media"]) == 1
        expected = Image.open(io.BytesIO(on_disk[key][doc["media"][0]["part"]]))
        assert sample.images[0].size == expected.size
        assert sample.images[0].tobytes() == expected.convert(sample.images[0].mode).tobytes()


@pytest.mark.parametrize("name", RECIPES)
def test_rebuild_is_byte_identical(builds, name, sample_sources, tmp_path):
    again = build(load_recipe(name), sample_sources, tmp_path / name, slice_size=2)
    assert again.release_sha256 == builds[name].release_sha256
    assert _release_bytes(again.out) == _release_bytes(builds[name].out)


def test_caption_filter_drops_are_counted_by_reason(builds):
    summary = builds["captions"].summary
    assert summary["rejects"] == {"medicat:boilerplate_caption": 1, "medpix2:boilerplate_caption": 1,
                                  "medpix2:caption_too_short": 1}
    manifest = pl.read_parquet(builds["captions"].out / "manifest.parquet")
    rejected = manifest.filter((pl.col("kind") == "record") & (pl.col("status") == "rejected"))
    rows = {r["path"]: (r["reason"], r["detail"]) for r in rejected.iter_rows(named=True)}
    assert rows["images/MPX1033_synpic45450.png"][0] == "boilerplate_caption"
    assert "Descriptions.json#3" in rows["images/MPX1033_synpic45450.png"][1]
    assert rows["images/MPX1012_synpic22949.png"][0] == "caption_too_short"
    medicat = [p for p, (reason, _) in rows.items() if p.startswith("release/figures/")]
    assert len(medicat) == 1 and rows[medicat[0]][0] == "boilerplate_caption"
    # every kept caption is cleaned: no figure label or trailing citation reaches a shard
    for parts in _on_disk(builds["captions"].out).values():
        for turn in json.loads(parts["json"])["turns"]:
            answer = turn["answer"]
            assert not answer.lower().startswith(("figure", "fig.")) and not answer.endswith("]")


def test_malformed_metadata_rows_in_a_build(sources_copy, tmp_path):
    csv = sources_copy / "PAD-UFES-20" / "metadata.csv"
    lines = csv.read_bytes().splitlines(keepends=True)
    extra = lines[1].replace(b"PAT_46_881_14.png", b"PAT_7_7_7.png")  # no such image
    lines.append(extra.replace(b",BCC,", b",,").replace(b"PAT_7_7_7", b"PAT_8_8_8"))  # no label, line 8
    lines.append(extra.replace(b",BCC,", b",BOD,").replace(b"PAT_7_7_7", b"PAT_9_9_9"))  # unknown label, line 9
    lines.append(extra.replace(b"POMERANIA", b"POMER\xc3\x28", 1))  # invalid UTF-8, line 10
    lines.append(extra)  # missing image, line 11
    csv.write_bytes(b"".join(lines))
    result = build(load_recipe("dermoscopy"), sources_copy, tmp_path / "o")
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    rejected = manifest.filter((pl.col("kind") == "record") & (pl.col("status") == "rejected"))
    assert dict(zip(rejected["path"], rejected["reason"])) == {
        "metadata.csv:8": "missing_label", "metadata.csv:9": "unknown_label",
        "metadata.csv:10": "non_utf8", "metadata.csv:11": "missing_image"}
    acc = result.summary["accounting"]["records"]
    assert acc["inputs"] == 10 and acc["emitted"] + acc["duplicate"] == 6 and acc["rejected"] == 4
    produced = manifest.filter((pl.col("kind") == "sample") & pl.col("status").is_in(["emitted", "duplicate"]))
    tasks = Counter(produced["task"])
    assert tasks["diagnosis_mcq"] == tasks["diagnosis_open"] == 12
