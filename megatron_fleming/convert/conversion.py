"""The two conversions as they run on each rank (launched by `convert.jobs`).

hf-to-mcore: every rank builds its `FlemingVLM` shard, copies its part of every tensor out of the
lazily mapped Hugging Face tensors (reading only what it needs) and dist-checkpointing writes the
shards; rank 0 adds the conversion record and the Hugging Face assets. mcore-to-hf: one rank;
dist-checkpointing reshards whatever TP/PP was saved into a TP=1/PP=1 model, whose state dict maps
back to Hugging Face names.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from megatron_fleming.convert.hf_checkpoint import (
    image_context_id,
    read_hf_checkpoint,
    write_hf_checkpoint,
)
from megatron_fleming.convert.hf_configs import chat_extras, config_from_internvl_chat
from megatron_fleming.convert.hf_layouts import EMBED_TOKENS, HFLayout
from megatron_fleming.convert.jobs import HFToMcore, McoreToHF
from megatron_fleming.convert.mcore_checkpoint import (
    ConversionRecord,
    assets_of,
    copy_assets,
    fill_from_full,
    load_checkpoint,
    save_checkpoint,
)
from megatron_fleming.convert.mcore_mapping import MCORE_OUTPUT, hf_to_mcore, mcore_to_hf
from megatron_fleming.convert.tensors import DictSource, MappedSource, check_rules_cover
from megatron_fleming.convert.verify import verify_on_rank
from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.parallel import (
    build_model_chunks,
    initialize_parallel,
    shutdown_parallel,
    unwrap,
)


def _vision_padded_heads(heads: int, tp: int, requested: int | None) -> int | None:
    if requested is not None:
        return requested
    return None if heads % tp == 0 else -(-heads // tp) * tp


def hf_to_mcore_rank(job: HFToMcore) -> float | None:
    ck = read_hf_checkpoint(job.hf)
    padded = _vision_padded_heads(ck.config.vision_config.num_attention_heads, job.tensor_parallel,
                                  job.vision_padded_heads)
    cfg = VLMConfig.from_hf(ck.config, num_padded_heads=padded,
                            vocab_pad_multiple=job.vocab_pad_multiple)
    dtype = job.dtype
    if dtype == "auto":
        dtype = "bf16" if ck.tensors.get(EMBED_TOKENS).dtype == torch.bfloat16 else "fp32"
    par = ParallelConfig(tensor_parallel=job.tensor_parallel, pipeline_parallel=job.pipeline_parallel,
                         device=job.device, dtype=dtype)
    rules = hf_to_mcore(cfg)
    check_rules_cover(rules, ck.tensors, f"{job.hf} -> FlemingVLM")
    initialize_parallel(par)
    try:
        model = unwrap(build_model_chunks(cfg, par)[0])
        fill_from_full(model, MappedSource(ck.tensors, rules))
        save_checkpoint(model, job.out)
        del model
        if torch.distributed.get_rank() == 0:
            copy_assets(ck.assets, job.out)
            ConversionRecord(hf_layout=ck.layout.value, hf_config=ck.raw_config,
                             vlm_config=cfg.to_dict(), tensor_parallel=job.tensor_parallel,
                             pipeline_parallel=job.pipeline_parallel, dtype=dtype).write(job.out)
        torch.distributed.barrier()
        return verify_on_rank(ck, cfg, par, job.out) if job.verify else None
    finally:
        shutdown_parallel()


def _full_state_dict(folder: Path, cfg: VLMConfig, par: ParallelConfig) -> dict[str, torch.Tensor]:
    """The checkpoint as a TP=1/PP=1 state dict (names of `megatron_fleming.model`'s layout)."""
    model = unwrap(build_model_chunks(cfg, par)[0])
    load_checkpoint(model, folder)
    full = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    if cfg.language.tie_word_embeddings:
        full.pop(MCORE_OUTPUT, None)
    return full


def _source_config(record: ConversionRecord, assets: list[Path]) -> Any:
    """transformers' `InternVLConfig` of the Hugging Face checkpoint the weights came from."""
    raw = record.hf_config
    if HFLayout(record.hf_layout) is HFLayout.INTERNVL:
        return config_from_internvl_chat(raw, image_context_id(raw, assets))
    from transformers import InternVLConfig

    return InternVLConfig.from_dict(copy.deepcopy(raw))


def mcore_to_hf_rank(job: McoreToHF) -> str:
    record = ConversionRecord.read(job.mcore)
    layout = HFLayout(job.layout or record.hf_layout)
    cfg = record.vlm
    par = ParallelConfig(device=job.device, dtype=record.dtype)
    initialize_parallel(par)
    try:
        full = _full_state_dict(job.mcore, cfg, par)
    finally:
        shutdown_parallel()
    rules = mcore_to_hf(cfg)
    check_rules_cover(rules, DictSource(full), f"{job.mcore} -> Hugging Face")
    assets = assets_of(job.mcore)
    source = HFLayout(record.hf_layout)
    # Into its own layout the source config.json is written back as it was; into the other, a
    # translated one (keeping the original-only fields when the source was the original).
    write_hf_checkpoint(job.out, _source_config(record, assets), MappedSource(DictSource(full), rules),
                        layout, config_json=record.hf_config if layout is source else None,
                        chat_extras=chat_extras(record.hf_config) if source is HFLayout.INTERNVL else None,
                        assets=assets)
    return layout.value
