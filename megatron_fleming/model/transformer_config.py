"""megatron `TransformerConfig`s of the three components, from our typed configs.

One place decides the megatron knobs: parallel sizes, dtypes, initialisation and fusions.
Fusions are off on CPU (the shim runs plain PyTorch) and RoPE fusion is always off, because V2PE
feeds per-token fp32 positions that the fused kernels would index by in-sequence offset. GELU
bias fusion stays off everywhere: megatron's fused bias-GELU is the tanh approximation, InternVL
uses the exact erf GELU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.transformer.enums import AttnBackend
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_fleming.model.config import ParallelConfig, VisionConfig, VLMConfig


def _dtype(par: ParallelConfig) -> torch.dtype:
    return torch.bfloat16 if par.dtype == "bf16" else torch.float32


def common_kwargs(par: ParallelConfig) -> dict[str, Any]:
    """Knobs shared by every component: TP size, dtype, initialisation, fusions off."""
    local = par.transformer_impl == "local"
    return dict(
        tensor_model_parallel_size=par.tensor_parallel,
        params_dtype=_dtype(par),
        pipeline_dtype=_dtype(par),
        bf16=par.dtype == "bf16",
        # On CPU, full weights are drawn then split, so TP=1 and TP=N start from the same model.
        use_cpu_initialization=par.device == "cpu",
        perform_initialization=True,
        init_method_std=0.02,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        masked_softmax_fusion=False,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        attention_softmax_in_fp32=True,
        attention_backend=AttnBackend.local if local else AttnBackend.auto,
    )


def vision_transformer_config(vision: VisionConfig, par: ParallelConfig) -> TransformerConfig:
    """InternViT lives on the first pipeline stage whole: no PP, SP or CP inside it."""
    if vision.heads % par.tensor_parallel:
        raise ValueError(
            f"vision heads ({vision.heads}) are not divisible by tensor_parallel "
            f"({par.tensor_parallel}); set vision.num_padded_heads to a multiple of it "
            f"(e.g. {-(-vision.heads // par.tensor_parallel) * par.tensor_parallel}) and pad the "
            "checkpoint with zero heads")
    return TransformerConfig(
        **common_kwargs(par),
        num_layers=vision.num_layers,
        hidden_size=vision.hidden_size,
        num_attention_heads=vision.heads,
        num_query_groups=vision.heads,
        kv_channels=vision.head_dim,
        ffn_hidden_size=vision.ffn_hidden_size,
        add_bias_linear=True,
        add_qkv_bias=vision.qkv_bias,
        normalization="RMSNorm" if vision.norm == "rmsnorm" else "LayerNorm",
        layernorm_epsilon=vision.norm_eps,
        activation_func=F.gelu,
        gated_linear_unit=False,
        pipeline_model_parallel_size=1,
        recompute_granularity="full" if par.recompute_activations else None,
        recompute_method="uniform" if par.recompute_activations else None,
        recompute_num_layers=1 if par.recompute_activations else None,
    )


def language_transformer_config(cfg: VLMConfig, par: ParallelConfig) -> TransformerConfig:
    lang = cfg.language
    for name, count in (("heads", lang.num_attention_heads),
                        ("query groups", lang.num_query_groups)):
        if count % par.tensor_parallel:
            raise ValueError(f"language {name} ({count}) are not divisible by tensor_parallel "
                             f"({par.tensor_parallel}); choose a tensor_parallel that divides it")
    if lang.padded_vocab_size % par.tensor_parallel:
        raise ValueError(f"the vocabulary ({lang.padded_vocab_size} rows) is not divisible by "
                         f"tensor_parallel ({par.tensor_parallel}); set language.vocab_pad_multiple "
                         f"to a multiple of {par.tensor_parallel} (Megatron-LM pads to 128 x TP)")
    par.language_layers_per_stage(lang.num_layers)  # raises naming the fix if they do not split
    kwargs = common_kwargs(par)
    if par.device == "cuda":
        kwargs.update(bias_dropout_fusion=True, bias_activation_fusion=True)  # SwiGLU fusion is exact
    kwargs.update(
        num_layers=lang.num_layers,
        hidden_size=lang.hidden_size,
        num_attention_heads=lang.num_attention_heads,
        num_query_groups=lang.num_query_groups,
        kv_channels=lang.head_dim,
        ffn_hidden_size=lang.ffn_hidden_size,
        add_bias_linear=False,
        add_qkv_bias=lang.qkv_bias,
        normalization="RMSNorm",
        layernorm_epsilon=lang.norm_eps,
        activation_func=F.silu,
        gated_linear_unit=True,
        # V2PE: GPTModel's 'mrope' hands [3, b, s] positions to the rotary in fp32, unrounded;
        # the whole rotary dimension in the first section makes it plain 1-D RoPE.
        mrope_section=[lang.head_dim // 2, 0, 0],
        pipeline_model_parallel_size=par.pipeline_parallel,
        virtual_pipeline_model_parallel_size=par.virtual_pipeline_parallel,
        num_layers_in_first_pipeline_stage=par.first_stage_layers,
        context_parallel_size=par.context_parallel,
        sequence_parallel=par.sequence_parallel,
        variable_seq_lengths=True,  # VLM samples differ in length; PP sends shapes first
        moe_token_dispatcher_type="alltoall",  # no MoE; megatron rejects its default with the above
        calculate_per_token_loss=True,  # loss = sum over tokens / tokens in the global batch
        recompute_granularity="full" if par.recompute_activations else None,
        recompute_method="uniform" if par.recompute_activations else None,
        recompute_num_layers=1 if par.recompute_activations else None,
    )
    kwargs.update(par.extra)
    return TransformerConfig(**kwargs)


def projector_transformer_config(cfg: VLMConfig, par: ParallelConfig) -> TransformerConfig:
    """Only the linear layers read it: TP size, dtype, init; sizes come from the call sites."""
    return TransformerConfig(
        **common_kwargs(par),
        num_layers=1,
        hidden_size=cfg.language.hidden_size,
        num_attention_heads=cfg.language.num_attention_heads,
        add_bias_linear=True,
        activation_func=F.gelu,
        pipeline_model_parallel_size=1,
    )
