"""The task encoder through energon's real loaders on datakit's demo shards (the ultrasound build):
packed and padded batches whose <IMG_CONTEXT> count is 256 per tile of pixel_values, labels that
decode to each sample's answer, positions that restart per sequence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from megatron.energon import (
    WorkerConfig,
    get_loader,
    get_savable_loader,
    get_train_dataset,
    get_val_dataset,
)

from datakit.shard_writer import iter_samples
from megatron_fleming.data.task_encoder import FlemingTaskEncoder, TaskEncoderConfig
from megatron_fleming.data.tiling import TilingConfig
from megatron_fleming.data.tokenizer import IM_END, train_tiny_tokenizer


def _docs(out: Path) -> dict[str, dict]:
    return {key: json.loads(parts["json"]) for tar in sorted(out.glob("*/*.tar"))
            for key, parts in iter_samples(tar)}


@pytest.fixture(scope="module")
def shards(ultrasound_build):
    out = ultrasound_build.out
    docs = _docs(out)
    texts = [t["value"] for d in docs.values() for t in d["conversations"]]
    return out, docs, train_tiny_tokenizer(texts, vocab_size=800)


def _check_batch(batch, tok, docs, tokens_per_tile=256):
    ctx = batch.input_ids == tok.image_context_id
    assert int(ctx.sum()) == tokens_per_tile * batch.pixel_values.shape[0]
    assert batch.pixel_values.shape[0] == int(batch.num_tiles.sum()) > 0
    assert batch.pixel_values.shape[1:] == (3, 448, 448) and batch.pixel_values.dtype == torch.uint8
    assert batch.pixel_values.float().std() > 5  # real image content, not a constant
    assert batch.position_ids.dtype == torch.float32
    if batch.cu_seqlens is not None:
        bounds = batch.cu_seqlens.tolist()
        rows = [(0, a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        rows = [(r, 0, int((batch.input_ids[r] != tok.pad_id).sum())) for r in range(batch.input_ids.shape[0])]
    assert len(rows) == len(batch.__key__)
    for (r, a, b), key in zip(rows, batch.__key__):
        assert batch.position_ids[r, a] == 0
        targets = batch.labels[r, a:b]
        trained = targets[targets != -100].tolist()
        # every gpt turn of the conversation is trained on, each closed by its end token
        answers = [t["value"] for t in docs[key]["conversations"] if t["from"] == "gpt"]
        assert tok.decode(trained) == "".join(a + IM_END for a in answers), key


def test_packed_training_batches_from_energon(shards):
    out, docs, tok = shards
    cfg = TaskEncoderConfig(max_seq_len=8192, pad_to_multiple_of=16)
    te = FlemingTaskEncoder(tok, cfg)
    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    ds = get_train_dataset(out, split_part="train", worker_config=wc, batch_size=1, packing_buffer_size=6,
                           shuffle_buffer_size=None, max_samples_per_sequence=None, task_encoder=te)
    batches = []
    for batch in get_loader(ds):
        batches.append(batch)
        if len(batches) == 3:
            break
    multi = 0
    for batch in batches:
        assert batch.input_ids.shape[0] == 1 and batch.input_ids.shape[1] % 16 == 0
        assert int(batch.cu_seqlens[-1]) <= cfg.max_seq_len  # one pack per batch
        _check_batch(batch, tok, docs)
        multi += len(batch.__key__) > 1
        assert batch.skipped == {}
    assert multi > 0  # packing put several samples in one row
    assert any(n > 1 for b in batches for n in b.num_tiles.tolist())  # dynamic tiling happened


def test_padded_validation_batches_cover_the_split(shards):
    out, docs, tok = shards
    cfg = TaskEncoderConfig(tiling=TilingConfig(max_tiles=2), layout="padded", pad_to_multiple_of=8)
    wc = WorkerConfig(rank=0, world_size=1, num_workers=1)  # a real worker process
    ds = get_val_dataset(out, split_part="val", worker_config=wc, batch_size=4,
                         task_encoder=FlemingTaskEncoder(tok, cfg))
    seen = []
    for batch in get_loader(ds):
        assert batch.cu_seqlens is None and batch.input_ids.shape[1] % 8 == 0
        _check_batch(batch, tok, docs)
        seen += batch.__key__
    val_keys = {k for tar in out.glob("val/*.tar") for k, _ in iter_samples(tar)}
    assert sorted(seen) == sorted(val_keys)


INTERNVL3_DELTAS = tuple(2.0 ** -k for k in range(9))  # 1, 1/2, ..., 1/256


def _sample_deltas(batch, image_context_id: int) -> list[float]:
    """Each packed sequence's visual position step, read back from its image tokens' positions."""
    bounds = batch.cu_seqlens.tolist()
    found = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        ids, pos = batch.input_ids[0, a:b], batch.position_ids[0, a:b]
        image = (ids[1:] == image_context_id) & (ids[:-1] == image_context_id)
        steps = (pos[1:] - pos[:-1])[image].unique()
        assert steps.numel() <= 1, "one step per sample"
        found += steps.tolist()
    return found


def test_v2pe_deltas_are_drawn_per_sample_from_the_set_and_seeded(shards):
    """InternVL3's V2PE training: each sample draws its step from {1, ..., 1/256}; the same seed
    draws the same steps, another seed others."""
    out, _, tok = shards

    def deltas(seed: int) -> list[float]:
        cfg = TaskEncoderConfig(tiling=TilingConfig(max_tiles=2), max_seq_len=4096,
                                v2pe_train_deltas=INTERNVL3_DELTAS)
        wc = WorkerConfig(rank=0, world_size=1, num_workers=0, seed_offset=seed)
        ds = get_train_dataset(out, split_part="train", worker_config=wc, batch_size=1,
                               packing_buffer_size=8, shuffle_buffer_size=None,
                               max_samples_per_sequence=None, task_encoder=FlemingTaskEncoder(tok, cfg))
        return [d for _, b in zip(range(4), get_loader(ds)) for d in _sample_deltas(b, tok.image_context_id)]

    first = deltas(seed=1)
    assert len(first) >= 8 and set(first) <= set(INTERNVL3_DELTAS)
    assert len(set(first)) >= 3  # drawn per sample, not one step for the run
    assert deltas(seed=1) == first and deltas(seed=2) != first


def test_savable_loader_resumes_the_same_packed_batches(shards):
    """The trainer checkpoints energon's loader state: packing, shuffling and the V2PE steps drawn
    per sample must replay exactly."""
    out, _, tok = shards

    def loader():
        cfg = TaskEncoderConfig(tiling=TilingConfig(max_tiles=2), max_seq_len=2048,
                                v2pe_train_deltas=INTERNVL3_DELTAS)
        wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
        ds = get_train_dataset(out, split_part="train", worker_config=wc, batch_size=1, packing_buffer_size=8,
                               shuffle_buffer_size=16, max_samples_per_sequence=4,
                               task_encoder=FlemingTaskEncoder(tok, cfg))
        return get_savable_loader(ds)

    first = loader()
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.save_state_rank()
    expected = [next(it) for _ in range(3)]
    resumed = loader()
    resumed.restore_state_rank(state)
    got = [b for _, b in zip(range(3), resumed)]
    assert [b.__key__ for b in got] == [b.__key__ for b in expected]
    for a, b in zip(got, expected):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.pixel_values, b.pixel_values)
        assert torch.equal(a.cu_seqlens, b.cu_seqlens) and torch.equal(a.position_ids, b.position_ids)
    assert len({d for b in got for d in _sample_deltas(b, tok.image_context_id)}) >= 2
