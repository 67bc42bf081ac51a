"""Bad data in a shard is skipped and counted per reason, and iteration goes on.

A shard in datakit's layout (AtomicTarWriter + dataset.yaml + energon prepare) holds good samples
with, between them: unidentifiable image bytes, a truncated PNG (header fine, pixels cut), a
media part the JSON lists but the tar lacks, an unreadable JSON part, and a sample too long for
the sequence budget. Energon's own error handler must never fire: every skip is ours, by reason.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from megatron.energon import WorkerConfig, get_loader, get_train_dataset, get_val_dataset
from megatron.energon.errors import FatalSampleError
from PIL import Image

from datakit.energon_format import prepare, write_dataset_yaml
from datakit.sample import SCHEMA, canonical_json
from datakit.shard_writer import AtomicTarWriter
from megatron_fleming.data.task_encoder import FlemingTaskEncoder, TaskEncoderConfig
from megatron_fleming.data.tiling import TilingConfig
from megatron_fleming.data.tokenizer import train_tiny_tokenizer

EXPECTED = {"corrupt_image": 2, "missing_part": 1, "bad_json": 1, "too_long": 1}


def _png(seed: int, size: int = 64) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _json(answer: str, parts: list[str]) -> bytes:
    return canonical_json({
        "schema": SCHEMA, "source": "test", "modality": "ultrasound", "lang": "en", "group": "g",
        "turns": [{"key": "k", "task": "t", "question_type": "open", "options": None, "answer": answer,
                   "provenance": {}}],
        "provenance": {},
        "conversations": [{"from": "human", "value": "<image>\n" * len(parts) + "What is seen?"},
                          {"from": "gpt", "value": answer}],
        "media": [{"part": p, "sha256": "0", "width": 64, "height": 64} for p in parts],
    })


def _good(i: int) -> tuple[str, list[tuple[str, bytes]]]:
    return f"good-{i}", [("json", _json(f"finding {i}", ["0.png"])), ("0.png", _png(i))]


@pytest.fixture(scope="module")
def bad_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "shards"
    truncated = _png(99)
    samples = [
        _good(0),
        ("garbage", [("json", _json("x", ["0.png"])), ("0.png", b"this is not an image")]),
        _good(1),
        ("truncated", [("json", _json("x", ["0.png"])), ("0.png", truncated[: len(truncated) // 2])]),
        _good(2),
        ("missing", [("json", _json("x", ["0.png"]))]),
        _good(3),
        ("badjson", [("json", b"{not json"), ("0.png", _png(7))]),
        _good(4),
        ("toolong", [("json", _json(" ".join(["word"] * 3000), ["0.png"])), ("0.png", _png(8))]),
        _good(5),
    ]
    with AtomicTarWriter(root / "train" / "shard-000000.tar") as w:
        for key, parts in samples:
            w.add_sample(key, parts)
    write_dataset_yaml(root, "bad")
    prepare(root, ["train/shard-000000.tar"])
    tok = train_tiny_tokenizer(["What is seen? finding word", "user assistant system"], vocab_size=300)
    return root, tok


def _encoder(tok, **overrides) -> FlemingTaskEncoder:
    cfg = TaskEncoderConfig(tiling=TilingConfig(max_tiles=1), max_seq_len=1024, system_prompt=None,
                            **overrides)
    return FlemingTaskEncoder(tok, cfg)


def _worker_config(energon_errors: list) -> WorkerConfig:
    return WorkerConfig(rank=0, world_size=1, num_workers=0,
                        global_error_handler=lambda e, sample, sources: energon_errors.append(e))


def test_one_pass_skips_and_counts_each_bad_sample(bad_shards):
    root, tok = bad_shards
    te = _encoder(tok)
    errors: list = []
    ds = get_val_dataset(root, split_part="train", worker_config=_worker_config(errors), batch_size=2,
                         task_encoder=te)
    keys, reported = [], {}
    for batch in get_loader(ds):
        keys += batch.__key__
        for reason, n in batch.skipped.items():
            reported[reason] = reported.get(reason, 0) + n
    assert sorted(keys) == [f"good-{i}" for i in range(6)]
    assert dict(te.skips.totals) == EXPECTED
    assert reported == EXPECTED  # the last sample is good, so every skip reached some batch
    assert errors == []


def test_training_with_packing_goes_on_past_bad_samples(bad_shards):
    root, tok = bad_shards
    te = _encoder(tok)
    errors: list = []
    ds = get_train_dataset(root, split_part="train", worker_config=_worker_config(errors), batch_size=1,
                           packing_buffer_size=4, shuffle_buffer_size=None, max_samples_per_sequence=None,
                           task_encoder=te)
    seen: list[str] = []
    for step, batch in enumerate(get_loader(ds)):
        seen += batch.__key__
        if step == 9:  # the dataset repeats: ten packed batches span several epochs
            break
    assert set(seen) == {f"good-{i}" for i in range(6)}
    epochs = seen.count("good-0")
    assert epochs >= 2
    # every pass over the shard skipped each bad sample again, once per pass started
    for reason, n in EXPECTED.items():
        assert te.skips.totals[reason] >= n * (epochs - 1), reason
    assert set(te.skips.totals) == set(EXPECTED)
    assert errors == []


def test_a_shard_of_only_bad_samples_stops_the_run(tmp_path, bad_shards):
    _, tok = bad_shards
    root = tmp_path / "allbad"
    with AtomicTarWriter(root / "train" / "shard-000000.tar") as w:
        for i in range(4):
            w.add_sample(f"bad-{i}", [("json", _json("x", ["0.png"])), ("0.png", b"no image")])
    write_dataset_yaml(root, "allbad")
    prepare(root, ["train/shard-000000.tar"])
    te = _encoder(tok, max_consecutive_skips=3)
    ds = get_train_dataset(root, split_part="train", worker_config=_worker_config([]), batch_size=1,
                           shuffle_buffer_size=None, max_samples_per_sequence=None, task_encoder=te)
    with pytest.raises(FatalSampleError, match="in a row"):
        next(iter(get_loader(ds)))
    assert te.skips.totals["corrupt_image"] == 4
