"""FP8 training through Transformer Engine: the config, its checks, and the megatron knobs.

FP8 changes no code path of ours: with ``parallel.transformer_impl: transformer_engine`` the model
is built from megatron's TE layer specs, and the ``fp8`` / ``fp8_recipe`` fields of the language
model's `TransformerConfig` make megatron run those layers under TE's ``fp8_autocast``. The Qwen2.5
decoder (nearly all the FLOPs) runs in FP8; InternViT and the projector stay in bf16.

Checks happen twice: when the config loads (FP8 needs a GPU run with TE layers and bf16; on a CPU
config this fails with a message saying Transformer Engine is needed) and when the model is built
(TE importable, a GPU with FP8 tensor cores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from megatron_fleming.model.config import ParallelConfig

#: Lowest compute capability with FP8 tensor cores (Ada / Hopper), and what MXFP8 needs (Blackwell).
FP8_MIN_CAPABILITY = (8, 9)
MXFP8_MIN_CAPABILITY = (10, 0)


@dataclass(frozen=True)
class Fp8Config:
    """FP8 settings (megatron's ``--fp8-*`` arguments); the defaults are Megatron-LM's usual
    Hopper choice: hybrid format (E4M3 forward, E5M2 gradients), delayed scaling over a
    1024-step amax history, max of the history."""

    enabled: bool = False
    format: Literal["hybrid", "e4m3"] = "hybrid"
    recipe: Literal["delayed", "tensorwise", "blockwise", "mxfp8"] = "delayed"
    margin: int = 0
    amax_history_len: int = 1024
    amax_compute_algo: Literal["max", "most_recent"] = "max"
    wgrad: bool = True  # weight gradients in FP8 too
    param: bool = False  # keep weights in FP8 (needs the distributed optimizer)

    def __post_init__(self) -> None:
        if self.format not in ("hybrid", "e4m3"):
            raise ValueError(f"fp8.format {self.format!r}: use 'hybrid' or 'e4m3'")
        if self.recipe not in ("delayed", "tensorwise", "blockwise", "mxfp8"):
            raise ValueError(f"fp8.recipe {self.recipe!r}: use delayed, tensorwise, blockwise or mxfp8")
        if self.amax_compute_algo not in ("max", "most_recent"):
            raise ValueError(f"fp8.amax_compute_algo {self.amax_compute_algo!r}: use max or most_recent")
        if self.amax_history_len < 1:
            raise ValueError("fp8.amax_history_len must be >= 1")


def check_fp8(fp8: Fp8Config, par: ParallelConfig) -> None:
    """Config-time check: FP8 needs Transformer Engine layers on a GPU, in bf16."""
    if not fp8.enabled:
        return
    if par.device != "cuda" or par.transformer_impl != "transformer_engine":
        raise ValueError(
            "fp8.enabled needs Transformer Engine on an NVIDIA GPU (Hopper or newer): set "
            "parallel.device: cuda and parallel.transformer_impl: transformer_engine and install "
            "the 'gpu' extra (transformer-engine[pytorch]); this config runs on "
            f"device={par.device!r} with transformer_impl={par.transformer_impl!r}, where FP8 is "
            "not available. Set fp8.enabled: false to train in bf16/fp32.")
    if par.dtype != "bf16":
        raise ValueError("fp8.enabled needs parallel.dtype: bf16 (FP8 GEMMs with bf16 everywhere else)")


def fp8_transformer_kwargs(fp8: Fp8Config) -> dict[str, Any]:
    """The `TransformerConfig` fields that switch megatron's TE layers to FP8 ({} when off)."""
    if not fp8.enabled:
        return {}
    return dict(fp8=fp8.format, fp8_recipe=fp8.recipe, fp8_margin=fp8.margin,
                fp8_amax_history_len=fp8.amax_history_len,
                fp8_amax_compute_algo=fp8.amax_compute_algo, fp8_wgrad=fp8.wgrad,
                fp8_param=fp8.param)


def with_fp8(par: ParallelConfig, fp8: Fp8Config) -> ParallelConfig:
    """`par` with the FP8 fields added to what it passes to the language TransformerConfig."""
    kwargs = fp8_transformer_kwargs(fp8)
    return dataclasses.replace(par, extra={**par.extra, **kwargs}) if kwargs else par


def require_fp8_runtime(fp8: Fp8Config) -> None:
    """Build-time check: TE importable and a GPU with FP8 tensor cores."""
    if not fp8.enabled:
        return
    import torch

    from megatron_fleming.model.vision_layers import require_transformer_engine

    require_transformer_engine()
    capability = torch.cuda.get_device_capability()
    needed = MXFP8_MIN_CAPABILITY if fp8.recipe == "mxfp8" else FP8_MIN_CAPABILITY
    if capability < needed:
        raise RuntimeError(f"fp8.recipe {fp8.recipe!r} needs compute capability "
                           f"{needed[0]}.{needed[1]}+; this GPU has {capability[0]}.{capability[1]}")
