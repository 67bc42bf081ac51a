"""InternVL dynamic tiling: an image becomes a grid of 448-px tiles (+ a thumbnail), normalised.

The grid is InternVL's `dynamic_preprocess`, re-implemented to give the same tiles:

1. candidate grids (i columns, j rows) with ``min_tiles <= i*j <= max_tiles``, ordered by area;
2. the grid whose ratio i/j is closest to the image's width/height wins; on an exactly equal
   difference a later (larger) candidate replaces the current best only if the image area
   exceeds half the candidate's pixel area (``w*h > 0.5 * size^2 * i * j``): small images do not
   get blown up into many tiles;
3. the RGB image is resized (PIL bicubic) to ``(size*i, size*j)`` and cut row-major into tiles;
4. with more than one tile, a thumbnail (the whole image resized to ``size x size``) follows.

Tiles leave the loader as uint8 [tiles, 3, S, S]; the model scales and normalises them with
ImageNet mean/std on its device (`megatron_fleming.model.pixels`, torchvision's ``ToTensor`` +
``Normalize`` in the same operation order, so the float32 values are InternVL's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image



@dataclass(frozen=True)
class TilingConfig:
    """How one image is tiled; InternVL3's defaults (448 px, 1-12 tiles, thumbnail)."""

    image_size: int = 448
    min_tiles: int = 1
    max_tiles: int = 12
    use_thumbnail: bool = True

    def __post_init__(self) -> None:
        if self.image_size <= 0:
            raise ValueError(f"tiling.image_size ({self.image_size}) must be positive")
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise ValueError(f"tiling needs 1 <= min_tiles ({self.min_tiles}) <= max_tiles "
                             f"({self.max_tiles})")


@dataclass(frozen=True)
class TilePlan:
    """The tiling decided for one image from its size alone (no pixels needed)."""

    width: int
    height: int
    columns: int
    rows: int
    thumbnail: bool

    @property
    def num_tiles(self) -> int:
        """Tiles the image contributes, thumbnail included."""
        return self.columns * self.rows + int(self.thumbnail)


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """(columns, rows) with min_tiles <= columns*rows <= max_tiles, by area.

    InternVL sorts a Python *set* by area (a stable sort), so equal-area grids keep the set's
    iteration order, which is fixed for tuples of small ints. We build the same set so the
    candidate order, and with it every tie-break, is InternVL's element for element.
    """
    grids = {(i, j) for n in range(min_tiles, max_tiles + 1)
             for i in range(1, n + 1) for j in range(1, n + 1)
             if min_tiles <= i * j <= max_tiles}
    return sorted(grids, key=lambda g: g[0] * g[1])


def closest_grid(width: int, height: int, grids: list[tuple[int, int]],
                 image_size: int) -> tuple[int, int]:
    """InternVL's choice: nearest aspect ratio; ties go to a larger grid only for large images."""
    aspect = width / height
    area = width * height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in grids:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def plan_tiles(width: int, height: int, cfg: TilingConfig) -> TilePlan:
    """The grid and thumbnail for an image of this size."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height} is empty")
    cols, rows = closest_grid(width, height, candidate_grids(cfg.min_tiles, cfg.max_tiles),
                              cfg.image_size)
    return TilePlan(width=width, height=height, columns=cols, rows=rows,
                    thumbnail=cfg.use_thumbnail and cols * rows > 1)


def single_tile_plan(width: int, height: int) -> TilePlan:
    """One tile, the whole image resized: video frames and volume slices."""
    return TilePlan(width=width, height=height, columns=1, rows=1, thumbnail=False)


def tile_image(image: Image.Image, plan: TilePlan, image_size: int) -> list[Image.Image]:
    """Cut an RGB image into the plan's tiles, row-major, thumbnail last."""
    if image.size != (plan.width, plan.height):
        raise ValueError(f"image is {image.size[0]}x{image.size[1]} but was planned as "
                         f"{plan.width}x{plan.height}")
    resized = image.resize((image_size * plan.columns, image_size * plan.rows), Image.BICUBIC)
    tiles = []
    for r in range(plan.rows):
        for c in range(plan.columns):
            box = (c * image_size, r * image_size, (c + 1) * image_size, (r + 1) * image_size)
            tiles.append(resized.crop(box))
    if plan.thumbnail:
        tiles.append(image.resize((image_size, image_size), Image.BICUBIC))
    return tiles


def tiles_chw(tiles: list[Image.Image] | np.ndarray, out: np.ndarray | None = None) -> torch.Tensor:
    """uint8 RGB tiles ([n, H, W, 3] or PIL images) -> uint8 [n, 3, H, W]; ``out`` receives them
    if given."""
    array = np.stack([np.asarray(t) for t in tiles]) if isinstance(tiles, list) else tiles
    n, h, w, _ = array.shape
    if out is None:
        out = np.empty((n, 3, h, w), dtype=np.uint8)
    out[...] = array.transpose(0, 3, 1, 2)
    return torch.from_numpy(out)


def pil_tiles(image: Image.Image, plan: TilePlan, image_size: int,
              out: np.ndarray | None = None) -> torch.Tensor:
    """The PIL path end to end: RGB, tiles, uint8 [num_tiles, 3, size, size]."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return tiles_chw(tile_image(rgb, plan, image_size), out=out)
