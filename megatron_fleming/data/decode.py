"""Image decoding for the task encoder: sizes from headers, tiles through PIL.

The shards store images as encoded bytes and the task encoder asks energon for raw bytes
(``decoder = None``): the size (all tiling needs to plan tokens) is read from the header in
pre-encoding, and the pixels are decoded only in post-encoding, by PIL here or by DALI
(`dali_decode`). A medium may also arrive already decoded as a PIL image (an energon decoder set
by the user); both paths accept that. Broken bytes raise `CorruptImageError`, which the task
encoder counts and skips; any other exception is a bug and propagates.
"""

from __future__ import annotations

import io
import zlib
from typing import Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from megatron_fleming.data.tiling import TilePlan, pil_tiles

# What PIL raises on bad data: unidentified/truncated files (OSError), broken plugin headers
# (SyntaxError, ValueError, EOFError), corrupt deflate streams (zlib.error), absurd sizes.
_PIL_DATA_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error,
                    Image.DecompressionBombError)


class CorruptImageError(ValueError):
    """Image bytes that cannot be identified or decoded."""


class TileDecoder(Protocol):
    """Turns a sample's media and tiling plans into uint8 tiles [tiles, 3, S, S] (the model
    normalises them on its device)."""

    def __call__(self, media: Sequence, plans: Sequence[TilePlan]) -> torch.Tensor: ...


def image_size(medium: bytes | Image.Image) -> tuple[int, int]:
    """(width, height) from the header only; no pixel decode."""
    if isinstance(medium, Image.Image):
        return medium.size
    try:
        with Image.open(io.BytesIO(medium)) as im:
            return im.size
    except _PIL_DATA_ERRORS as e:
        raise CorruptImageError(f"cannot identify image ({len(medium)} bytes): {e}") from e


def open_image(medium: bytes | Image.Image) -> Image.Image:
    """Fully decoded PIL image."""
    if isinstance(medium, Image.Image):
        return medium
    try:
        im = Image.open(io.BytesIO(medium))
        im.load()
        return im
    except _PIL_DATA_ERRORS as e:
        raise CorruptImageError(f"cannot decode image ({len(medium)} bytes): {e}") from e


class PilTileDecoder:
    """InternVL's own path: PIL decode, PIL bicubic resize and crop; uint8 out."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, media: Sequence, plans: Sequence[TilePlan]) -> torch.Tensor:
        s = self.image_size
        out = np.empty((sum(p.num_tiles for p in plans), 3, s, s), dtype=np.uint8)
        start = 0
        for medium, plan in zip(media, plans, strict=True):
            pil_tiles(open_image(medium), plan, s, out=out[start:start + plan.num_tiles])
            start += plan.num_tiles
        return torch.from_numpy(out)
