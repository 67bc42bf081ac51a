"""InternVL dynamic tiling: grids from a hand-derived table, tile order, thumbnail, normalisation,
and the token count an image costs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from megatron_fleming.data.decode import PilTileDecoder
from megatron_fleming.data.tiling import (
    TilingConfig,
    candidate_grids,
    plan_tiles,
    tile_image,
)
from megatron_fleming.model.pixels import IMAGENET_MEAN, IMAGENET_STD, normalize_pixels

S = 448
HALF = 0.5 * S * S  # the tie rule's threshold per tile: 100352 pixels

# (width, height, min_tiles, max_tiles, expected (columns, rows), tiles incl. thumbnail, why).
# Each row is derived by hand from the definition: nearest ratio columns/rows to width/height;
# on an exactly equal difference a later candidate (candidates ordered by area) wins only when
# width*height > HALF * columns * rows.
GRIDS = [
    (448, 448, 1, 12, (1, 1), 1, "ratio 1: (2,2) ties, but 200704 <= 4*HALF"),
    (633, 633, 1, 12, (1, 1), 1, "400689 <= 4*HALF = 401408: stays (1,1)"),
    (634, 634, 1, 12, (2, 2), 5, "401956 > 401408: (2,2); (3,3) needs > 903168"),
    (1344, 1344, 1, 12, (3, 3), 10, "1806336 > 9*HALF = 903168; (4,4) is 16 > 12 tiles"),
    (1000, 500, 1, 12, (2, 1), 3, "ratio 2: (4,2) ties, 500000 <= 8*HALF = 802816"),
    (2000, 1000, 1, 12, (4, 2), 9, "ratio 2: (4,2) ties and 2000000 > 802816; (6,3) is 18 tiles"),
    (800, 600, 1, 12, (4, 3), 13, "4/3 exactly; no other grid <= 12 tiles has that ratio"),
    (1920, 1080, 1, 12, (4, 2), 9, "1.778: 5/3 and 7/4 exceed 12 tiles; 2 (diff .222) beats "
                                   "3/2 (.278); (4,2) ties (2,1) and 2073600 > 802816"),
    (960, 540, 1, 12, (2, 1), 3, "same ratio, 518400 <= 802816: the tie keeps (2,1)"),
    (100, 1000, 1, 12, (1, 10), 11, "ratio 0.1 = 1/10 exactly"),
    (4000, 300, 1, 12, (12, 1), 13, "13.3: the widest grid, 12/1"),
    (600, 800, 1, 2, (1, 2), 3, "0.75: (1,1) and (1,2) both .25 away; 480000 > 2*HALF"),
    (150, 200, 1, 2, (1, 1), 1, "0.75: same tie, 30000 <= 2*HALF keeps (1,1)"),
    (448, 448, 2, 6, (2, 2), 5, "(1,1) excluded by min_tiles; ratio 1 exactly"),
    # min=max=2: (1,2) and (2,1) are both .75 away from 1.25. InternVL's candidate list (a set
    # sorted by area) holds (1,2) before (2,1), so (2,1) replaces it only for a large image.
    (500, 400, 2, 2, (1, 2), 3, "tie, 200000 <= 2*HALF = 200704: first candidate (1,2) stays"),
    (600, 480, 2, 2, (2, 1), 3, "tie, 288000 > 200704: (2,1) replaces (1,2)"),
]


@pytest.mark.parametrize("w,h,lo,hi,grid,tiles,why", GRIDS, ids=[f"{g[0]}x{g[1]}-{g[2]}..{g[3]}" for g in GRIDS])
def test_grid_matches_internvl(w, h, lo, hi, grid, tiles, why):
    plan = plan_tiles(w, h, TilingConfig(min_tiles=lo, max_tiles=hi))
    assert (plan.columns, plan.rows) == grid, why
    assert plan.num_tiles == tiles, why


def test_candidates_cover_the_tile_range_in_area_order():
    grids = candidate_grids(1, 12)
    areas = [c * r for c, r in grids]
    assert areas == sorted(areas) and min(areas) == 1 and max(areas) == 12
    # every (c, r) with c*r in [1, 12], exactly once: 35 of them
    assert len(grids) == len(set(grids)) == sum(1 for c in range(1, 13) for r in range(1, 13) if c * r <= 12)
    assert grids.index((1, 2)) < grids.index((2, 1))  # the order the 500x400 tie above relies on


def _quadrants(w: int, h: int, colours: list[tuple[int, int, int]], cols: int, rows: int) -> Image.Image:
    a = np.zeros((h, w, 3), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            a[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols] = colours[r * cols + c]
    return Image.fromarray(a)


def test_tiles_are_row_major_then_thumbnail():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    image = _quadrants(896, 896, colours, 2, 2)
    plan = plan_tiles(896, 896, TilingConfig())
    assert (plan.columns, plan.rows, plan.num_tiles) == (2, 2, 5)
    tiles = tile_image(image, plan, S)
    assert [t.size for t in tiles] == [(S, S)] * 5
    for tile, colour in zip(tiles[:4], colours):  # top-left, top-right, bottom-left, bottom-right
        assert np.all(np.asarray(tile) == colour)
    thumb = np.asarray(tiles[4])  # the whole image at S x S: each quadrant's centre keeps its colour
    for (r, c), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], colours):
        assert tuple(thumb[S // 4 + r * S // 2, S // 4 + c * S // 2]) == colour


def test_single_tile_has_no_thumbnail_and_wide_image_two_plus_one():
    assert plan_tiles(300, 300, TilingConfig()).num_tiles == 1
    wide = plan_tiles(896, 448, TilingConfig())
    assert (wide.columns, wide.rows, wide.thumbnail, wide.num_tiles) == (2, 1, True, 3)
    no_thumb = plan_tiles(896, 448, TilingConfig(use_thumbnail=False))
    assert no_thumb.num_tiles == 2


def test_tiles_leave_as_uint8_and_normalise_to_imagenet_mean_std():
    colours = [(255, 0, 0), (10, 200, 30)]
    image = _quadrants(896, 448, colours, 2, 1)
    tiles = PilTileDecoder(S)([image], [plan_tiles(896, 448, TilingConfig())])
    assert tiles.shape == (3, 3, S, S) and tiles.dtype == torch.uint8
    pixels = normalize_pixels(tiles)  # what the model does on its device
    assert pixels.dtype == torch.float32
    raw = np.asarray(image, dtype=np.float64)
    for tile, x0 in ((0, 0), (1, S)):
        value = raw[0, x0]  # the tile is flat: its first pixel is every pixel
        assert torch.equal(tiles[tile].permute(1, 2, 0).reshape(-1, 3)[0], torch.tensor(value).byte())
        expected = (value / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
        got = pixels[tile].permute(1, 2, 0).reshape(-1, 3).double()
        assert torch.allclose(got, torch.tensor(expected).expand_as(got), atol=1e-6)


def test_device_normalisation_equals_torchvision_operations():
    """ToTensor + Normalize in torchvision's order, float32: InternVL's values exactly."""
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.equal(normalize_pixels(levels), (levels.float() / 255 - mean) / std)
    with pytest.raises(TypeError, match="uint8"):
        normalize_pixels(levels.float())


def test_grey_image_is_converted_to_rgb_before_tiling():
    grey = Image.fromarray(np.full((448, 448), 128, dtype=np.uint8), mode="L")
    tiles = PilTileDecoder(S)([grey], [plan_tiles(448, 448, TilingConfig())])
    assert tiles.shape == (1, 3, S, S) and bool((tiles == 128).all())


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="min_tiles"):
        TilingConfig(min_tiles=3, max_tiles=2)
    with pytest.raises(ValueError, match="empty"):
        plan_tiles(0, 10, TilingConfig())


def test_tiles_chw_keeps_uint8_fills_a_given_buffer_and_normalises_on_the_model_side():
    from megatron_fleming.data.tiling import tiles_chw

    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    chw = torch.from_numpy(array).permute(0, 3, 1, 2)
    expected = ((chw.float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
                / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
    for tiles in (array, [Image.fromarray(a) for a in array]):  # an array or PIL tiles
        got = tiles_chw(tiles)
        assert got.dtype == torch.uint8 and got.shape == (2, 3, 4, 5) and torch.equal(got, chw)
        assert torch.allclose(normalize_pixels(got), expected, atol=1e-6)
    buffer = np.zeros((2, 3, 4, 5), dtype=np.uint8)
    filled = tiles_chw(array, out=buffer)
    assert filled.data_ptr() == torch.from_numpy(buffer).data_ptr() and torch.equal(filled, chw)
    with pytest.raises(TypeError, match="uint8"):
        normalize_pixels(expected)


def test_single_tile_plan_and_size_checks():
    from megatron_fleming.data.tiling import single_tile_plan

    plan = single_tile_plan(640, 480)
    assert (plan.width, plan.height, plan.columns, plan.rows, plan.thumbnail, plan.num_tiles) == \
        (640, 480, 1, 1, False, 1)
    for w, h in ((0, 10), (10, 0), (-1, 5)):
        with pytest.raises(ValueError, match=f"image size {w}x{h} is empty"):
            plan_tiles(w, h, TilingConfig())
    assert plan_tiles(1, 1, TilingConfig()).num_tiles == 1
    with pytest.raises(ValueError, match=r"image is 30x20 but was planned as 20x30"):
        tile_image(Image.new("RGB", (30, 20)), plan_tiles(20, 30, TilingConfig(image_size=8)), 8)
    with pytest.raises(ValueError, match=r"tiling.image_size \(0\) must be positive"):
        TilingConfig(image_size=0)
    assert TilingConfig(image_size=1).image_size == 1
