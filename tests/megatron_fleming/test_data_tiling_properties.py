"""InternVL tiling as properties over random image sizes and tile ranges (hypothesis).

The reference reads the definition the other way round from the code: first the smallest
aspect-ratio difference over every allowed grid, then, among the grids at exactly that difference
(candidate order: by area), the largest one the image is big enough for (more than half its pixel
area), else the first. Differences are float, as in InternVL, so float ties are ties.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from megatron_fleming.data.tiling import TilingConfig, candidate_grids, plan_tiles, tile_image


def reference_grid(w: int, h: int, lo: int, hi: int, size: int) -> tuple[int, int]:
    grids = [(c, r) for c in range(1, hi + 1) for r in range(1, hi + 1) if lo <= c * r <= hi]
    diff = {g: abs(w / h - g[0] / g[1]) for g in grids}
    best = min(diff.values())
    tied = sorted((g for g in grids if diff[g] == best), key=lambda g: g[0] * g[1])
    # equal-area ties would depend on InternVL's set order; the example tests cover that case
    assume(len({c * r for c, r in tied}) == len(tied))
    big_enough = [g for g in tied[1:] if w * h > 0.5 * size * size * g[0] * g[1]]
    return big_enough[-1] if big_enough else tied[0]


SIZES = st.integers(1, 5000)


@settings(max_examples=300)
# a tie between (1,1) and (2,2) exactly at the size rule's edge: 9*8 = 72 = 0.5 * 6^2 * 4 is not
# more than half, so (1,1) stays; 10*8 is, so (2,2) wins
@example(w=9, h=8, lo=1, extra=3, size=6, thumbnail=True)
@example(w=10, h=8, lo=1, extra=3, size=6, thumbnail=True)
@given(w=SIZES, h=SIZES, lo=st.integers(1, 6), extra=st.integers(0, 12),
       size=st.sampled_from([28, 224, 448]), thumbnail=st.booleans())
def test_grid_is_the_definition(w: int, h: int, lo: int, extra: int, size: int, thumbnail: bool) -> None:
    hi = lo + extra
    plan = plan_tiles(w, h, TilingConfig(image_size=size, min_tiles=lo, max_tiles=hi, use_thumbnail=thumbnail))
    assert (plan.columns, plan.rows) == reference_grid(w, h, lo, hi, size)
    assert lo <= plan.columns * plan.rows <= hi
    assert plan.thumbnail == (thumbnail and plan.columns * plan.rows > 1)
    assert plan.num_tiles == plan.columns * plan.rows + int(plan.thumbnail)
    assert (plan.width, plan.height) == (w, h)
    if (w, h, size) in ((9, 8, 6), (10, 8, 6)):
        assert (plan.columns, plan.rows) == ((1, 1) if w == 9 else (2, 2))


@settings(max_examples=60)
@given(lo=st.integers(1, 12), extra=st.integers(0, 30))
def test_candidates_are_every_grid_in_range_by_area(lo: int, extra: int) -> None:
    hi = lo + extra
    grids = candidate_grids(lo, hi)
    assert sorted(grids) == sorted({(c, r) for c in range(1, hi + 1) for r in range(1, hi + 1) if lo <= c * r <= hi})
    areas = [c * r for c, r in grids]
    assert areas == sorted(areas)


@settings(max_examples=25)
@given(w=st.integers(1, 64), h=st.integers(1, 64), hi=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_tiles_cut_the_resized_image_row_major(w: int, h: int, hi: int, seed: int) -> None:
    size = 8
    plan = plan_tiles(w, h, TilingConfig(image_size=size, max_tiles=hi))
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    tiles = tile_image(image, plan, size)
    assert len(tiles) == plan.num_tiles and all(t.size == (size, size) for t in tiles)
    whole = np.asarray(image.resize((size * plan.columns, size * plan.rows), Image.BICUBIC))
    for k, tile in enumerate(tiles[: plan.columns * plan.rows]):
        r, c = divmod(k, plan.columns)
        assert np.array_equal(np.asarray(tile), whole[r * size : (r + 1) * size, c * size : (c + 1) * size])
    if plan.thumbnail:
        assert np.array_equal(np.asarray(tiles[-1]), np.asarray(image.resize((size, size), Image.BICUBIC)))


def test_candidate_order_is_internvls_element_for_element() -> None:
    """Equal-area grids keep the order of InternVL's set (its ``dynamic_preprocess`` sorts a set
    comprehension by area), which decides exact ties such as (1,3) vs (3,1) at aspect 5/3: the
    set is built here the way InternVL writes it, for every tile range up to 30."""
    for lo in range(1, 13):
        for hi in range(lo, 31):
            internvl = sorted(set((i, j) for n in range(lo, hi + 1) for i in range(1, n + 1)
                                  for j in range(1, n + 1) if i * j <= hi and i * j >= lo),
                              key=lambda x: x[0] * x[1])
            assert candidate_grids(lo, hi) == internvl, (lo, hi)
