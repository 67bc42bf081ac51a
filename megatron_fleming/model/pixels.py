"""InternViT's input normalisation, applied on the model's device to uint8 tiles.

Tiles leave the data loader as uint8 [tiles, 3, S, S] (a quarter of float32's bytes through the
worker queues and to the GPU); the vision tower normalises them where it runs, with torchvision's
``ToTensor`` + ``Normalize`` operations in their order (x / 255, minus mean, over std, in
float32), so the values are InternVL's. Float input is taken as already normalised.
"""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32 ImageNet-normalised, on the tensor's device."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"normalize_pixels takes uint8 tiles, got {pixels.dtype}")
    shape = (3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=pixels.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=pixels.device).view(shape)
    return (pixels.float().div(255) - mean) / std
