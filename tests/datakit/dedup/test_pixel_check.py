"""The pixel check of a near-duplicate candidate, rule by rule: the crop views (the hash's, on a
quarter grid), each view resampled to SIDE x SIDE by area and smoothed, grey and gradient rows
standardised, and the similarity the smaller of the best grey and best edge correlations, views
of either image against the other's whole. The verdicts on real copies are
test_label_conflicts.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from datakit.dedup.image_hash import CROP
from datakit.dedup.pixel_check import SIDE, SIGMA, VIEWS, decode_views, pixel_views, similarity, views_of

from dedup_images import crop3_offset, distinct_image, jpeg85


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def standardised(a: np.ndarray) -> np.ndarray:
    a = a.reshape(-1).astype(np.float64) - a.mean()
    return a / np.linalg.norm(a)


def view_by_hand(im: Image.Image, view: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """One view's grey and edge rows, from the module docstring's recipe."""
    grey = im.convert("L").convert("F")
    w, h = grey.size
    left, top, right, bottom = view
    small = np.asarray(grey.resize((SIDE, SIDE), Image.BOX, box=(left * w, top * h, right * w, bottom * h)),
                       dtype=np.float64)
    smooth = ndimage.gaussian_filter(small, sigma=SIGMA)
    gy, gx = np.gradient(smooth)
    return standardised(smooth), standardised(np.hypot(gx, gy))


def similarity_by_hand(a, b) -> float:
    out = []
    for field in ("grey", "edges"):
        va, vb = getattr(a, field).astype(np.float64), getattr(b, field).astype(np.float64)
        out.append(max(max(float(v @ vb[0]) for v in va), max(float(v @ va[0]) for v in vb)))
    return min(out)


def test_views_are_the_whole_image_the_centre_crop_and_a_quarter_grid_of_crops():
    assert SIDE == 64 and CROP == 0.03
    assert VIEWS[0] == (0.0, 0.0, 1.0, 1.0)
    assert VIEWS[1] == (CROP, CROP, 1.0 - CROP, 1.0 - CROP)
    steps = [CROP * k / 4 for k in range(5)]
    assert list(VIEWS[2:]) == [(x, y, x + 1.0 - CROP, y + 1.0 - CROP) for y in steps for x in steps]


@pytest.mark.parametrize("k", [0, 1, 2, 8, 26])
def test_each_view_is_resampled_smoothed_and_standardised(k):
    im = distinct_image(4, size=150).resize((150, 110))  # not square: width and height not swapped
    views = pixel_views(im)
    assert views.grey.shape == views.edges.shape == (len(VIEWS), SIDE * SIDE)
    assert views.grey.dtype == views.edges.dtype == np.float32
    grey, edges = view_by_hand(im, VIEWS[k])
    np.testing.assert_allclose(views.grey[k], grey, atol=2e-6)
    np.testing.assert_allclose(views.edges[k], edges, atol=2e-6)


def test_a_flat_image_has_zero_rows_not_nan():
    views = pixel_views(Image.new("L", (40, 30), 77))
    assert not views.grey.any() and not views.edges.any()
    assert similarity(views, views) == 0.0


def test_stored_bytes_and_held_pixels_give_the_same_views():
    im = distinct_image(9)
    held = pixel_views(im)
    for got in (decode_views(png(im)), views_of(png(im)), views_of(im)):
        assert np.array_equal(got.grey, held.grey) and np.array_equal(got.edges, held.edges)


def _lesion(im: Image.Image) -> Image.Image:
    out = im.copy()
    ImageDraw.Draw(out).ellipse([60, 50, 72, 62], fill=(255, 255, 255))
    return out


@pytest.mark.parametrize("make", [
    lambda im: im,
    lambda im: jpeg85(im),
    lambda im: crop3_offset(im, 2),
    lambda im: im.crop((0, 0, 124, 124)),  # cut on one side only: a's view against b's whole
    lambda im: _lesion(im),
    lambda im: distinct_image(31),
])
def test_similarity_is_the_smaller_of_the_best_grey_and_edge_correlations(make):
    a = distinct_image(13)
    va, vb = pixel_views(a), pixel_views(make(a))
    got = similarity(va, vb)
    assert got == round(similarity_by_hand(va, vb), 6) or abs(got - similarity_by_hand(va, vb)) < 2e-6
    assert got == similarity(vb, va)  # symmetric: each image's views against the other's whole
    assert round(got, 6) == got


def test_identical_pixels_are_one_and_detail_lowers_the_edges_first():
    a = distinct_image(13)
    assert similarity(pixel_views(a), pixel_views(a)) == 1.0
    va, vb = pixel_views(a), pixel_views(_lesion(a))
    grey = max(float((va.grey @ vb.grey[0]).max()), float((vb.grey @ va.grey[0]).max()))
    assert similarity(va, vb) < grey  # a lesion is an edge the grey levels barely see
    # a copy cut on one side matches through a crop view better than whole against whole
    cut = pixel_views(a.crop((0, 0, 124, 124)))
    assert similarity(va, cut) > float(va.grey[0] @ cut.grey[0]) + 0.01


def test_a_faint_image_is_standardised_like_any_other():
    """Rows are divided by their norm however small it is (a faint gradient is still a pattern)."""
    arr = np.full((30, 40), 100, np.uint8)
    arr[15, 20] = 101  # one pixel one grey level up: rows of norm below 1 before standardising
    views = pixel_views(Image.fromarray(arr, "L"))
    norms = np.linalg.norm(views.grey, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5) and (norms > 0).sum() >= 2
    assert similarity(views, views) == pytest.approx(1.0, abs=1e-5)
