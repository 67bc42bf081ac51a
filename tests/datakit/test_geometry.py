"""Mask geometry on masks drawn by hand, whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from datakit.converters.geometry import GeometryConfig, mask_facts, region_of, size_class_of


def canvas(h: int = 90, w: int = 120) -> np.ndarray:
    return np.zeros((h, w), dtype=bool)


def test_lesion_in_upper_left() -> None:
    # Wider than tall and off the diagonal, so swapping x and y anywhere changes an answer.
    m = canvas()
    m[6:24, 12:48] = True  # rows 6-23, cols 12-47
    facts = mask_facts(m)
    assert facts.count == 1 and facts.speckle == 0
    (c,) = facts.components
    assert c.box_px == (12, 6, 48, 24)
    assert c.box == (0.1, 0.067, 0.4, 0.267)
    assert c.centroid == (0.25, 0.167)
    assert c.area_px == 18 * 36
    assert c.area_fraction == round(18 * 36 / (90 * 120), 4)
    assert c.region == "upper_left"


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize(
    "start, before, after",
    [(25, "first", "second"), (55, "second", "third")],  # around 1/3 (30 px) and 2/3 (60 px) of 90
)
def test_centroids_either_side_of_a_third(axis: str, start: int, before: str, after: str) -> None:
    """A 9-px-wide block centred half a pixel before, then after, each third's boundary: 0.328
    vs 0.339 of the width around 1/3, 0.661 vs 0.672 around 2/3; the other axis sits at 0.15."""
    names = {"x": {"first": "left", "second": "centre", "third": "right"},
             "y": {"first": "upper", "second": "middle", "third": "lower"}}[axis]
    for shift, third in ((0, before), (1, after)):
        m = canvas(90, 90)
        lo = start + shift
        if axis == "x":
            m[9:18, lo : lo + 9] = True
            expected = f"upper_{names[third]}"
        else:
            m[lo : lo + 9, 9:18] = True
            expected = f"{names[third]}_left"
        (c,) = mask_facts(m).components
        assert c.region == expected, (axis, lo, c.centroid)


def test_two_lesions_largest_first() -> None:
    m = canvas()
    m[60:80, 90:115] = True  # lower right, 500 px
    m[5:15, 5:20] = True  # upper left, 150 px
    facts = mask_facts(m)
    assert facts.count == 2
    big, small = facts.components
    assert (big.region, big.area_px, big.box_px) == ("lower_right", 500, (90, 60, 115, 80))
    assert (small.region, small.area_px, small.box_px) == ("upper_left", 150, (5, 5, 20, 15))
    # The extent (used for organs) spans both.
    assert facts.extent is not None and facts.extent.box_px == (5, 5, 115, 80)
    assert facts.extent.area_px == 650


def test_equal_areas_ordered_row_major() -> None:
    m = canvas()
    m[70:80, 10:20] = True  # lower left
    m[10:20, 100:110] = True  # upper right, same area
    regions = [c.region for c in mask_facts(m).components]
    assert regions == ["upper_right", "lower_left"]


def test_lesion_at_centre() -> None:
    m = canvas()
    m[35:55, 50:70] = True  # centroid (60, 45) of (120, 90)
    (c,) = mask_facts(m).components
    assert c.centroid == (0.5, 0.5)
    assert c.region == "centre"


def test_middle_third_outside_centre_box() -> None:
    m = canvas(90, 90)
    m[40:50, 30:37] = True  # centroid (0.372, 0.5): middle third, more than 0.1 off centre
    (c,) = mask_facts(m).components
    assert abs(c.centroid[0] - 0.5) > 0.1 and 1 / 3 <= c.centroid[0] < 2 / 3
    assert c.region == "middle_centre"


def test_empty_mask() -> None:
    facts = mask_facts(canvas())
    assert facts.empty and facts.count == 0 and facts.extent is None and facts.speckle == 0


def test_speckle_below_minimum_is_ignored() -> None:
    m = canvas()
    m[30:50, 30:50] = True
    m[80, 5] = m[81, 6] = True  # 2 px, diagonal: one 8-connected speckle
    m[2:5, 110:113] = True  # 9 px
    facts = mask_facts(m, GeometryConfig(min_pixels=10))
    assert facts.count == 1 and facts.speckle == 2
    # Lower the minimum and the 9-pixel blob becomes a lesion; the 2-pixel one stays speckle.
    facts = mask_facts(m, GeometryConfig(min_pixels=3))
    assert facts.count == 2 and facts.speckle == 1
    # A fractional minimum applies too (1 % of 10800 px = 108 px).
    facts = mask_facts(m, GeometryConfig(min_pixels=1, min_fraction=0.01))
    assert facts.count == 1


def test_only_speckle_is_empty() -> None:
    m = canvas()
    m[10, 10] = m[50, 70] = True
    facts = mask_facts(m)
    assert facts.empty and facts.speckle == 2


def test_diagonal_pixels_are_one_component() -> None:
    m = canvas(40, 40)
    for i in range(25):
        m[5 + i, 5 + i] = True
    facts = mask_facts(m)
    assert facts.count == 1 and facts.components[0].box_px == (5, 5, 30, 30)


@pytest.mark.parametrize(
    "cx, cy, region",
    [
        (0.1, 0.1, "upper_left"),
        (0.5, 0.1, "upper_centre"),
        (0.9, 0.2, "upper_right"),
        (0.2, 0.5, "middle_left"),
        (0.35, 0.5, "middle_centre"),
        (0.9, 0.5, "middle_right"),
        (0.1, 0.9, "lower_left"),
        (0.5, 0.8, "lower_centre"),
        (0.8, 0.8, "lower_right"),
        (0.5, 0.5, "centre"),
        (0.6, 0.4, "centre"),
        (0.61, 0.5, "middle_centre"),
        (2 / 3, 1 / 3, "middle_right"),  # a boundary falls in the later third
    ],
)
def test_region_names(cx: float, cy: float, region: str) -> None:
    assert region_of(cx, cy) == region


def test_size_classes() -> None:
    config = GeometryConfig()
    assert size_class_of(0.0199, config) == "small"
    assert size_class_of(0.02, config) == "medium"
    assert size_class_of(0.0999, config) == "medium"
    assert size_class_of(0.10, config) == "large"
    m = canvas(100, 100)
    m[0:40, 0:40] = True  # 16 %
    assert mask_facts(m).components[0].size_class == "large"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="min_pixels"):
        GeometryConfig(min_pixels=0)
    with pytest.raises(ValueError, match="small_below"):
        GeometryConfig(small_below=0.2, large_from=0.1)
    with pytest.raises(ValueError, match="2-D"):
        mask_facts(np.zeros((4, 4, 3), dtype=bool))


@pytest.mark.parametrize(
    "options, ok",
    [
        ({"centre_tolerance": 0.0}, True),
        ({"centre_tolerance": 0.15}, True),
        ({"centre_tolerance": 1 / 6}, False),  # the centre box would leave the middle third
        ({"centre_tolerance": 0.2}, False),
        ({"min_fraction": 0.0}, True),
        ({"min_fraction": 1.0}, False),
        ({"min_fraction": 1.5}, False),
        ({"small_below": 0.0}, False),
        ({"small_below": 0.05, "large_from": 0.05}, True),  # no medium class, allowed
        ({"large_from": 1.0}, False),
        ({"large_from": 1.5}, False),
    ],
)
def test_config_bounds(options: dict, ok: bool) -> None:
    if ok:
        assert GeometryConfig(**options)
    else:
        with pytest.raises(ValueError, match=next(iter(options)) if len(options) == 1 else "small_below"):
            GeometryConfig(**options)


def test_empty_dimensions_are_refused_and_thin_masks_are_not() -> None:
    for shape in ((0, 5), (5, 0)):
        with pytest.raises(ValueError, match=r"empty dimension: shape \(\d, \d\)"):
            mask_facts(np.zeros(shape, dtype=bool))
    for shape in ((1, 30), (30, 1)):
        facts = mask_facts(np.ones(shape, dtype=bool))
        assert (facts.height, facts.width) == shape and facts.count == 1


def test_region_boundaries_exactly() -> None:
    # exactly on the centre box's edge counts as centre (0.625 - 0.5 is exact in binary)
    assert region_of(0.625, 0.375, centre_tolerance=0.125) == "centre"
    assert region_of(0.375, 0.625, centre_tolerance=0.125) == "centre"
    assert region_of(0.625 + 1e-9, 0.5, centre_tolerance=0.125) == "middle_centre"
    # on 1/3 or 2/3 a coordinate falls in the later third, on either axis
    assert region_of(1 / 3, 2 / 3) == "lower_centre"
    assert region_of(1 / 3 - 1e-9, 2 / 3 - 1e-9) == "middle_left"


def test_equal_areas_in_one_row_ordered_by_centroid_not_box() -> None:
    """Equal areas and rows: the centroid decides, even where the boxes would order them the
    other way (A's box starts further left, but A lies mostly to the right of B)."""
    m = canvas()
    m[10:20, 60:70] = True  # A: a block on the right ...
    m[9, 20:60] = m[20, 20:60] = True  # ... with two tails reaching left above and below B
    m[12:18, 25:55] = True  # B: 180 px like A, centroid left of A's, box starting right of A's
    a, b = sorted(mask_facts(m).components, key=lambda c: c.box_px)
    assert a.area_px == b.area_px == 180 and a.centroid[1] == b.centroid[1]
    assert a.box_px[0] < b.box_px[0] and a.centroid[0] > b.centroid[0]
    assert mask_facts(m).components == (b, a)
