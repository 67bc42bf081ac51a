"""Megatron distributed checkpoints of `FlemingVLM`: fill a rank's shard from full tensors, save,
load back, and the record of where the weights came from.

A converted checkpoint folder holds what ``dist_checkpointing.save`` writes (TP/PP-independent:
it loads at any TP/PP) plus ``fleming_hf.json`` (`ConversionRecord`: the Hugging Face layout and
config.json the weights came from, the `VLMConfig`, the TP/PP and dtype they were saved with) and
``hf_assets/`` (tokenizer, processor config, remote code), so ``mcore-to-hf`` can write the
original folder back without being told its layout. The state dict is saved under ``"model"``,
as Megatron-LM does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from megatron.core import dist_checkpointing, parallel_state
from megatron.core.transformer.mlp import MLP
from megatron.core.transformer.transformer_layer import TransformerLayer

from megatron_fleming.convert.tensors import TensorSource
from megatron_fleming.model.config import VLMConfig

RECORD_FILE = "fleming_hf.json"
ASSETS_DIR = "hf_assets"
RECORD_FORMAT = 1


@dataclass(frozen=True)
class ConversionRecord:
    """What ``fleming_hf.json`` says about a converted checkpoint."""

    hf_layout: str
    hf_config: dict[str, Any]
    vlm_config: dict[str, Any]
    tensor_parallel: int
    pipeline_parallel: int
    dtype: str
    format: int = RECORD_FORMAT

    def write(self, folder: Path) -> None:
        tmp = Path(folder) / (RECORD_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.rename(Path(folder) / RECORD_FILE)

    @classmethod
    def read(cls, folder: Path) -> ConversionRecord:
        path = Path(folder) / RECORD_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: this Megatron checkpoint does not record which Hugging Face "
                f"checkpoint it came from; copy {RECORD_FILE} and {ASSETS_DIR}/ from the converted "
                "checkpoint it was trained from")
        data = json.loads(path.read_text())
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"{path}: record format {data.get('format')} is not {RECORD_FORMAT}")
        return cls(**data)

    @property
    def vlm(self) -> VLMConfig:
        return VLMConfig.from_dict(self.vlm_config)


def copy_assets(assets: list[Path], folder: Path) -> None:
    target = Path(folder) / ASSETS_DIR
    target.mkdir(parents=True, exist_ok=True)
    for asset in assets:
        shutil.copy2(asset, target / Path(asset).name)


def assets_of(folder: Path) -> list[Path]:
    target = Path(folder) / ASSETS_DIR
    return sorted(target.iterdir()) if target.is_dir() else []


def full_names(model: torch.nn.Module) -> dict[str, str]:
    """This shard's state-dict names -> the names of a TP=1, PP=1 model.

    Pipeline stages number their layers from 0; `TransformerLayer.layer_number` is the global
    1-based number.
    """
    layer_prefix = {f"{name}.": f"{name.rsplit('.', 1)[0]}.{module.layer_number - 1}."
                    for name, module in model.named_modules() if isinstance(module, TransformerLayer)}
    names = {}
    for key in model.state_dict():
        owner = max((p for p in layer_prefix if key.startswith(p)), key=len, default=None)
        names[key] = key if owner is None else layer_prefix[owner] + key[len(owner):]
    return names


def gated_fc1_names(model: torch.nn.Module) -> set[str]:
    """linear_fc1 tensors of SwiGLU MLPs: a TP rank holds [gate_r; up_r], not a contiguous slice."""
    return {f"{name}.linear_fc1.{p}" for name, module in model.named_modules()
            if isinstance(module, MLP) and module.config.gated_linear_unit for p in ("weight", "bias")}


def shard_of(full: torch.Tensor, local: torch.Tensor, *, gated: bool) -> torch.Tensor:
    """The part of a full tensor this tensor-parallel rank holds (megatron's partition attributes)."""
    if not getattr(local, "tensor_model_parallel", False):
        if full.shape != local.shape:
            raise ValueError(f"full tensor {tuple(full.shape)} does not match the replicated "
                             f"{tuple(local.shape)}")
        return full
    dim = local.partition_dim
    tp = parallel_state.get_tensor_model_parallel_world_size()
    rank = parallel_state.get_tensor_model_parallel_rank()
    if full.shape[dim] != local.shape[dim] * tp:
        raise ValueError(f"full tensor {tuple(full.shape)} cannot be split {tp} ways into "
                         f"{tuple(local.shape)} along dim {dim}")
    if gated:
        return torch.cat([half.chunk(tp, dim)[rank] for half in full.chunk(2, dim)], dim)
    return full.chunk(tp, dim)[rank]


@torch.no_grad()
def fill_from_full(model: torch.nn.Module, full: TensorSource) -> int:
    """Copy this rank's shard of every tensor out of `full` (TP=1/PP=1 names). Returns the count."""
    names = full_names(model)
    gated = gated_fc1_names(model)
    count = 0
    for key, tensor in model.state_dict(keep_vars=True).items():
        if key.endswith("_extra_state"):
            continue
        tensor.data.copy_(shard_of(full.get(names[key]), tensor, gated=key in gated))
        count += 1
    return count


def save_checkpoint(model: torch.nn.Module, folder: Path) -> None:
    """Every rank calls this; each writes its own shards."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(folder))


def load_checkpoint(model: torch.nn.Module, folder: Path) -> None:
    """Load this rank's shard, at whatever TP/PP the checkpoint was saved with."""
    loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, str(folder))
    model.load_state_dict(loaded["model"], strict=True)
