"""Image normalisation at read time: one rule for every reader (``docs/normalisation.md``).

Real datasets hold 16-bit greys, EXIF-rotated JPEGs, RGBA and palette PNGs, CMYK JPEGs named
``.png`` and masks encoded 0/1. Stored as read, a trainer decodes them as something else than
what the annotations describe (a white image, a rotated image, garbage under alpha 0). So each
image is decoded once here and brought to one form before any converter sees it:

* orientation: the EXIF tag is applied; a record's masks take the image's orientation unless a
  mask carries its own tag;
* mode: 8-bit ``L`` or ``RGB``; alpha composited on black; palette, CMYK, YCbCr -> RGB; bilevel,
  ``LA`` -> L; deep greys (``I;16``, ``I``, ``F``) -> L by ``grey_to_8bit``'s stated rule;
  16-bit-per-sample colour PNGs -> RGB (Pillow's high byte);
* size: ``ImageLimits.max_pixels`` refuses an image before decoding it (``too_large``);
  ``max_side`` downsizes an image and its masks together.

The source bytes are stored untouched when nothing changed (PNG or JPEG, already L/RGB, no
orientation, no resize); otherwise the normalised pixels are re-encoded as PNG (lossless), and
``steps`` says what was done. The decoded, normalised pixels travel with the ``Media`` so the
dedup signature never decodes the stored bytes again.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from datakit.errors import Rejected
from datakit.media import decode_image, read_file
from datakit.record import Media

# Pillow's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS), as the default limit.
DEFAULT_MAX_PIXELS = 89_478_485
# A lossy (JPEG) mask rings around its edges: foreground where the value is at least this.
LOSSY_MASK_THRESHOLD = 128
_STORED_AS_READ = {"PNG": "png", "JPEG": "jpg"}
_LOSSY_FORMATS = {"JPEG", "MPO", "WEBP"}
_ORIENTATION_TAG = 0x0112
_ORIENTATION_NAMES = {2: "mirror", 3: "rotate 180", 4: "flip", 5: "transpose", 6: "rotate 90 cw",
                      7: "transverse", 8: "rotate 90 ccw"}


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """The size guards of one source (recipe ``sources[].options``: ``max_pixels``, ``max_side``)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int | None = None

    @classmethod
    def from_options(cls, source: str, opts: Mapping[str, Any]) -> "ImageLimits":
        max_pixels, max_side = opts.get("max_pixels", DEFAULT_MAX_PIXELS), opts.get("max_side")
        if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
            raise ValueError(f"source {source}: option max_pixels must be a positive integer, got {max_pixels!r}")
        if max_side is not None and (not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < 1):
            raise ValueError(f"source {source}: option max_side must be a positive integer or null, got {max_side!r}")
        return cls(max_pixels=max_pixels, max_side=max_side)

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) after ``max_side``: the longer side scaled down to it, aspect kept."""
        w, h = size
        if self.max_side is None or max(w, h) <= self.max_side:
            return size
        scale = self.max_side / max(w, h)
        return max(1, round(w * scale)), max(1, round(h * scale))


@dataclass(slots=True)
class NormalisedImage:
    """One read image: what is stored, its pixels, and the facts masks are matched against."""

    media: Media  # stored bytes (as read, or PNG of ``pixels``), pixels attached
    pixels: Image.Image  # L or RGB, display orientation, final size
    file_sha256: str  # of the source file as read
    orientation: int  # EXIF orientation applied (1: none)
    oriented_size: tuple[int, int]  # (width, height) after orientation, before max_side
    steps: list[str] = field(default_factory=list)  # empty: stored as read


def orientation_of(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a malformed EXIF block is not a reason to lose the image: no rotation
        return 1
    return value if value in _ORIENTATION_NAMES else 1


def apply_orientation(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` turned to its display frame by EXIF orientation ``orientation`` (1: unchanged)."""
    if orientation == 1:
        return im
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}[orientation]
    return im.transpose(method)


def grey_to_8bit(im: Image.Image) -> tuple[Image.Image, str]:
    """A deep grey image (``I;16*``, ``I``, ``F``) as 8-bit L, and the rule applied.

    1. every value a multiple of 257 (an 8-bit image widened to 16 bits): ``v / 257``, exact;
    2. integers in 0..65535: ``round(v * 255 / (2**b - 1))`` where ``b`` (at least 8) is the
       number of bits the image's maximum needs (12-bit CT or X-ray data in a 16-bit container
       keeps its dynamic range and is not stretched);
    3. anything else (negative or fractional values): min-max to 0..255.
    """
    arr = np.asarray(im)
    if arr.dtype.kind in "ui" or (arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0)):
        ints = arr.astype(np.int64)
        lo, hi = (int(ints.min()), int(ints.max())) if ints.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            if not np.any(ints % 257):
                return Image.fromarray((ints // 257).astype(np.uint8), "L"), "grey 16-bit -> 8-bit: v / 257 (8-bit data)"
            bits = max(8, hi.bit_length())
            top = (1 << bits) - 1
            out = (ints * 255 + top // 2) // top
            return Image.fromarray(out.astype(np.uint8), "L"), f"grey 16-bit -> 8-bit: round(v * 255 / {top}) ({bits} bits used)"
    a = arr.astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    out = np.rint((a - lo) * (255.0 / (hi - lo))) if hi > lo else np.zeros_like(a)
    return Image.fromarray(out.astype(np.uint8), "L"), f"grey {im.mode} -> 8-bit: min-max {lo:g}..{hi:g} -> 0..255"


def composite_on_black(im: Image.Image) -> Image.Image:
    """Alpha composited on black: ``round(c * a / 255)`` per channel; L for LA, RGB otherwise."""
    grey = im.mode in ("LA", "La")
    src = im.convert("LA" if grey else "RGBA")
    arr = np.asarray(src).astype(np.uint32)
    colour, alpha = arr[..., :-1], arr[..., -1:]
    out = ((colour * alpha + 127) // 255).astype(np.uint8)
    return Image.fromarray(out[..., 0], "L") if grey else Image.fromarray(out, "RGB")


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (im.mode == "P" and "transparency" in im.info)


def to_8bit_mode(im: Image.Image, fmt: str | None, data: bytes) -> tuple[Image.Image, list[str]]:
    """``im`` as 8-bit L or RGB, with the steps taken (none for an L/RGB image of 8-bit samples)."""
    if _has_alpha(im):
        return composite_on_black(im), [f"{im.mode}: alpha composited on black"]
    if im.mode in ("L", "RGB"):
        if fmt == "PNG" and _png_bit_depth(data) == 16:
            return im, [f"16-bit {im.mode} PNG -> 8-bit (high byte of each sample)"]
        return im, []
    if im.mode == "1":
        return im.convert("L"), ["bilevel -> L"]
    if im.mode.startswith("I") or im.mode == "F":
        out, rule = grey_to_8bit(im)
        return out, [rule]
    return im.convert("RGB"), [f"{im.mode} -> RGB"]


def _png_bit_depth(data: bytes) -> int:
    return data[24] if len(data) > 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" else 8


def encode_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def read_image(path: Path, rel: str, limits: ImageLimits = ImageLimits()) -> NormalisedImage:
    """Read, decode once and normalise one image file; ``Rejected`` names ``rel`` on bad input."""
    return normalise_image_bytes(read_file(path, rel), rel, limits)


def normalise_image_bytes(data: bytes, rel: str, limits: ImageLimits = ImageLimits()) -> NormalisedImage:
    """Decode once and normalise an image's encoded bytes, by the rule ``read_image`` applies to
    a file: the entry point for images held inside another file (a parquet cell, an archive
    member). ``rel`` names where they came from (``data/train.parquet:12``) in any refusal, and
    ``file_sha256`` is the hash of ``data``."""
    im = decode_image(data, rel, limits.max_pixels)
    file_sha = hashlib.sha256(data).hexdigest()
    fmt = im.format
    steps: list[str] = []
    if getattr(im, "n_frames", 1) > 1:
        steps.append(f"first of {im.n_frames} frames")
    orientation = orientation_of(im)
    pixels = apply_orientation(im, orientation)
    if orientation != 1:
        steps.append(f"EXIF orientation {orientation} ({_ORIENTATION_NAMES[orientation]}) applied")
    pixels, mode_steps = to_8bit_mode(pixels, fmt, data)
    steps += mode_steps
    oriented = pixels.size
    target = limits.target_size(oriented)
    if target != oriented:
        pixels = pixels.resize(target, Image.Resampling.LANCZOS)
        steps.append(f"downsized {oriented[0]}x{oriented[1]} -> {target[0]}x{target[1]} (max_side {limits.max_side}, Lanczos)")
    if fmt not in _STORED_AS_READ:
        steps.append(f"{fmt or 'unknown'} format -> PNG")
    note = _normalisation_note(fmt, im.mode, steps)
    if steps:
        media = Media(data=encode_png(pixels), ext="png", width=pixels.width, height=pixels.height,
                      pixels=pixels, normalisation=note)
    else:
        media = Media(data=data, ext=_STORED_AS_READ[fmt], width=pixels.width, height=pixels.height,
                      sha256=file_sha, pixels=pixels, normalisation=note)
    return NormalisedImage(media=media, pixels=pixels, file_sha256=file_sha, orientation=orientation,
                           oriented_size=oriented, steps=steps)


def _normalisation_note(fmt: str | None, mode: str, steps: list[str]) -> dict[str, Any]:
    """What the sample's provenance says about one image: stored as read, or how it was changed."""
    if not steps:
        return {"stored": "as_read"}
    return {"stored": "re-encoded", "from": f"{fmt or 'unknown'} {mode}", "steps": list(steps)}


@dataclass(frozen=True, slots=True)
class MaskFile:
    """A decoded mask file turned to its image's frame (before ``max_side``)."""

    image: Image.Image
    file_sha256: str
    lossy: bool


def _read_mask_file(path: Path, rel: str, image: NormalisedImage, limits: ImageLimits) -> MaskFile:
    data = read_file(path, rel)
    im = decode_image(data, rel, limits.max_pixels)
    own = orientation_of(im)
    orientation = own if own != 1 else image.orientation
    oriented = apply_orientation(im, orientation)
    if oriented.size != image.oriented_size:
        hint = ""
        if image.orientation != 1 or own != 1:
            hint = (f"; orientation applied: EXIF {orientation} "
                    f"({'its own tag' if own != 1 else 'the image tag'}), the mask as stored is "
                    f"{im.size[0]}x{im.size[1]}")
        raise Rejected("mask_size_mismatch", rel,
                       f"mask {oriented.size} vs image {image.oriented_size} (width, height){hint}")
    return MaskFile(image=oriented, file_sha256=hashlib.sha256(data).hexdigest(), lossy=im.format in _LOSSY_FORMATS)


def mask_foreground(im: Image.Image, lossy: bool) -> np.ndarray:
    """Bool (H, W): any non-zero pixel is foreground (0/1, 0/255, 16-bit, any channel of RGB);
    alpha is composited on black first; a lossy mask needs at least ``LOSSY_MASK_THRESHOLD``."""
    if _has_alpha(im):
        im = composite_on_black(im)
    elif im.mode == "LAB":
        im = im.getchannel("L")  # black is L = 0 (Pillow's LAB -> RGB turns it into (1, 0, 1))
    elif im.mode in ("P", "CMYK", "YCbCr", "HSV"):
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr >= LOSSY_MASK_THRESHOLD if lossy else arr > 0


def read_mask(path: Path, rel: str, image: NormalisedImage, limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, str]:
    """A binary mask of ``image`` as bool (H, W) at the image's final size, and the file's sha256."""
    mask = _read_mask_file(path, rel, image, limits)
    fg = mask_foreground(mask.image, mask.lossy)
    if fg.shape[::-1] != image.pixels.size:
        # downsized with the image: the share of foreground in each target pixel, at least half
        scaled = Image.fromarray(fg.astype(np.uint8) * 255, "L").resize(image.pixels.size, Image.Resampling.BOX)
        fg = np.asarray(scaled) >= 128
    return fg, mask.file_sha256


def read_colour_mask(path: Path, rel: str, image: NormalisedImage,
                     limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, str]:
    """A colour-coded mask as uint8 (H, W, 3) at the image's final size: palette indices become
    their colours, alpha is composited on black, grey is stacked to three channels; a resize
    takes the nearest pixel so no colour outside the code appears."""
    mask = _read_mask_file(path, rel, image, limits)
    im = mask.image
    if _has_alpha(im):
        im = composite_on_black(im)
    elif im.mode.startswith("I") or im.mode == "F":
        im, _ = grey_to_8bit(im)
    elif im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    if im.size != image.pixels.size:
        im = im.resize(image.pixels.size, Image.Resampling.NEAREST)
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3]).astype(np.uint8, copy=False), mask.file_sha256
