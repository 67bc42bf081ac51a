"""Pixel unshuffle: 256 tokens per 448 tile, in exactly transformers' InternVL (v2) order."""

from __future__ import annotations

import pytest
import torch
from transformers.models.internvl.modeling_internvl import InternVLModel

from megatron_fleming.model.pixel_shuffle import pixel_unshuffle


def transformers_unshuffle(features: torch.Tensor) -> torch.Tensor:
    """What `InternVLModel.get_image_features` does between the ViT and the projector."""
    tiles, patches, channels = features.shape
    grid = int(patches**0.5)
    spatial = features.reshape(tiles, grid, grid, channels)
    # pixel_shuffle does not touch `self`; call it unbound on the real implementation.
    shuffled = InternVLModel.pixel_shuffle(None, spatial, scale_factor=0.5)
    return shuffled.reshape(tiles, -1, shuffled.shape[-1])


def test_448_tile_gives_256_tokens():
    features = torch.randn(3, (448 // 14) ** 2, 8)
    assert pixel_unshuffle(features, 2).shape == (3, 256, 32)


@pytest.mark.parametrize("grid", [2, 4, 32])
def test_order_equals_transformers(grid):
    features = torch.randn(2, grid * grid, 6, generator=torch.Generator().manual_seed(grid))
    assert torch.equal(pixel_unshuffle(features, 2), transformers_unshuffle(features))


def test_block_layout_is_row_major_with_row_offset_outer():
    # 4x4 grid, the single channel holds the patch index.
    features = torch.arange(16.0).reshape(1, 16, 1)
    tokens = pixel_unshuffle(features, 2)
    assert tokens[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_grid_must_divide():
    with pytest.raises(ValueError, match="does not divide"):
        pixel_unshuffle(torch.zeros(1, 9, 4), 2)
