"""Reading media files: bytes kept as read, decoded once to validate and to measure.

Shards store the source bytes (re-encoding costs about twelve times a decode, DESIGN.md), so
reading an image means: read bytes, decode fully (a truncated or corrupt file fails here, with
its path), and keep the pixels only when a caller needs them (masks, dedup hashes).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from datakit.errors import Rejected
from datakit.record import Media

_EXT = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tiff", "WEBP": "webp"}
# Formats energon's default decoder reads and that we store untouched; others are re-encoded to PNG.
_STORED_AS_READ = {"png", "jpg"}


def decode_image(data: bytes, path: str) -> Image.Image:
    """Fully decode ``data``; raise ``Rejected`` naming ``path`` if it is not a whole image."""
    if not data:
        raise Rejected("empty_file", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            im.load()
    except UnidentifiedImageError as e:
        raise Rejected("corrupt_image", path, "not a recognised image format") from e
    except (OSError, SyntaxError, ValueError) as e:
        reason = "truncated_image" if "truncated" in str(e).lower() else "corrupt_image"
        raise Rejected(reason, path, str(e)) from e
    return im


def read_image(path: Path, rel: str | None = None) -> tuple[Media, Image.Image]:
    """Read an image file as a ``Media`` (bytes as read) plus its decoded PIL image."""
    name = rel or path.as_posix()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Rejected("unreadable_file", name, e.strerror or str(e)) from e
    im = decode_image(data, name)
    ext = _EXT.get(im.format or "", "")
    if ext not in _STORED_AS_READ:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG", optimize=False, compress_level=6)
        data, ext = buf.getvalue(), "png"
    return Media(data=data, ext=ext, width=im.width, height=im.height), im


def mask_array(im: Image.Image) -> np.ndarray:
    """A binary mask image as bool (H, W): any channel > 127 is foreground.

    BUSI masks are 0/255, stored as grey or RGB (or with alpha) depending on the copy; taking the
    max over colour channels and thresholding at 127 reads all of them the same way.
    """
    if im.mode in ("1", "P", "I", "I;16", "F"):
        im = im.convert("L")
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    return arr > 127


def rgb_array(im: Image.Image) -> np.ndarray:
    """A colour-coded mask as uint8 (H, W, 3): alpha dropped, grey stacked to three channels."""
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3]).astype(np.uint8, copy=False)
