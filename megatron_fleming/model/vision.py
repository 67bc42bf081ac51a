"""InternViT vision encoder: patch embedding + CLS + position embedding -> megatron TransformerBlock.

Tiles are fixed-size (448 px for InternVL3, dynamic tiling happens in the data pipeline), so the
position embedding is used as stored, without interpolation. The output drops the CLS token:
[tiles, patches, Dv], patches in row-major order, ready for pixel unshuffle.
"""

from __future__ import annotations

import torch
from megatron.core import parallel_state
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_block import TransformerBlock
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_fleming.model.config import VisionConfig
from megatron_fleming.model.pixels import normalize_pixels
from megatron_fleming.model.vision_layers import TransformerImpl, internvit_layer_spec


class InternViTEmbeddings(MegatronModule):
    """Conv patch embedding (kernel = stride = patch size), CLS token, learned positions."""

    def __init__(self, config: TransformerConfig, vision: VisionConfig) -> None:
        super().__init__(config=config)
        dim = vision.hidden_size
        self.class_embedding = torch.nn.Parameter(torch.empty(1, 1, dim, dtype=config.params_dtype))
        self.patch_embedding = torch.nn.Conv2d(vision.num_channels, dim, kernel_size=vision.patch_size,
                                               stride=vision.patch_size, dtype=config.params_dtype)
        self.position_embedding = torch.nn.Parameter(
            torch.empty(1, vision.num_patches + 1, dim, dtype=config.params_dtype))
        self.num_patches = vision.num_patches
        if config.perform_initialization:
            std = config.init_method_std
            torch.nn.init.normal_(self.class_embedding, std=std)
            torch.nn.init.normal_(self.position_embedding, std=std)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[tiles, C, H, W] -> [1 + patches, tiles, Dv] (megatron's sequence-first layout).

        uint8 tiles (what the data loader sends) are normalised here, on the model's device;
        float tiles are taken as normalised."""
        if pixel_values.dtype == torch.uint8:
            pixel_values = normalize_pixels(pixel_values)
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        patches = patches.flatten(2).transpose(1, 2)  # [tiles, patches, Dv], row-major grid
        if patches.shape[1] != self.num_patches:
            raise ValueError(
                f"pixel_values of size {tuple(pixel_values.shape[-2:])} give {patches.shape[1]} "
                f"patches; the vision tower expects {self.num_patches} (resize tiles to the "
                "configured vision.image_size)")
        cls = self.class_embedding.expand(patches.shape[0], -1, -1)
        tokens = torch.cat([cls, patches], dim=1) + self.position_embedding
        return tokens.transpose(0, 1).contiguous()


class InternViT(MegatronModule):
    """InternViT-300M / 6B on megatron-core; returns patch features without CLS, [tiles, P, Dv]."""

    def __init__(self, config: TransformerConfig, vision: VisionConfig,
                 impl: TransformerImpl = "local") -> None:
        super().__init__(config=config)
        self.embeddings = InternViTEmbeddings(config, vision)
        spec = internvit_layer_spec(qk_norm=vision.qk_norm, qkv_bias=vision.qkv_bias,
                                    layer_scale_init=vision.layer_scale_init, impl=impl)
        # InternViT has no final norm (InternVL3 takes the last layer's output as is).
        self.decoder = TransformerBlock(config=config, spec=spec, pre_process=True,
                                        post_process=False, post_layer_norm=False)
        self.num_real_heads = vision.num_attention_heads
        if config.perform_initialization:
            self.zero_padded_heads()

    @torch.no_grad()
    def zero_padded_heads(self) -> None:
        """Zero the QKV rows and output-projection columns of the padding heads.

        Zero heads output exactly zero (their values are zero) and receive zero gradients, so a
        padded InternViT stays the real-head model through training.
        """
        tp_rank = parallel_state.get_tensor_model_parallel_rank()
        local_heads = self.config.num_attention_heads // self.config.tensor_model_parallel_size
        head_dim = self.config.kv_channels
        first_local = tp_rank * local_heads
        for layer in self.decoder.layers:
            attention = layer.self_attention
            qkv = attention.linear_qkv.weight.view(local_heads, 3 * head_dim, -1)
            proj = attention.linear_proj.weight.view(-1, local_heads, head_dim)
            for head in range(local_heads):
                if first_local + head >= self.num_real_heads:
                    qkv[head].zero_()
                    proj[:, head].zero_()

    def set_input_tensor(self, input_tensor: torch.Tensor) -> None:
        self.decoder.set_input_tensor(input_tensor)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(pixel_values)
        hidden = self.decoder(hidden_states=hidden, attention_mask=None)
        return hidden[1:].transpose(0, 1)  # drop CLS; [tiles, patches, Dv]
