"""Mask geometry: the facts a spatial question can be answered from.

A boolean mask becomes its connected components (8-connectivity), each with a bounding box,
centroid, area fraction, named region and size class. Components smaller than a minimum are
speckle (annotation slips, JPEG ringing around a polygon edge) and are left out of every answer,
so a stray pixel never turns "one lesion" into "two lesions".

Conventions, fixed here so every answer agrees with every other:
- Coordinates are image coordinates: x grows to the right, y grows downwards, origin at the
  top-left corner. "left" and "right" mean the image's left and right as displayed, not the
  patient's (ultrasound has no anatomical left/right convention).
- Pixel boxes are ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive, so ``x1 - x0`` is the width.
  Normalised boxes divide by the image width/height and are rounded to 3 decimals.
- A centroid is the mean of pixel centres (``col + 0.5``, ``row + 0.5``) divided by the size.
- Region: "centre" when the centroid is within ``centre_tolerance`` of (0.5, 0.5) on both axes;
  otherwise upper/middle/lower by thirds of the height, left/centre/right by thirds of the width
  (a coordinate exactly on 1/3 or 2/3 falls in the later third).
- Size class by area fraction: small below ``small_below`` (2 %), large at or above
  ``large_from`` (10 %), medium in between.
- Components are ordered largest first; ties (equal area) by centroid row-major, then by box.
  Largest first because the largest lesion is the one a reader names first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

REGIONS: tuple[str, ...] = (
    "upper_left", "upper_centre", "upper_right",
    "middle_left", "middle_centre", "middle_right",
    "lower_left", "lower_centre", "lower_right",
    "centre",
)  # fmt: skip
SIZE_CLASSES: tuple[str, ...] = ("small", "medium", "large")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class GeometryConfig:
    """Thresholds for speckle, the centre region and size classes (all fractions of the image)."""

    min_pixels: int = 20
    min_fraction: float = 0.0002
    centre_tolerance: float = 0.1
    small_below: float = 0.02
    large_from: float = 0.10

    def __post_init__(self) -> None:
        if self.min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {self.min_pixels}")
        if not 0.0 <= self.min_fraction < 1.0:
            raise ValueError(f"min_fraction must be in [0, 1), got {self.min_fraction}")
        if not 0.0 <= self.centre_tolerance < 1 / 6:
            # Beyond 1/6 the centre box would spill out of the middle third.
            raise ValueError(f"centre_tolerance must be in [0, 1/6), got {self.centre_tolerance}")
        if not 0.0 < self.small_below <= self.large_from < 1.0:
            raise ValueError(
                f"need 0 < small_below <= large_from < 1, got {self.small_below}, {self.large_from}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    """One connected region of a mask (a lesion, or an organ's whole extent)."""

    box_px: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)
    box: tuple[float, float, float, float]  # normalised 0-1, 3 decimals
    centroid: tuple[float, float]  # normalised (cx, cy), 3 decimals
    area_px: int
    area_fraction: float  # of the whole image, 4 decimals
    region: str  # one of REGIONS
    size_class: str  # one of SIZE_CLASSES


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskFacts:
    """Everything the spatial converter needs from one mask."""

    height: int
    width: int
    components: tuple[Component, ...]  # speckle removed, largest first
    speckle: int  # number of components ignored as too small
    extent: Component | None  # all kept foreground taken as one region (organs); None if empty

    @property
    def count(self) -> int:
        return len(self.components)

    @property
    def empty(self) -> bool:
        return not self.components


def region_of(cx: float, cy: float, centre_tolerance: float = 0.1) -> str:
    """Named region of a normalised point, in the image's own frame."""
    if abs(cx - 0.5) <= centre_tolerance and abs(cy - 0.5) <= centre_tolerance:
        return "centre"
    row = "upper" if cy < 1 / 3 else "middle" if cy < 2 / 3 else "lower"
    col = "left" if cx < 1 / 3 else "centre" if cx < 2 / 3 else "right"
    return f"{row}_{col}"


def size_class_of(area_fraction: float, config: GeometryConfig) -> str:
    if area_fraction < config.small_below:
        return "small"
    return "large" if area_fraction >= config.large_from else "medium"


def _component(rows: np.ndarray, cols: np.ndarray, h: int, w: int, config: GeometryConfig) -> Component:
    x0, x1 = int(cols.min()), int(cols.max()) + 1
    y0, y1 = int(rows.min()), int(rows.max()) + 1
    # Raw centroid for the region (no rounding drift across a boundary); rounded for display.
    cx = (float(cols.mean()) + 0.5) / w
    cy = (float(rows.mean()) + 0.5) / h
    fraction = rows.size / (h * w)
    return Component(
        box_px=(x0, y0, x1, y1),
        box=(round(x0 / w, 3), round(y0 / h, 3), round(x1 / w, 3), round(y1 / h, 3)),
        centroid=(round(cx, 3), round(cy, 3)),
        area_px=int(rows.size),
        area_fraction=round(fraction, 4),
        region=region_of(cx, cy, config.centre_tolerance),
        size_class=size_class_of(fraction, config),
    )


def mask_facts(mask: np.ndarray, config: GeometryConfig | None = None) -> MaskFacts:
    """Connected components of a boolean (H, W) mask, speckle removed, largest first."""
    config = config or GeometryConfig()
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    h, w = mask.shape
    if h == 0 or w == 0:
        raise ValueError(f"mask has an empty dimension: shape {mask.shape}")
    labelled, n = ndimage.label(mask.astype(bool, copy=False), structure=_EIGHT_CONNECTED)
    min_area = max(config.min_pixels, config.min_fraction * h * w)
    kept: list[Component] = []
    speckle = 0
    keep_mask = np.zeros((h, w), dtype=bool)
    for index, window in enumerate(ndimage.find_objects(labelled), start=1):
        if window is None:
            continue
        local = labelled[window] == index
        if local.sum() < min_area:
            speckle += 1
            continue
        rows, cols = np.nonzero(local)
        rows = rows + window[0].start
        cols = cols + window[1].start
        keep_mask[rows, cols] = True
        kept.append(_component(rows, cols, h, w, config))
    kept.sort(key=lambda c: (-c.area_px, c.centroid[1], c.centroid[0], c.box_px))
    extent = None
    if kept:
        rows, cols = np.nonzero(keep_mask)
        extent = _component(rows, cols, h, w, config)
    return MaskFacts(height=h, width=w, components=tuple(kept), speckle=speckle, extent=extent)
