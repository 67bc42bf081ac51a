"""A stage's length in samples, without a trainer: energon's count of one epoch (plain datasets,
several shards, a metadataset blended by weight or by repetitions), a stage counted in samples or
in epochs, warmup, the epoch and the stop, and what a step's batches consumed.

The end-to-end check (a real run consuming each conversation once) is test_train_schedule.py;
these run in a second and pin each rule where the trainer's run would only drift slightly.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from datakit.energon_format import prepare, write_dataset_yaml
from datakit.shard_writer import AtomicTarWriter
from megatron_fleming.data.batch import VLMBatch
from megatron_fleming.train.schedule import StageLength, consumed_by, samples_per_epoch


def _dataset(root, shards: dict[str, int]):
    """A crude energon dataset: ``{"train/shard-000000.tar": 3, ...}`` samples per shard."""
    for rel, n in shards.items():
        with AtomicTarWriter(root / rel) as writer:
            for i in range(n):
                writer.add_sample(f"{rel.split('.')[0].replace('/', '-')}-{i}", [("json", json.dumps({"i": i}).encode())])
    write_dataset_yaml(root, root.name)
    prepare(root, list(shards))
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("schedule")
    a = _dataset(base / "a", {"train/shard-000000.tar": 3, "train/shard-000001.tar": 2, "val/shard-000000.tar": 2})
    b = _dataset(base / "b", {"train/shard-000000.tar": 4, "val/shard-000000.tar": 1})

    def metadataset(name: str, split: dict) -> str:
        path = base / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"__module__": "megatron.energon", "__class__": "MetadatasetV2",
                                        "splits": {"train": split}}))
        return str(path)

    return {
        "a": str(a), "b": str(b),
        "weighted": metadataset("weighted", {"blend": [{"weight": 3.0, "path": "a"}, {"weight": 1.0, "path": "b"}]}),
        "epochized": metadataset("epochized", {"blend_epochized": [{"repetitions": 3, "path": "a"},
                                                                   {"repetitions": 2, "path": "b"}]}),
    }


def test_one_epoch_is_energons_count_of_the_split(datasets):
    assert samples_per_epoch(datasets["a"], "train") == 5  # both shards
    assert samples_per_epoch(datasets["a"], "val") == 2
    assert samples_per_epoch(datasets["b"], "train") == 4
    assert samples_per_epoch(datasets["b"], "val") == 1  # one sample is a split, not an empty one
    # blended by weight: each dataset once (weights draw, they do not repeat); by repetitions: times each
    assert samples_per_epoch(datasets["weighted"], "train") == 9
    assert samples_per_epoch(datasets["epochized"], "train") == 3 * 5 + 2 * 4
    assert isinstance(samples_per_epoch(datasets["a"], "train"), int)


def test_a_split_without_samples_is_refused_by_name(datasets, tmp_path):
    # energon refuses an empty shard or split itself; a blend that repeats its data zero times
    # reaches the count empty
    path = tmp_path / "none.yaml"
    path.write_text(yaml.safe_dump({"__module__": "megatron.energon", "__class__": "MetadatasetV2", "splits": {
        "train": {"blend_epochized": [{"repetitions": 0, "path": datasets["a"]}]}}}))
    with pytest.raises(ValueError, match=r"none.yaml has no 'train' samples: check data.path and data.split"):
        samples_per_epoch(str(path), "train")


def test_a_stage_counted_in_samples_or_in_epochs(datasets):
    given = StageLength.counted(datasets["a"], "train", count=7, epochs=None, unit="prompts")
    assert given == StageLength(total=7, per_epoch=5, unit="prompts")
    # epochs over the split, rounded up to whole samples; an exact product is not rounded
    assert StageLength.counted(datasets["a"], "train", count=None, epochs=1.5, unit="x").total == 8
    assert StageLength.counted(datasets["a"], "train", count=None, epochs=1.1, unit="x").total == 6
    assert StageLength.counted(datasets["a"], "train", count=None, epochs=2, unit="x").total == 10
    assert StageLength.counted(datasets["a"], "val", count=None, epochs=1, unit="x") == StageLength(2, 2, "x")
    with pytest.raises(ValueError, match=r"^data.path is not set: pass --data DIR or set data.path$"):
        StageLength.counted(None, "train", count=3, epochs=None, unit="x")


def test_a_stage_from_the_training_config(datasets):
    from pathlib import Path

    from megatron_fleming.train.config import load_config

    config = Path(__file__).resolve().parents[2] / "megatron_fleming" / "configs" / "tiny_cpu.yaml"
    cfg = load_config(config, [f"data.path={datasets['a']}", "data.split=val", "train.conversations=null",
                               "train.epochs=2"])
    assert StageLength.of(cfg) == StageLength(total=4, per_epoch=2, unit="conversations")
    cfg = load_config(config, [f"data.path={datasets['a']}", "train.conversations=11", "train.epochs=null"])
    assert StageLength.of(cfg) == StageLength(total=11, per_epoch=5, unit="conversations")
    assert StageLength(total=3, per_epoch=3).unit == "conversations"


def test_warmup_epoch_and_stop():
    length = StageLength(total=40, per_epoch=16)
    assert length.warmup(0.1) == 4  # exact: not rounded up
    assert length.warmup(0.03) == 2  # 1.2 -> 2
    assert length.warmup(0.0) == 0
    assert length.epoch(24) == 1.5 and length.epoch(0) == 0.0
    assert not length.finished(39) and length.finished(40) and length.finished(41)
    assert math.isclose(StageLength(total=7, per_epoch=3).epoch(7), 7 / 3)


def _batch(keys: list[str], skipped: dict[str, int]) -> VLMBatch:
    t = torch.zeros(1, 4, dtype=torch.long)
    return VLMBatch(__key__=keys, __restore_key__=(), input_ids=t, labels=t, loss_mask=t.float(),
                    position_ids=t.float(), pixel_values=torch.zeros(0, 3, 1, 1, dtype=torch.uint8),
                    num_tiles=torch.zeros(0, dtype=torch.long), cu_seqlens=None, max_seqlen=None, skipped=skipped)


def test_a_step_consumes_its_packed_samples_and_the_skipped_ones():
    batches = [_batch(["a", "b", "c"], {}), _batch(["d"], {"too_long": 2, "bad_image": 1}), _batch([], {"x": 4})]
    assert consumed_by(batches) == 3 + 1 + 3 + 4
    assert consumed_by(batches[:1]) == 3
    assert consumed_by([]) == 0
