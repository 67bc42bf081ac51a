"""Vision-to-language projector, InternVL's `mlp1`: LayerNorm(k²·Dv) -> Linear -> GELU -> Linear.

megatron's `MultimodalProjector` has no input LayerNorm, hence this module. The first linear is
column-parallel and the second row-parallel, so the projector costs one all-reduce under TP; the
LayerNorm is replicated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec, build_module
from megatron.core.transformer.transformer_config import TransformerConfig


@dataclass
class ProjectorSubmodules:
    linear_fc1: type = ColumnParallelLinear
    linear_fc2: type = RowParallelLinear


class InternVLProjector(MegatronModule):
    """[tokens..., in_size] -> [tokens..., out_size]."""

    def __init__(self, config: TransformerConfig, submodules: ProjectorSubmodules, *,
                 input_size: int, output_size: int, norm_eps: float) -> None:
        super().__init__(config=config)
        self.layer_norm = torch.nn.LayerNorm(input_size, eps=norm_eps, dtype=config.params_dtype)
        self.linear_fc1 = build_module(
            submodules.linear_fc1, input_size, output_size, config=config,
            init_method=config.init_method, gather_output=False, bias=True, skip_bias_add=False,
            is_expert=False)
        self.linear_fc2 = build_module(
            submodules.linear_fc2, output_size, output_size, config=config,
            init_method=config.output_layer_init_method, bias=True, input_is_parallel=True,
            skip_bias_add=False, is_expert=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.linear_fc1(self.layer_norm(features))
        hidden, _ = self.linear_fc2(F.gelu(hidden))
        return hidden


def projector_spec(impl: str = "local") -> ModuleSpec:
    if impl == "local":
        submodules = ProjectorSubmodules()
    else:
        from megatron_fleming.model.vision_layers import require_transformer_engine

        te = require_transformer_engine()
        submodules = ProjectorSubmodules(linear_fc1=te.TEColumnParallelLinear,
                                         linear_fc2=te.TERowParallelLinear)
    return ModuleSpec(module=InternVLProjector, submodules=submodules)
