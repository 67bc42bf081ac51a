"""The metadataset YAML: its form and validation, and energon drawing from each blended recipe
in proportion to the weights."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from datakit.build import build
from datakit.metadataset import BlendEntry, recipe_blend, write_metadataset
from datakit.recipe import load_recipe, parse_recipe
from datakit.seeding import unit_interval
from datakit.shard_writer import iter_samples


def _recipe(name: str, keep: str | None = None, **changes):
    doc = load_recipe(name).to_dict()
    if keep:
        doc["sources"] = [s for s in doc["sources"] if s["source"] == keep]
    doc.update(changes)
    return parse_recipe(doc, Path(f"{doc['name']}.yaml"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory, sample_sources) -> Path:
    """Two small built recipes under one shard folder: NIfTI volumes and video clips (single-turn
    samples, so the volumes outnumber the clips), each with a validation split."""
    root = tmp_path_factory.mktemp("shards")
    build(_recipe("ct3d", keep="nifti", multi_turn=False), sample_sources, root / "ct3d")
    video = load_recipe("video")
    clips = ("surgery_endoscopy_monitor", "synthetic_ultrasound_sweep", "synthetic_lumen_flythrough")
    draws = sorted(unit_interval(video.seed, "split", f"medvideocap:{c}") for c in clips)
    # the split puts a group in val when its draw is below val_fraction: exactly one clip here
    build(_recipe("video", val_fraction=(draws[0] + draws[1]) / 2, multi_turn=False), sample_sources, root / "video")
    return root


def _train_keys(out: Path) -> list[str]:
    return [key for tar in sorted(out.glob("train/*.tar")) for key, _ in iter_samples(tar)]


def counting_encoder():
    """A task encoder that cooks samples without decoding their images (for counting)."""
    from megatron.energon import DefaultTaskEncoder

    from datakit.energon_format import COOKERS

    class Encoder(DefaultTaskEncoder):
        cookers = COOKERS
        decoder = None

    return Encoder()


def test_yaml_names_recipes_relative_to_itself(shards):
    path = write_metadataset(shards / "blends" / "mix.yaml", recipe_blend(shards, {"ct3d": 3, "video": 1}))
    doc = yaml.safe_load(path.read_text())
    assert doc["__module__"] == "megatron.energon" and doc["__class__"] == "MetadatasetV2"
    assert doc["splits"]["train"]["blend"] == [{"weight": 3.0, "path": "../ct3d"}, {"weight": 1.0, "path": "../video"}]
    assert doc["splits"]["val"]["blend"] == [{"weight": 1.0, "path": "../ct3d"}, {"weight": 1.0, "path": "../video"}]
    again = write_metadataset(shards / "blends" / "again.yaml", {shards / "ct3d": 3, shards / "video": 1})
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("blend,error", [
    ({"ct3d": 0}, "finite number > 0"),
    ({"ct3d": float("nan")}, "finite number > 0"),
    ({"nowhere": 1}, "not a built recipe"),
    ({}, "at least one recipe"),
])
def test_bad_blends_are_refused(shards, blend, error):
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        write_metadataset(shards / "bad.yaml", recipe_blend(shards, blend))
    assert not (shards / "bad.yaml").exists()


def test_a_recipe_listed_twice_is_refused(shards):
    with pytest.raises(ValueError, match="listed twice"):
        write_metadataset(shards / "bad.yaml", [BlendEntry(shards / "video", 1), BlendEntry(shards / "video", 2)])


def test_energon_draws_in_proportion_to_the_weights(shards):
    from megatron.energon import WorkerConfig, get_loader, get_train_dataset, get_val_dataset

    path = write_metadataset(shards / "mix.yaml", recipe_blend(shards, {"ct3d": 1, "video": 3}))
    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    train = get_train_dataset(path, split_part="train", worker_config=wc, batch_size=None,
                              shuffle_buffer_size=None, max_samples_per_sequence=None, task_encoder=counting_encoder())
    draws = 2000
    counts: Counter[str] = Counter()
    for i, sample in enumerate(get_loader(train)):
        counts[sample.meta["modality"]] += 1
        if i + 1 == draws:
            break
    share = counts["ct"] / draws
    sizes = {name: len(_train_keys(shards / name)) for name in ("ct3d", "video")}
    assert sizes["ct3d"] > sizes["video"]  # by size alone, volumes would be the majority (> 0.5, not 0.25)
    # 1:3 by weight: a quarter volumes; binomial sd ~0.0097 at 2000 draws
    assert abs(share - 0.25) < 0.04, (counts, sizes)
    val = get_val_dataset(path, split_part="val", worker_config=wc, batch_size=None, task_encoder=counting_encoder())
    val_keys = [s.__key__ for s in get_loader(val)]
    assert {k.split("-")[0] for k in val_keys} == {"nifti", "medvideocap"} and len(set(val_keys)) == len(val_keys)
