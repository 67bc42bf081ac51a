"""Load a checkpoint for generation: this rank's `FlemingVLM` stage, its tokenizer and end ids.

Three sources, each read the way the rest of the project reads it:

- a Hugging Face InternVL folder (either layout): converted in memory by the conversion rules
  (`convert.mcore_mapping`), each rank copying only its shard, the vocabulary padded as
  `fleming convert hf-to-mcore --tp N` pads it (Megatron-LM's 128 x TP: any TP splits it; the
  padded rows are masked, never sampled); V2PE delta 1 unless told;
- a converted Megatron checkpoint (`fleming convert hf-to-mcore`): dist-checkpoint +
  `fleming_hf.json` (model config) + `hf_assets/` (tokenizer, generation config);
- a training run folder or one of its `iter_*` checkpoints: `config.yaml` gives the model, the
  tokenizer is `data.tokenizer.path` or the run's tiny BPE.

End ids: `<|im_end|>` (the turn end the chat template trains on) plus the EOS ids the Hugging Face
config or `generation_config.json` declare. Call after `initialize_parallel`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from megatron_fleming.data.tokenizer import IM_END, ChatTokenizer, load_tokenizer
from megatron_fleming.model.config import ParallelConfig, VLMConfig, megatron_vocab_pad_multiple
from megatron_fleming.model.parallel import build_model_chunks, unwrap

TRAIN_CONFIG = "config.yaml"


@dataclass
class LoadedModel:
    """What generation needs from a checkpoint, on this rank."""

    model: torch.nn.Module  # this rank's stage (Float16Module-wrapped for bf16)
    cfg: VLMConfig
    tokenizer: ChatTokenizer
    end_ids: tuple[int, ...]
    source: str


def _eos_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def end_ids_of(tokenizer: ChatTokenizer, cfg: VLMConfig,
               declared: Iterable[int] = ()) -> tuple[int, ...]:
    ids = [tokenizer.token_id(IM_END)] if tokenizer.backend.token_to_id(IM_END) is not None else []
    ids += list(declared)
    return tuple(dict.fromkeys(i for i in ids if 0 <= i < cfg.language.vocab_size))


def _declared_eos(raw_config: dict[str, Any], assets: Iterable[Path]) -> list[int]:
    """EOS ids of a Hugging Face config.json (either layout) and generation_config.json."""
    ids: list[int] = []
    for section in ("text_config", "llm_config"):
        ids += _eos_ids((raw_config.get(section) or {}).get("eos_token_id"))
    for asset in assets:
        if Path(asset).name == "generation_config.json":
            ids += _eos_ids(json.loads(Path(asset).read_text()).get("eos_token_id"))
    return ids


def _build(cfg: VLMConfig, par: ParallelConfig) -> torch.nn.Module:
    if par.virtual_pipeline_parallel:
        raise ValueError("generation runs without virtual pipeline stages; unset "
                         "virtual_pipeline_parallel")
    return build_model_chunks(cfg, par)[0]


def load_hf(folder: Path, par: ParallelConfig, v2pe_delta: float | None = None) -> LoadedModel:
    """A Hugging Face InternVL folder, converted in memory to this rank's shard."""
    from megatron_fleming.convert.conversion import _vision_padded_heads
    from megatron_fleming.convert.hf_checkpoint import read_hf_checkpoint
    from megatron_fleming.convert.mcore_checkpoint import fill_from_full
    from megatron_fleming.convert.mcore_mapping import hf_to_mcore
    from megatron_fleming.convert.tensors import MappedSource, check_rules_cover

    ck = read_hf_checkpoint(folder)
    heads = _vision_padded_heads(ck.config.vision_config.num_attention_heads, par.tensor_parallel,
                                 None)
    cfg = VLMConfig.from_hf(ck.config, num_padded_heads=heads,
                            v2pe_delta=1.0 if v2pe_delta is None else v2pe_delta,
                            vocab_pad_multiple=megatron_vocab_pad_multiple(par.tensor_parallel))
    rules = hf_to_mcore(cfg)
    check_rules_cover(rules, ck.tensors, f"{folder} -> FlemingVLM")
    model = _build(cfg, par)
    fill_from_full(unwrap(model), MappedSource(ck.tensors, rules))
    tokenizer = load_tokenizer(folder)
    declared = _declared_eos(ck.raw_config, ck.assets)
    return LoadedModel(model, cfg, tokenizer, end_ids_of(tokenizer, cfg, declared), f"hf:{folder}")


def _with_delta(cfg: VLMConfig, v2pe_delta: float | None) -> VLMConfig:
    return cfg if v2pe_delta is None else dataclasses.replace(cfg, v2pe_delta=v2pe_delta)


def load_mcore(folder: Path, par: ParallelConfig, v2pe_delta: float | None = None) -> LoadedModel:
    """A converted Megatron checkpoint, or a training run folder / `iter_*` checkpoint."""
    from megatron_fleming.convert.mcore_checkpoint import (
        RECORD_FILE,
        ConversionRecord,
        assets_of,
        load_checkpoint,
    )

    folder = Path(folder)
    if (folder / RECORD_FILE).is_file():
        record = ConversionRecord.read(folder)
        cfg = _with_delta(record.vlm, v2pe_delta)
        model = _build(cfg, par)
        load_checkpoint(unwrap(model), folder)
        assets = assets_of(folder)
        tokenizer = load_tokenizer(folder / "hf_assets")
        declared = _declared_eos(record.hf_config, assets)
        return LoadedModel(model, cfg, tokenizer, end_ids_of(tokenizer, cfg, declared),
                           f"mcore:{folder}")
    return _load_training_run(folder, par, v2pe_delta)


def _run_config(path: Path):
    """A run's saved config: stages 1-3 (`fleming train`) or stage 4 (`fleming grpo`, which has a
    ``grpo`` section); both have the model, parallel and tokenizer sections read here."""
    import yaml

    if "grpo" in (yaml.safe_load(path.read_text()) or {}):
        from megatron_fleming.grpo.config import load_grpo_config

        return load_grpo_config(path)
    from megatron_fleming.train.config import load_config

    return load_config(path)


def _load_training_run(folder: Path, par: ParallelConfig, v2pe_delta: float | None) -> LoadedModel:
    from megatron_fleming.convert.mcore_checkpoint import load_checkpoint
    from megatron_fleming.train.checkpoint import resolve_checkpoint
    from megatron_fleming.train.loader import TINY_TOKENIZER_DIR

    run = folder if (folder / TRAIN_CONFIG).is_file() else folder.parent
    if not (run / TRAIN_CONFIG).is_file():
        raise FileNotFoundError(
            f"{folder} is neither a converted checkpoint (no fleming_hf.json) nor a training run "
            f"or one of its checkpoints (no {TRAIN_CONFIG} there or one level up)")
    train_cfg = _run_config(run / TRAIN_CONFIG)
    if train_cfg.parallel.virtual_pipeline_parallel:
        raise ValueError(f"{run} was trained with virtual pipeline stages (model0, model1 ... "
                         "in its checkpoints); generation loads single-chunk checkpoints")
    cfg = _with_delta(train_cfg.vlm_config(), v2pe_delta)
    checkpoint = resolve_checkpoint(folder)
    model = _build(cfg, par)
    load_checkpoint(unwrap(model), checkpoint)
    section = train_cfg.data.tokenizer
    tokenizer = load_tokenizer(section.path if section.path else run / TINY_TOKENIZER_DIR)
    return LoadedModel(model, cfg, tokenizer, end_ids_of(tokenizer, cfg), f"mcore:{checkpoint}")
