"""The training data stream: tokenizer, task encoder and energon's savable loader for one rank.

Every rank of a data-parallel replica (its TP and PP peers) builds the same loader over the same
slice (`WorkerConfig(rank=dp_rank, world_size=dp_size)`), so all stages of a pipeline see the same
micro-batches without broadcasting them; its state (`save_state_rank`) is saved with each
checkpoint. The task encoder's tile size, tokens per tile and V2PE step come from the model
config, so data and model cannot disagree; the tokenizer's `<IMG_CONTEXT>` id and size are
checked against the model's vocabulary.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Iterator

import torch
from megatron.energon import SavableDataLoader, WorkerConfig, get_savable_loader, get_train_dataset

from megatron_fleming.data.task_encoder import FlemingTaskEncoder
from megatron_fleming.data.tokenizer import ChatTokenizer, load_tokenizer, train_tiny_tokenizer
from megatron_fleming.model.config import VLMConfig
from megatron_fleming.train.config import TrainConfig

TINY_TOKENIZER_DIR = "tokenizer"


def conversation_texts(dataset: Path) -> Iterator[str]:
    """Every turn of every sample JSON in the dataset's tars (an interleaved document's text), in
    file order (for the tiny BPE)."""
    tars = sorted(dataset.rglob("*.tar"))
    if not tars:
        raise FileNotFoundError(f"no .tar shards under {dataset}: data.tokenizer.tiny_bpe_vocab "
                                "trains on a dataset folder, not a metadataset file")
    for tar_path in tars:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if not member.name.endswith(".json"):
                    continue
                try:
                    doc = json.loads(tar.extractfile(member).read())
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue  # the task encoder counts it as bad_json when training reaches it
                for turn in doc.get("conversations", []):
                    if isinstance(turn, dict) and isinstance(turn.get("value"), str):
                        yield turn["value"]
                if isinstance(doc.get("text"), str):
                    yield doc["text"]


def build_tokenizer(cfg: TrainConfig, vlm: VLMConfig) -> ChatTokenizer:
    """A local tokenizer directory, or the run's tiny BPE (trained once by rank 0, then read by
    every rank from the run folder, so all ranks and every resume use the same vocabulary)."""
    section = cfg.data.tokenizer
    if section.path is not None:
        tokenizer = load_tokenizer(section.path)
    else:
        folder = Path(cfg.checkpoint.dir) / TINY_TOKENIZER_DIR
        if torch.distributed.get_rank() == 0 and not (folder / "tokenizer.json").is_file():
            texts = list(conversation_texts(Path(cfg.data.path)))
            train_tiny_tokenizer(texts, vocab_size=section.tiny_bpe_vocab).save(folder)
        torch.distributed.barrier()
        tokenizer = load_tokenizer(folder)
    check_tokenizer(tokenizer, vlm)
    return tokenizer


def check_tokenizer(tokenizer: ChatTokenizer, vlm: VLMConfig) -> None:
    if tokenizer.vocab_size > vlm.language.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's "
                         f"vocabulary is {vlm.language.vocab_size}: set "
                         "model.overrides.language.vocab_size to at least the tokenizer's size")
    if tokenizer.image_context_id != vlm.image_context_token_id:
        raise ValueError(f"the tokenizer's <IMG_CONTEXT> id is {tokenizer.image_context_id} but the "
                         f"model expects {vlm.image_context_token_id}: set "
                         "model.overrides.image_context_token_id to the tokenizer's id")


def build_task_encoder(cfg: TrainConfig, vlm: VLMConfig, tokenizer: ChatTokenizer) -> FlemingTaskEncoder:
    return FlemingTaskEncoder(tokenizer, cfg.data.encoder_config(vlm))


def build_train_loader(cfg: TrainConfig, encoder: FlemingTaskEncoder, *, dp_rank: int,
                       dp_size: int, prefetch: int = 2) -> SavableDataLoader:
    """energon's savable loader over this data-parallel rank's slice; loops over epochs.

    Each worker keeps `prefetch` batches ready (at least 2): the trainer draws a whole step's
    micro-batches at once, so a step's worth prefetched means the next step never waits for
    batches the workers could have made during this one.
    """
    data = cfg.data
    if data.path is None:
        raise ValueError("data.path is not set: pass --data DIR to `fleming train` or set data.path")
    worker_config = WorkerConfig(rank=dp_rank, world_size=dp_size, num_workers=data.num_workers,
                                 seed_offset=cfg.train.seed)
    dataset = get_train_dataset(
        data.path,
        split_part=data.split,
        worker_config=worker_config,
        batch_size=cfg.train.micro_batch_size,
        packing_buffer_size=data.packing_buffer_size,
        shuffle_buffer_size=data.shuffle_buffer_size,
        max_samples_per_sequence=data.max_samples_per_sequence,
        task_encoder=encoder,
    )
    return get_savable_loader(dataset, prefetch_factor=max(2, prefetch))
