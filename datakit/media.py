"""Reading and decoding media files, with the file named in every refusal.

Decoding is where a truncated or corrupt file fails, and where an image too large to decode
safely is refused before its pixels are allocated (``too_large``, never a crash).
``datakit.normalise`` builds on these to read an image once and bring it to one form.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError

from datakit.errors import Rejected


def read_file(path: Path, rel: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise Rejected("unreadable_file", rel, e.strerror or str(e)) from e


@contextlib.contextmanager
def _our_pixel_limit() -> Iterator[None]:
    """Pillow's decompression-bomb check off while a header is read: the caller's limit
    decides (it may be set above Pillow's), and a refusal becomes ``too_large``, not an error."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def decode_image(data: bytes, path: str, max_pixels: int | None = None) -> Image.Image:
    """Fully decode ``data``; raise ``Rejected`` naming ``path`` if it is not a whole image or if
    it has more than ``max_pixels`` pixels (checked from the header, before decoding)."""
    if not data:
        raise Rejected("empty_file", path)
    try:
        with _our_pixel_limit():
            im = Image.open(io.BytesIO(data))
        width, height = im.size
        limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
        if limit is not None and width * height > limit:
            raise Rejected("too_large", path, f"{width}x{height} = {width * height} pixels, above the limit of "
                                              f"{limit} (source option max_pixels)")
        im.load()
    except UnidentifiedImageError as e:
        raise Rejected("corrupt_image", path, "not a recognised image format") from e
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        reason = "truncated_image" if "truncated" in str(e).lower() else "corrupt_image"
        raise Rejected(reason, path, str(e)) from e
    return im
