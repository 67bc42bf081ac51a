"""Interleaved documents (the stage1 build of the bundled MMC4 samples) through energon's own loader
and the real task encoder: each packed sequence is the document's text with an image run exactly
where its ``<image>`` markers stand, labels on every text token and never on an image token; the
8B/38B stage configs' metadatasets load the stage builds; and the real trainer takes a step on
the documents."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from megatron.energon import WorkerConfig, get_loader, get_train_dataset

from datakit.shard_writer import iter_samples
from megatron_fleming.data.prompt import IGNORE_INDEX, PromptError, PromptRenderer
from megatron_fleming.data.task_encoder import FlemingTaskEncoder, TaskEncoderConfig
from megatron_fleming.data.tokenizer import IMG_CONTEXT, IMG_END, IMG_START, PAD, train_tiny_tokenizer
from megatron_fleming.train.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "megatron_fleming" / "configs"
WORKER = Path(__file__).resolve().parent / "train_workers" / "train_run.py"
TOKENS_PER_TILE = 16


def _docs(out: Path) -> dict[str, dict]:
    return {k: json.loads(p["json"]) for tar in sorted(out.glob("*/*.tar")) for k, p in iter_samples(tar)}


@pytest.fixture(scope="module")
def documents(stage_builds):
    out = stage_builds["stage1"].out
    docs = _docs(out)
    return out, docs, train_tiny_tokenizer([d["text"] for d in docs.values()], vocab_size=500)


def _expected(tok, text: str, tiles: list[int]) -> tuple[list[int], list[int]]:
    """Token ids and aligned labels written out independently: the text around each marker
    encoded, the image run in its place, <|endoftext|> last; labels = ids except image tokens."""
    ids, labels = [], []
    for k, piece in enumerate(text.split("<image>")):
        if k:
            run = [tok.token_id(IMG_START)] + [tok.token_id(IMG_CONTEXT)] * (tiles[k - 1] * TOKENS_PER_TILE) \
                + [tok.token_id(IMG_END)]
            ids += run
            labels += [IGNORE_INDEX] * len(run)
        ids += tok.encode(piece)
        labels += tok.encode(piece)
    return ids + [tok.token_id(PAD)], labels + [tok.token_id(PAD)]


def test_documents_pack_with_images_in_place_and_loss_on_text_only(documents):
    out, docs, tok = documents
    te = FlemingTaskEncoder(tok, TaskEncoderConfig(max_seq_len=4096, tokens_per_tile=TOKENS_PER_TILE,
                                                   pad_to_multiple_of=8))
    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    ds = get_train_dataset(out, split_part="train", worker_config=wc, batch_size=1, packing_buffer_size=4,
                           shuffle_buffer_size=None, max_samples_per_sequence=None, task_encoder=te)
    batch = next(iter(get_loader(ds)))
    assert len(batch.__key__) > 1 and batch.skipped == {}  # several documents packed in one row
    bounds = batch.cu_seqlens.tolist()
    tiles = iter(batch.num_tiles.tolist())
    for key, a, b in zip(batch.__key__, bounds[:-1], bounds[1:]):
        text = docs[key]["text"]
        doc_tiles = [next(tiles) for _ in range(text.count("<image>"))]
        ids, aligned = _expected(tok, text, doc_tiles)
        assert batch.input_ids[0, a:b].tolist() == ids, key
        assert batch.labels[0, a:b].tolist() == aligned[1:] + [IGNORE_INDEX]  # next-token targets
        trained = batch.labels[0, a:b][batch.labels[0, a:b] != IGNORE_INDEX].tolist()
        assert tok.token_id(IMG_CONTEXT) not in trained and tok.decode(trained).endswith(PAD)
        assert batch.position_ids[0, a] == 0
    n_context = int((batch.input_ids == tok.token_id(IMG_CONTEXT)).sum())
    assert n_context == TOKENS_PER_TILE * batch.pixel_values.shape[0] > 0


def test_render_document_refuses_a_marker_count_that_does_not_match(documents):
    _, _, tok = documents
    renderer = PromptRenderer(tok, tokens_per_tile=4)
    with pytest.raises(PromptError, match="markers for 2 images"):
        renderer.render_document("one <image> only", [1, 1])
    with pytest.raises(PromptError, match="needs text"):
        renderer.render_document("<image>", [1])


def test_stage_configs_read_their_stage_blends(stage_builds, tmp_path):
    """Each 8B/38B stage config's data.path is a committed metadataset over shards/<stage>; placed
    where a repository checkout puts it, energon loads it through the config's own task encoder."""
    shards = next(iter(stage_builds.values())).out.parent
    checkout = tmp_path / "checkout"
    shutil.copytree(CONFIGS / "data", checkout / "megatron_fleming" / "configs" / "data")
    (checkout / "shards").symlink_to(shards, target_is_directory=True)
    docs = {stage: _docs(shards / f"stage{stage}") for stage in (1, 2, 3)}
    texts = [d.get("text") or t["value"] for ds in docs.values() for d in ds.values()
             for t in d.get("conversations", [{}])]
    tok = train_tiny_tokenizer(texts, vocab_size=400)
    for stage in (1, 2, 3):
        configs = [load_config(CONFIGS / f"{size}_stage{stage}.yaml") for size in ("8b", "38b")]
        assert {c.data.path for c in configs} == {f"megatron_fleming/configs/data/stage{stage}.yaml"}
        encoders = [c.data.encoder_config(c.vlm_config()) for c in configs]
        assert encoders[0] == encoders[1]  # both model sizes read the data the same way
        cfg = configs[0]
        wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
        ds = get_train_dataset(checkout / cfg.data.path, split_part=cfg.data.split, worker_config=wc, batch_size=1,
                               packing_buffer_size=4, shuffle_buffer_size=None, max_samples_per_sequence=None,
                               task_encoder=FlemingTaskEncoder(tok, encoders[0]))
        batch = next(iter(get_loader(ds)))
        assert set(batch.__key__) <= set(docs[stage]) and batch.skipped == {}
        assert int(batch.loss_mask.sum()) > 0 and batch.pixel_values.shape[1:] == (3, 448, 448)


def test_the_trainer_steps_on_interleaved_documents(stage_builds, tmp_path, torchrun):
    result = torchrun(str(WORKER), 1, [
        "--config", str(CONFIGS / "tiny_cpu.yaml"), f"data.path={stage_builds['stage1'].out}",
        f"checkpoint.dir={tmp_path / 'run'}", "train.stage=1", "train.conversations=8", "checkpoint.save_at_end=false",
        "data.shuffle_buffer_size=null", "data.max_samples_per_sequence=null", "logging.tensorboard=false"],
        timeout=240)
    steps = result["steps"]
    # each step consumes 4 packs of at least one document: the 8 documents take 1 or 2 steps
    assert result["reason"] == "finished" and 1 <= len(steps) <= 2
    assert steps[-1]["consumed"] >= 8 and all(s["consumed"] < 8 for s in steps[:-1])
    assert all(torch.isfinite(torch.tensor(s["loss"])) and s["loss_tokens"] > 0 for s in steps)
    assert steps[-1]["skipped"] == {}
