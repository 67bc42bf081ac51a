"""The second, stronger check of a near-duplicate image pair: the pixels themselves.

Perceptual hashes keep 64 or 144 low-frequency bits. Two images sharing a frame geometry (an
ultrasound fan, a fundus disc, a chest outline) and differing only in smaller detail can agree
on all of them, so a hash match is a *candidate*, never a verdict. Before a near duplicate is
dropped, both images are decoded again and compared at ``SIDE`` x ``SIDE`` pixels:

* grey levels, each image standardised (zero mean, unit variance: a brightness or contrast
  change is still a copy), compared by correlation;
* the same on their gradient magnitude (edges: where a lesion, a vessel or a microaneurysm
  shows), which the low frequencies of a hash never see.

Crops are handled as the hashes handle them, on a finer grid: each crop view of one image
against the whole of the other, both ways, the best view kept. The pair's ``similarity`` is the
smaller of the two correlations; it must reach the recipe's ``min_similarity`` (per modality,
``dedup.near_image.modalities``) for the pair to be a duplicate.

An image whose read-time decode is still held (``Media.pixels``, datakit.normalise) is compared
from those pixels; only an image known by its stored bytes alone is decoded (the build's merge
reads candidates back from its slice files, once each: the read-time pixels live in the slice
processes and are released there after signing).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image
from scipy import ndimage

from datakit.dedup.image_hash import CROP, canonical_pixels

SIDE = 64
# The hash's crop views on a finer grid (offsets in quarters of CROP): a copy cropped anywhere
# within CROP per axis lies within CROP/8 of one view, a quarter of a pixel here.
_STEPS = tuple(CROP * k / 4 for k in range(5))
VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 1.0, 1.0),
    (CROP, CROP, 1.0 - CROP, 1.0 - CROP),
    *((x, y, x + 1.0 - CROP, y + 1.0 - CROP) for y in _STEPS for x in _STEPS),
)
SIGMA = 1.0  # Gaussian smoothing, in pixels of the SIDE x SIDE copy
#: A stored image as a pixel-check caller has it: decoded pixels, or the stored bytes.
MediumPixels = Union[Image.Image, bytes]


@dataclass(frozen=True, slots=True)
class PixelViews:
    """An image's standardised grey and gradient arrays, whole image first then each crop view:
    (views, SIDE * SIDE) float32 each, every row zero-mean with unit norm."""

    grey: np.ndarray
    edges: np.ndarray


def _unit_rows(a: np.ndarray) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return (a / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def pixel_views(im: Image.Image) -> PixelViews:
    """Every crop view of a decoded image, resampled to SIDE x SIDE (area averaging)."""
    _, _, grey = canonical_pixels(im)
    grey = grey.convert("F")
    w, h = grey.size
    views = []
    for left, top, right, bottom in VIEWS:
        box = (left * w, top * h, right * w, bottom * h)
        views.append(np.asarray(grey.resize((SIDE, SIDE), Image.BOX, box=box), dtype=np.float64))
    # Lightly smoothed: a copy cropped between two views sits up to half a pixel off the nearest
    # view, which decorrelates speckle and raw gradients but not their smoothed forms.
    stack = ndimage.gaussian_filter(np.stack(views), sigma=(0, SIGMA, SIGMA))
    gy, gx = np.gradient(stack, axis=(1, 2))
    return PixelViews(grey=_unit_rows(stack), edges=_unit_rows(np.hypot(gx, gy)))


def decode_views(data: bytes) -> PixelViews:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return pixel_views(im)


def views_of(medium: MediumPixels) -> PixelViews:
    """The views of decoded pixels as they are, or of stored bytes once decoded."""
    return pixel_views(medium) if isinstance(medium, Image.Image) else decode_views(medium)


def similarity(a: PixelViews, b: PixelViews) -> float:
    """min(grey correlation, edge correlation), each the best of a's views against b's whole
    image and b's views against a's whole image; 1.0 for identical pixels."""
    out = []
    for field in ("grey", "edges"):
        va, vb = getattr(a, field), getattr(b, field)
        best = max(float((va @ vb[0]).max()), float((vb @ va[0]).max()))
        out.append(best)
    return round(min(out), 6)
