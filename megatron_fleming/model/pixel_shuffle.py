"""Pixel unshuffle of ViT patch features, in InternVL's "v2" ordering.

A k x k block of neighbouring patches becomes one token with k²·C channels: a 448 tile (32 x 32
patches of 14 px) becomes 16 x 16 = 256 tokens at k = 2. InternVL's `pixel_shuffle`
(ps_version='v2', also transformers' `InternVLModel.pixel_shuffle`) concatenates, for output token
(i, j) in row-major order, the patches (k·i + a, k·j + b) with a (row offset) outer and b (column
offset) inner. The test suite checks the ordering against transformers' implementation.
"""

from __future__ import annotations

import torch


def pixel_unshuffle(features: torch.Tensor, factor: int) -> torch.Tensor:
    """[tiles, grid*grid, C] patch features (row-major, CLS removed) -> [tiles, tokens, k²·C]."""
    tiles, patches, channels = features.shape
    grid = round(patches**0.5)
    if grid * grid != patches:
        raise ValueError(f"{patches} patches do not form a square grid")
    if grid % factor:
        raise ValueError(f"a {grid}x{grid} patch grid does not divide by unshuffle factor {factor}")
    out = grid // factor
    blocks = features.reshape(tiles, out, factor, out, factor, channels)
    # [tiles, i, a, j, b, C] -> [tiles, i, j, a, b, C]: token (i, j), channels ordered (a, b, C).
    blocks = blocks.permute(0, 1, 3, 2, 4, 5)
    return blocks.reshape(tiles, out * out, factor * factor * channels)
