"""Per-image signatures, computed once per decoded image (in the conversion worker).

An ``ImageSignature`` holds two things:

* ``exact``: sha256 of the decoded pixels in a canonical form (mode normalised to ``L`` or
  ``RGB``, size included), so a PNG re-saved at another compression level, a lossless
  re-encode, or a grey image stored as RGB all give the same value. 16-bit and float images
  keep their full precision (``I16``/``I32``/``F32``).
* two DCT perceptual hashes of the grey image, each over ``len(VIEWS)`` crop *views*: the whole
  image plus crops that remove up to ``CROP`` of each axis. A global perceptual hash moves by
  20-50 of 64 bits under a 3% crop (the content shifts against the DCT basis); comparing one
  image's views with the other's whole view brings that back to a few bits. ``coarse`` (8x8
  low frequencies, 64 bits) is indexed for the search; ``fine`` (12x12, 144 bits) verifies
  candidates, because 64 low-frequency bits cannot tell apart images that share a frame
  geometry (ultrasound fans, chest radiographs) and differ only in smaller detail.

Both hashes are computed from one 48x48 resample per view: the k-th DCT coefficient is the
same spatial frequency (k/2 cycles per image) whatever the resample size.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops

# Bump when anything below changes the bits: stored registries are refused, not misread.
SIGNATURE_VERSION = "dct-views-1"
CROP = 0.03
# Views as (left, top, right, bottom) fractions: the whole image, a centred crop of CROP per
# side, and crops of CROP per axis at 3x3 offsets (at most CROP/4 from any such crop).
VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 1.0, 1.0),
    (CROP, CROP, 1.0 - CROP, 1.0 - CROP),
    *(
        (x, y, x + 1.0 - CROP, y + 1.0 - CROP)
        for y in (0.0, CROP / 2, CROP)
        for x in (0.0, CROP / 2, CROP)
    ),
)
N_VIEWS = len(VIEWS)
COARSE_SIDE, FINE_SIDE = 8, 12
COARSE_BYTES, FINE_BYTES = COARSE_SIDE**2 // 8, FINE_SIDE**2 // 8
_WORK_SIDE = 128  # grey working copy the views are cut from
_VIEW_SIDE = 48
FLAT_STD = 2.0  # grey levels; below this a hash is noise (blank slices, padding frames)


def _dct_matrix(n: int, k: int) -> np.ndarray:
    """First ``k`` rows of the orthonormal DCT-II matrix of size ``n``."""
    i = np.arange(n)
    m = np.cos(np.pi * (2 * i[None, :] + 1) * np.arange(k)[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def _area_resample_matrix(lo: float, hi: float, n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights that average the span [lo, hi) of a row of ``n_in`` pixels into
    ``n_out`` equal cells (exact area overlap: antialiased, sub-pixel crop boundaries)."""
    edges = lo + (hi - lo) * np.arange(n_out + 1) / n_out
    left, right = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(right, px + 1.0) - np.maximum(left, px), 0.0, None)
    return overlap / (right - left)


@functools.cache
def _view_operators() -> tuple[np.ndarray, np.ndarray]:
    """Per view, the row operator and the transposed column operator that take the grey work
    copy straight to the view's low DCT coefficients: ``coef = rows[v] @ work @ cols_t[v]``."""
    dct = _dct_matrix(_VIEW_SIDE, FINE_SIDE)
    n = _WORK_SIDE
    rows = [dct @ _area_resample_matrix(t * n, b * n, n, _VIEW_SIDE) for (_, t, _, b) in VIEWS]
    cols = [dct @ _area_resample_matrix(l * n, r * n, n, _VIEW_SIDE) for (l, _, r, _) in VIEWS]
    return np.stack(rows), np.ascontiguousarray(np.stack(cols).transpose(0, 2, 1))


@dataclass(frozen=True, slots=True)
class ImageSignature:
    """What dedup and decontamination know about one image. ``coarse``/``fine`` pack one hash
    per view (``N_VIEWS`` x 8 and x 18 bytes, big-endian bit order), whole image first."""

    exact: str
    coarse: bytes
    fine: bytes
    width: int
    height: int
    flat: bool

    def __post_init__(self) -> None:
        if len(self.coarse) != N_VIEWS * COARSE_BYTES or len(self.fine) != N_VIEWS * FINE_BYTES:
            raise ValueError(
                f"ImageSignature: expected {N_VIEWS} views ({N_VIEWS * COARSE_BYTES}/"
                f"{N_VIEWS * FINE_BYTES} bytes), got {len(self.coarse)}/{len(self.fine)}"
            )

    @property
    def phash(self) -> int:
        """The whole-image 64-bit hash (the conventional pHash), as an integer."""
        return int.from_bytes(self.coarse[:COARSE_BYTES], "big")

    def to_dict(self) -> dict[str, object]:
        return {
            "exact": self.exact,
            "coarse": self.coarse.hex(),
            "fine": self.fine.hex(),
            "width": self.width,
            "height": self.height,
            "flat": self.flat,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "ImageSignature":
        return cls(
            exact=str(d["exact"]),
            coarse=bytes.fromhex(str(d["coarse"])),
            fine=bytes.fromhex(str(d["fine"])),
            width=int(d["width"]),  # type: ignore[arg-type]
            height=int(d["height"]),  # type: ignore[arg-type]
            flat=bool(d["flat"]),
        )


def canonical_pixels(im: Image.Image) -> tuple[str, bytes, Image.Image]:
    """(tag, pixel bytes, grey image) of a decoded image, in the form the exact hash covers.

    8-bit modes (palette, bilevel, alpha, CMYK ...) become RGB with alpha dropped, then L when
    the three channels are equal; deeper modes keep their values as little-endian integers or
    floats, so a 16-bit CT slice is not confused with its 8-bit rendering. The grey image
    (deep ones min-max scaled to 0-255) feeds the perceptual hashes.
    """
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        tag, dtype = {"I": ("I32", "<i4"), "F": ("F32", "<f4")}.get(im.mode, ("I16", "<u2"))
        arr = np.asarray(im).astype(dtype, copy=False)
        a = arr.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        grey = Image.fromarray((a - lo) * (255.0 / (hi - lo)) if hi > lo else a * 0.0, "F")
        return tag, arr.tobytes(), grey
    if im.mode == "L":
        return "L", im.tobytes(), im
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    r, g, b = rgb.split()
    if ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(r, b).getbbox() is None:
        return "L", r.tobytes(), r
    return "RGB", rgb.tobytes(), rgb.convert("L")


def exact_hash(tag: str, width: int, height: int, pixels: bytes) -> str:
    h = hashlib.sha256(struct.pack("<4sII", tag.encode("ascii"), width, height))
    h.update(pixels)
    return h.hexdigest()


def _pack_bits(coef: np.ndarray) -> bytes:
    """Bits of ``coef`` (views, k, k): 1 where a coefficient exceeds its view's median (DC out)."""
    flat = coef.reshape(coef.shape[0], -1)[:, 1:]
    mid = flat.shape[1] // 2  # k*k - 1 is odd for even k, so the median is one element
    med = np.partition(flat, mid, axis=1)[:, mid : mid + 1]
    bits = np.concatenate([np.zeros((flat.shape[0], 1), bool), flat > med], axis=1)
    return np.packbits(bits, axis=1).tobytes()


def signature(im: Image.Image) -> ImageSignature:
    """The signature of one decoded image (any PIL mode)."""
    tag, pixels, grey = canonical_pixels(im)
    work = np.asarray(grey.resize((_WORK_SIDE, _WORK_SIDE), Image.BILINEAR), dtype=np.float64)
    # Batched per view on purpose: one (132 x 128) GEMM crosses OpenBLAS's threading threshold
    # and, with threads contending for busy cores, runs several times slower.
    rows, cols_t = _view_operators()
    coef = rows @ work @ cols_t  # (views, FINE_SIDE, FINE_SIDE) low DCT coefficients
    # Rounded so that summation-order noise (another BLAS kernel, another CPU) cannot flip a
    # bit where a coefficient ties the median, as exact zeros of symmetric content do.
    coef = np.round(coef, 6)
    return ImageSignature(
        exact=exact_hash(tag, im.width, im.height, pixels),
        coarse=_pack_bits(coef[:, :COARSE_SIDE, :COARSE_SIDE]),
        fine=_pack_bits(coef),
        width=im.width,
        height=im.height,
        flat=bool(work.std() < FLAT_STD),
    )
