"""InternViT transformer layers as megatron-core ModuleSpecs.

megatron's own `get_vit_layer_with_local_spec()` makes attention causal and has no layer scale,
so InternViT gets its spec here: pre-norm blocks with NON-causal attention and
`x + ls1 * attn(norm1(x))`, `x + ls2 * mlp(norm2(x))`. The 6B variant adds an RMS QK-norm taken
over all heads at once (InternViT's `q_norm`/`k_norm` act on the full embedding), which under
tensor parallelism needs the sum of squares from every rank, and has no QKV bias while its output
projection and MLP do.

Local and Transformer Engine specs use the same module names, so checkpoints are interchangeable.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from megatron.core import parallel_state, tensor_parallel
from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from megatron.core.tensor_parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    reduce_from_tensor_model_parallel_region,
)
from megatron.core.transformer.attention import SelfAttention, SelfAttentionSubmodules
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules
from megatron.core.transformer.utils import make_sharded_tensors_for_checkpoint
from megatron.core.utils import divide

TransformerImpl = Literal["local", "transformer_engine"]


class LayerScaledTransformerLayer(TransformerLayer):
    """megatron TransformerLayer with InternViT's per-channel layer scale on both residual branches.

    `ls1` scales the attention branch and `ls2` the MLP branch before the residual add; they
    replace the spec's bias-dropout-add, so `self_attn_bda` / `mlp_bda` in the spec are unused.
    """

    def __init__(self, config: TransformerConfig, submodules: TransformerLayerSubmodules,
                 *args, layer_scale_init: float = 0.1, **kwargs) -> None:
        super().__init__(config, submodules, *args, **kwargs)
        self.ls1 = torch.nn.Parameter(torch.full((config.hidden_size,), layer_scale_init,
                                                 dtype=config.params_dtype))
        self.ls2 = torch.nn.Parameter(torch.full((config.hidden_size,), layer_scale_init,
                                                 dtype=config.params_dtype))
        del self.self_attn_bda, self.mlp_bda  # the spec's modules; plain callables replace them
        self.self_attn_bda = self._scaled_bias_dropout_add("ls1")
        self.mlp_bda = self._scaled_bias_dropout_add("ls2")

    def _scaled_bias_dropout_add(self, scale_name: str):
        def factory(training: bool, _fused: bool):
            def apply(output_with_bias, residual, dropout_prob):
                output, bias = output_with_bias
                if bias is not None:
                    output = output + bias
                output = F.dropout(output, p=dropout_prob, training=training)
                return residual + getattr(self, scale_name) * output

            return apply

        return factory


class CrossHeadRMSNorm(MegatronModule):
    """RMSNorm over the real channels of all heads, for InternViT-6B's QK-norm under TP.

    Input [s, b, heads_per_rank, head_dim]. The mean square divides by the real embedding size
    (`config.hidden_size`): zero padding heads add nothing to the sum. The cross-rank sum is an
    all-reduce in both forward and backward (every rank's output depends on every rank's input).
    The weight is split across TP ranks like the heads.
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__(config=config)
        del hidden_size  # megatron passes the head dim; this norm spans all local heads
        tp = config.tensor_model_parallel_size
        self.local_size = divide(config.num_attention_heads, tp) * config.kv_channels
        self.real_size = config.hidden_size
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(self.local_size, dtype=config.params_dtype))
        tensor_parallel.set_tensor_model_parallel_attributes(self.weight, True, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(*shape[:-2], self.local_size).float()
        square_sum = flat.pow(2).sum(-1, keepdim=True)
        if self.config.tensor_model_parallel_size > 1:
            square_sum = reduce_from_tensor_model_parallel_region(
                copy_to_tensor_model_parallel_region(square_sum))
        normed = flat * torch.rsqrt(square_sum / self.real_size + self.eps)
        return (self.weight * normed.to(x.dtype)).reshape(shape)

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata=None):
        dp_cp = (metadata or {}).get("dp_cp_group") or parallel_state.get_data_parallel_group(
            with_context_parallel=True)
        return make_sharded_tensors_for_checkpoint(
            self.state_dict(prefix="", keep_vars=True), prefix, {"weight": 0}, sharded_offsets,
            tp_group=parallel_state.get_tensor_model_parallel_group(), dp_cp_group=dp_cp)


def without_bias(linear: type) -> type:
    """A subclass of a megatron linear that never has a bias.

    megatron gives linear_qkv a bias whenever `add_bias_linear` is set; InternViT-6B has biases on
    its output projection and MLP but none on QKV.
    """

    class Biasless(linear):
        def __init__(self, *args, bias: bool = True, **kwargs) -> None:
            del bias
            super().__init__(*args, bias=False, **kwargs)

    Biasless.__name__ = Biasless.__qualname__ = f"Biasless{linear.__name__}"
    return Biasless


BiaslessColumnParallelLinear = without_bias(ColumnParallelLinear)


def require_transformer_engine():
    """megatron's TE extension module; a clear error with the install hint when TE is missing."""
    from megatron.core.extensions import transformer_engine as te_ext

    if not te_ext.HAVE_TE:
        raise ImportError(
            "transformer_impl='transformer_engine' needs Transformer Engine: install the 'gpu' "
            "extra (pip install 'transformer-engine[pytorch]') on a CUDA machine, or use "
            "transformer_impl='local'"
        )
    return te_ext


def internvit_layer_spec(*, qk_norm: bool, qkv_bias: bool, layer_scale_init: float,
                         impl: TransformerImpl = "local") -> ModuleSpec:
    """Spec of one InternViT block (300M: qk_norm=False, qkv_bias=True; 6B: the opposite)."""
    if impl == "local":
        norm, column, row, attention = (WrappedTorchNorm, ColumnParallelLinear, RowParallelLinear,
                                        DotProductAttention)
        qkv = column if qkv_bias else BiaslessColumnParallelLinear
    else:
        te = require_transformer_engine()
        norm, column, row, attention = (te.TENorm, te.TEColumnParallelLinear,
                                        te.TERowParallelLinear, te.TEDotProductAttention)
        qkv = column if qkv_bias else without_bias(column)
    return ModuleSpec(
        module=LayerScaledTransformerLayer,
        params={"layer_scale_init": layer_scale_init},
        submodules=TransformerLayerSubmodules(
            input_layernorm=norm,
            self_attention=ModuleSpec(
                module=SelfAttention,
                params={"attn_mask_type": AttnMaskType.no_mask},
                submodules=SelfAttentionSubmodules(
                    linear_qkv=qkv,
                    core_attention=attention,
                    linear_proj=row,
                    q_layernorm=CrossHeadRMSNorm if qk_norm else None,
                    k_layernorm=CrossHeadRMSNorm if qk_norm else None,
                ),
            ),
            pre_mlp_layernorm=norm,
            mlp=ModuleSpec(module=MLP, submodules=MLPSubmodules(linear_fc1=column, linear_fc2=row)),
        ),
    )
