"""Typed configs of the Fleming-VL model (InternVL3 architecture) and of how it is parallelised.

`VisionConfig`, `ProjectorConfig`, `LanguageConfig` and `VLMConfig` describe the function the
model computes and nothing about how it runs; `ParallelConfig` says how it runs (TP/PP/CP, device,
dtype, local or Transformer Engine layers). Each is validated once, at construction, and a failed
check names the field and the fix; nothing is silently rewritten.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class VisionConfig:
    """InternViT. 300M: LayerNorm + QKV bias; 6B: RMSNorm + QK-norm, no QKV bias, padded heads."""

    hidden_size: int
    num_layers: int
    num_attention_heads: int
    ffn_hidden_size: int
    image_size: int = 448
    patch_size: int = 14
    num_channels: int = 3
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-6
    qkv_bias: bool = True
    qk_norm: bool = False
    layer_scale_init: float = 0.1
    # Heads actually allocated: the real heads plus zero heads, so that TP divides them
    # (InternViT-6B has 25 heads). Zero heads output exactly zero and get zero gradients.
    num_padded_heads: int | None = None

    def __post_init__(self) -> None:
        _require(self.hidden_size % self.num_attention_heads == 0,
                 f"vision.hidden_size ({self.hidden_size}) must be a multiple of "
                 f"vision.num_attention_heads ({self.num_attention_heads})")
        _require(self.image_size % self.patch_size == 0,
                 f"vision.image_size ({self.image_size}) must be a multiple of vision.patch_size "
                 f"({self.patch_size})")
        _require(self.norm in ("layernorm", "rmsnorm"),
                 f"vision.norm is {self.norm!r}; use 'layernorm' (InternViT-300M) or 'rmsnorm' (6B)")
        _require(self.heads >= self.num_attention_heads,
                 f"vision.num_padded_heads ({self.num_padded_heads}) must be at least "
                 f"num_attention_heads ({self.num_attention_heads}); leave it unset for no padding")
        _require(self.heads == self.num_attention_heads or not self.qkv_bias,
                 "vision.num_padded_heads needs qkv_bias=False: a QKV bias would make the zero "
                 "heads non-zero (InternViT-6B has no QKV bias)")

    @property
    def heads(self) -> int:
        """Allocated heads, real + zero padding."""
        return self.num_padded_heads or self.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class ProjectorConfig:
    """InternVL `mlp1`: LayerNorm(k²·Dv) -> Linear -> GELU -> Linear after pixel unshuffle."""

    downsample_ratio: float = 0.5
    norm_eps: float = 1e-5  # nn.LayerNorm's default, as in InternVL's mlp1 and transformers

    def __post_init__(self) -> None:
        factor = round(1 / self.downsample_ratio)
        _require(0 < self.downsample_ratio < 1 and abs(factor * self.downsample_ratio - 1) < 1e-9,
                 f"projector.downsample_ratio ({self.downsample_ratio}) must be 1/k for an integer "
                 "k >= 2; InternVL3 uses 0.5")

    @property
    def unshuffle_factor(self) -> int:
        return round(1 / self.downsample_ratio)


@dataclass(frozen=True)
class LanguageConfig:
    """Qwen2.5 decoder: RMSNorm, SwiGLU, GQA, QKV bias, RoPE."""

    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    ffn_hidden_size: int
    vocab_size: int
    max_position_embeddings: int = 32768
    rope_theta: float = 1_000_000.0
    norm_eps: float = 1e-6
    qkv_bias: bool = True
    tie_word_embeddings: bool = False
    # Embedding / LM-head rows are padded to a multiple of this so TP divides them; padded logits
    # are masked out (set to the dtype's minimum) before the loss and in returned logits.
    # Megatron-LM pads to make_vocab_size_divisible_by (128) x TP; `fleming convert hf-to-mcore`
    # does the same and records the multiple, which later runs at any TP dividing it keep.
    vocab_pad_multiple: int = 1

    def __post_init__(self) -> None:
        _require(self.vocab_pad_multiple >= 1, "language.vocab_pad_multiple must be >= 1")
        _require(self.hidden_size % self.num_attention_heads == 0,
                 f"language.hidden_size ({self.hidden_size}) must be a multiple of "
                 f"language.num_attention_heads ({self.num_attention_heads})")
        _require(self.num_attention_heads % self.num_query_groups == 0,
                 f"language.num_attention_heads ({self.num_attention_heads}) must be a multiple "
                 f"of language.num_query_groups ({self.num_query_groups})")
        _require(self.head_dim % 2 == 0, f"language head dim ({self.head_dim}) must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // self.vocab_pad_multiple) * self.vocab_pad_multiple


#: Megatron-LM's default --make-vocab-size-divisible-by.
MAKE_VOCAB_SIZE_DIVISIBLE_BY = 128


def megatron_vocab_pad_multiple(tensor_parallel: int,
                                divisible_by: int = MAKE_VOCAB_SIZE_DIVISIBLE_BY) -> int:
    """Megatron-LM's rule: vocabulary rows padded to a multiple of divisible_by x TP (what
    `fleming convert hf-to-mcore` and a Hugging Face folder loaded for generation use)."""
    return divisible_by * tensor_parallel


@dataclass(frozen=True)
class VLMConfig:
    """The whole model; `image_context_token_id` marks the slots image features fill, in order."""

    vision: VisionConfig
    projector: ProjectorConfig
    language: LanguageConfig
    image_context_token_id: int = 151667
    v2pe_delta: float = 1.0  # position step of a visual token; 1 = standard RoPE positions

    def __post_init__(self) -> None:
        grid = self.vision.image_size // self.vision.patch_size
        _require(grid % self.projector.unshuffle_factor == 0,
                 f"the {grid}x{grid} patch grid does not divide by the pixel-unshuffle factor "
                 f"{self.projector.unshuffle_factor}; change vision.image_size or patch_size")
        _require(0 < self.v2pe_delta <= 1, f"v2pe_delta ({self.v2pe_delta}) must be in (0, 1]")
        _require(0 <= self.image_context_token_id < self.language.vocab_size,
                 f"image_context_token_id ({self.image_context_token_id}) is outside the "
                 f"vocabulary (size {self.language.vocab_size})")

    @property
    def tokens_per_tile(self) -> int:
        grid = self.vision.image_size // self.vision.patch_size
        return (grid // self.projector.unshuffle_factor) ** 2

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMConfig:
        data = dict(data)
        unknown = set(data) - {"vision", "projector", "language", "image_context_token_id",
                               "v2pe_delta"}
        _require(not unknown, f"unknown VLMConfig keys {sorted(unknown)}")
        return cls(vision=VisionConfig(**data.pop("vision")),
                   projector=ProjectorConfig(**data.pop("projector", {})),
                   language=LanguageConfig(**data.pop("language")), **data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_hf(cls, hf_config: Any, *, v2pe_delta: float = 1.0, num_padded_heads: int | None = None,
                vocab_pad_multiple: int = 1) -> VLMConfig:
        """From transformers' `InternVLConfig` (the `InternVLForConditionalGeneration` layout).

        The HF config has no room for Megatron-only choices: zero-head padding of the ViT and
        vocabulary padding for TP are arguments."""
        from megatron_fleming.model.hf_config import vlm_config_from_transformers

        return vlm_config_from_transformers(hf_config, v2pe_delta=v2pe_delta,
                                            num_padded_heads=num_padded_heads,
                                            vocab_pad_multiple=vocab_pad_multiple)

    @classmethod
    def from_internvl_chat(cls, config: dict[str, Any], *, v2pe_delta: float = 1.0,
                           num_padded_heads: int | None = None,
                           vocab_pad_multiple: int = 1) -> VLMConfig:
        """From the original release's config.json (`InternVLChatConfig`: vision_config/llm_config)."""
        from megatron_fleming.model.hf_config import vlm_config_from_internvl_chat

        return vlm_config_from_internvl_chat(config, v2pe_delta=v2pe_delta,
                                             num_padded_heads=num_padded_heads,
                                             vocab_pad_multiple=vocab_pad_multiple)


@dataclass(frozen=True)
class ParallelConfig:
    """How the model runs: parallel sizes, device, dtype and layer implementation."""

    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    virtual_pipeline_parallel: int | None = None
    context_parallel: int = 1
    sequence_parallel: bool = False
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["fp32", "bf16"] = "fp32"
    transformer_impl: Literal["local", "transformer_engine"] = "local"
    recompute_activations: bool = False
    #: Language layers on pipeline stage 0, which also holds the ViT and the projector (the
    #: InternViT-6B is ~6B parameters: stage 0 takes fewer LLM layers); the other stages split
    #: the rest evenly. None: every stage the same share.
    first_stage_layers: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # passed through to TransformerConfig

    def __post_init__(self) -> None:
        _require(self.device in ("cpu", "cuda"), f"device is {self.device!r}; use 'cpu' or 'cuda'")
        _require(self.dtype in ("fp32", "bf16"), f"dtype is {self.dtype!r}; use 'fp32' or 'bf16'")
        _require(self.transformer_impl in ("local", "transformer_engine"),
                 f"transformer_impl is {self.transformer_impl!r}; use 'local' or 'transformer_engine'")
        _require(self.device == "cuda" or self.transformer_impl == "local",
                 "Transformer Engine layers need a GPU; on CPU set transformer_impl='local'")
        _require(self.sequence_parallel is False or self.tensor_parallel > 1,
                 "sequence_parallel needs tensor_parallel > 1")
        for name in ("tensor_parallel", "pipeline_parallel", "context_parallel"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1")
        # Refused, not accepted: megatron would build CP groups but nothing here splits tokens,
        # labels, V2PE positions and image embeddings per CP rank (get_batch_on_this_cp_rank),
        # and megatron-core 0.16.1's mRoPE slices fp32 positions for the bshd layout only, so a
        # packed (THD) row would rotate by the wrong positions: it would train silently wrong.
        _require(self.context_parallel == 1,
                 f"parallel.context_parallel is {self.context_parallel}: context parallelism is "
                 "not supported (nothing splits the packed row, V2PE positions and image "
                 "embeddings per CP rank); set context_parallel: 1 and use tensor, pipeline or "
                 "data parallelism")
        _require(self.first_stage_layers is None or (
            self.pipeline_parallel > 1 and self.virtual_pipeline_parallel is None
            and self.first_stage_layers >= 1),
            f"parallel.first_stage_layers ({self.first_stage_layers}) needs pipeline_parallel > 1, "
            "no virtual_pipeline_parallel, and at least 1 layer")
        owned = {"tensor_model_parallel_size", "pipeline_model_parallel_size",
                 "context_parallel_size", "sequence_parallel",
                 "num_layers_in_first_pipeline_stage"} & set(self.extra)
        _require(not owned, f"parallel.extra sets {sorted(owned)}: use parallel.tensor_parallel, "
                            "pipeline_parallel, context_parallel, sequence_parallel and "
                            "first_stage_layers")

    def language_layers_per_stage(self, num_layers: int) -> list[int]:
        """Language layers on each pipeline stage (virtual stages of a rank counted together)."""
        pp = self.pipeline_parallel
        if self.first_stage_layers is None:
            stages = pp * (self.virtual_pipeline_parallel or 1)
            _require(num_layers % stages == 0,
                     f"language.num_layers ({num_layers}) is not divisible by pipeline stages "
                     f"({stages}); change pipeline_parallel or set parallel.first_stage_layers")
            return [num_layers // pp] * pp
        rest = num_layers - self.first_stage_layers
        _require(0 < rest and rest % (pp - 1) == 0,
                 f"parallel.first_stage_layers ({self.first_stage_layers}) leaves {rest} of "
                 f"{num_layers} language layers for the other {pp - 1} stage(s): they must split "
                 "evenly and not be empty")
        return [self.first_stage_layers] + [rest // (pp - 1)] * (pp - 1)
