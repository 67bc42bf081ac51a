"""Mask geometry against a brute-force reference on random masks (hypothesis).

The reference is written from the conventions in ``geometry``'s docstring, not from its code: a
flood fill over the 8 neighbours of each pixel, exact fractions for centroids, and the region and
size-class rules read as stated. Masks are unions of random rectangles (so they touch, overlap and
meet only at a corner) plus scattered single pixels (speckle).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.converters.geometry import GeometryConfig, mask_facts

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def flood_components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """8-connected components as lists of (row, col), by flood fill from each unvisited pixel."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    out = []
    for r in range(h):
        for c in range(w):
            if not mask[r, c] or seen[r, c]:
                continue
            seen[r, c] = True
            stack, pixels = [(r, c)], []
            while stack:
                y, x = stack.pop()
                pixels.append((y, x))
                for dy, dx in NEIGHBOURS:
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
            out.append(pixels)
    return out


def third(v: Fraction, names: tuple[str, str, str]) -> str:
    """A coordinate exactly on 1/3 or 2/3 falls in the later third."""
    return names[0] if v < Fraction(1, 3) else names[1] if v < Fraction(2, 3) else names[2]


def reference_region(cx: Fraction, cy: Fraction, tolerance: float) -> str:
    tol = Fraction(tolerance)
    if abs(cx - Fraction(1, 2)) <= tol and abs(cy - Fraction(1, 2)) <= tol:
        return "centre"
    return f"{third(cy, ('upper', 'middle', 'lower'))}_{third(cx, ('left', 'centre', 'right'))}"


def reference(pixels: list[tuple[int, int]], h: int, w: int, config: GeometryConfig) -> dict:
    rows = [p[0] for p in pixels]
    cols = [p[1] for p in pixels]
    n = len(pixels)
    cx = (Fraction(sum(cols), n) + Fraction(1, 2)) / w
    cy = (Fraction(sum(rows), n) + Fraction(1, 2)) / h
    fraction = n / (h * w)
    size = "small" if fraction < config.small_below else "large" if fraction >= config.large_from else "medium"
    return {"box_px": (min(cols), min(rows), max(cols) + 1, max(rows) + 1), "area_px": n,
            "region": reference_region(cx, cy, config.centre_tolerance), "size_class": size,
            "centroid": (cx, cy)}


def observed(c) -> dict:
    return {"box_px": c.box_px, "area_px": c.area_px, "region": c.region, "size_class": c.size_class}


@st.composite
def masks(draw, max_side: int = 24) -> np.ndarray:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(draw(st.integers(0, 5))):
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        mask[y0 : y0 + draw(st.integers(1, h)), x0 : x0 + draw(st.integers(1, w))] = True
    for _ in range(draw(st.integers(0, 6))):
        mask[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = True
    return mask


@settings(max_examples=150)
@given(mask=masks(), min_pixels=st.integers(1, 8), tolerance=st.sampled_from([0.0, 0.05, 0.1, 0.16]))
def test_components_match_flood_fill(mask: np.ndarray, min_pixels: int, tolerance: float) -> None:
    h, w = mask.shape
    config = GeometryConfig(min_pixels=min_pixels, min_fraction=0.0, centre_tolerance=tolerance)
    facts = mask_facts(mask, config)
    parts = flood_components(mask)
    kept = [p for p in parts if len(p) >= min_pixels]
    want = [reference(p, h, w, config) for p in kept]
    assert facts.count == len(kept) and facts.speckle == len(parts) - len(kept)
    assert (facts.height, facts.width) == (h, w)
    assert sorted(map(observed, facts.components), key=repr) == sorted(
        ({k: v for k, v in r.items() if k != "centroid"} for r in want), key=repr)
    by_box = {r["box_px"] + (r["area_px"],): r for r in want}
    for c in facts.components:
        r = by_box[c.box_px + (c.area_px,)]
        assert c.centroid == (round(float(r["centroid"][0]), 3), round(float(r["centroid"][1]), 3))
        assert c.box == (round(c.box_px[0] / w, 3), round(c.box_px[1] / h, 3),
                         round(c.box_px[2] / w, 3), round(c.box_px[3] / h, 3))
        assert c.area_fraction == round(c.area_px / (h * w), 4)
    # largest first; equal areas by centroid, row-major
    keys = [(-c.area_px, c.centroid[1], c.centroid[0]) for c in facts.components]
    assert keys == sorted(keys)
    # the extent is every kept pixel taken as one region
    if kept:
        assert facts.extent is not None
        assert observed(facts.extent) == {k: v for k, v in reference(sum(kept, []), h, w, config).items()
                                          if k != "centroid"}
    else:
        assert facts.extent is None and facts.empty


@settings(max_examples=120)
@given(
    size=st.integers(30, 150),
    other=st.integers(30, 150),
    boundary=st.sampled_from([Fraction(1, 3), Fraction(2, 3)]),
    offset=st.integers(-3, 3),
    span=st.integers(4, 9),
    axis=st.sampled_from("xy"),
    far=st.sampled_from([Fraction(1, 6), Fraction(5, 6)]),
)
def test_centroids_near_every_region_boundary(size: int, other: int, boundary: Fraction, offset: int,
                                              span: int, axis: str, far: Fraction) -> None:
    """A block whose centroid lies within a pixel and a half of 1/3 or 2/3 along one axis (on it,
    just before or just after), the other axis in the first or last third: the region is the
    third the exact centroid falls in."""
    # centre of the block in half-pixels: 2 * boundary * size, nudged by `offset` half-pixels
    centre2 = round(2 * boundary * size) + offset
    lo = (centre2 - span) // 2
    along = slice(max(lo, 0), min(lo + span, size))
    far_lo = int(far * other) - 2
    across = slice(far_lo, far_lo + 4)
    shape = (size, other) if axis == "y" else (other, size)
    mask = np.zeros(shape, dtype=bool)
    if axis == "x":
        mask[across, along] = True
    else:
        mask[along, across] = True
    config = GeometryConfig(min_pixels=1, min_fraction=0.0)
    (c,) = mask_facts(mask, config).components
    (pixels,) = flood_components(mask)
    assert c.region == reference(pixels, *shape, config)["region"]
