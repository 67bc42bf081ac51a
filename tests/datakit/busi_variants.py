"""Real-world encodings of the bundled real BUSI images, made at test time.

Each variant writes a BUSI tree (``Dataset_BUSI_with_GT/<class>/<name>.png`` + masks) whose
files are encoded the way real copies of medical datasets come, while showing the same picture
and the same lesions as the original. The images are the 15 real BUSI images bundled in
``datakit/sample_sources`` (Al-Dhabyani et al., Data in Brief 28, 2020; see that folder's
README); nothing is copied into the repository.

``TOLERANCE`` states how far a lossy variant's delivered pixels may be from the original's.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[2] / "datakit" / "sample_sources" / "Dataset_BUSI_with_GT"
# One image per situation: two masks (benign 25), an RGB mask (malignant 7), normal images.
NAMES = ("benign (25)", "benign (3)", "malignant (7)", "malignant (12)", "normal (3)", "normal (12)")
ORIENTATION = 0x0112
BAND = 8  # rows of the RGBA variant that are fully transparent (their colour is garbage)
# JPEG at quality 95 (EXIF and CMYK variants): mean and max absolute difference per channel.
TOLERANCE = {"mean": 2.0, "max": 16}


@dataclass(frozen=True)
class Variant:
    name: str
    lossless: bool
    write_image: Callable[[Image.Image, Path], None]
    write_mask: Callable[[Image.Image, Path], None]

    def expected(self, original: Image.Image) -> np.ndarray:
        """The RGB pixels a trainer should receive for ``original`` under this variant."""
        rgb = np.asarray(original.convert("RGB")).copy()
        if self.name == "rgba":
            rgb[:BAND] = 0  # alpha 0 composited on black
        return rgb


def _png(im: Image.Image, path: Path, **kw) -> None:
    im.save(path, format="PNG", **kw)


def _grey16(im: Image.Image, path: Path) -> None:
    grey = np.asarray(im.convert("L")).astype(np.uint16) * 257  # 8-bit data widened, as converters do
    _png(Image.fromarray(grey), path)


def _mask16(mask: Image.Image, path: Path) -> None:
    _png(Image.fromarray((np.asarray(mask.convert("L")) > 0).astype(np.uint16) * 65535), path)


def _rgba(im: Image.Image, path: Path) -> None:
    rgba = np.dstack([np.asarray(im.convert("RGB")), np.full((im.height, im.width), 255, np.uint8)])
    rgba[:BAND, :, :3] = (255, 0, 255)  # garbage under alpha 0: must never reach training
    rgba[:BAND, :, 3] = 0
    _png(Image.fromarray(rgba, "RGBA"), path)


def _palette(im: Image.Image, path: Path) -> None:
    grey = im.convert("L")
    pal = Image.frombytes("P", grey.size, grey.tobytes())
    pal.putpalette([v for i in range(256) for v in (i, i, i)])
    _png(pal, path)


def _exif_stored(im: Image.Image) -> tuple[Image.Image, bytes]:
    """Pixels stored turned 90 degrees counter-clockwise; tag 6 says: turn clockwise to view."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return im.transpose(Image.Transpose.ROTATE_90), exif.tobytes()


def _exif_jpeg(im: Image.Image, path: Path) -> None:
    stored, exif = _exif_stored(im)
    stored.convert("RGB").save(path, format="JPEG", quality=95, exif=exif)


def _rotated_mask(mask: Image.Image, path: Path) -> None:
    """The annotation drawn on the stored pixels: turned the same way, no tag of its own."""
    _png(mask.transpose(Image.Transpose.ROTATE_90), path)


def _cmyk_jpeg(im: Image.Image, path: Path) -> None:
    buf = io.BytesIO()
    im.convert("RGB").convert("CMYK").save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue())  # a JPEG named .png, as some copies ship


def _mask01(mask: Image.Image, path: Path) -> None:
    _png(Image.fromarray((np.asarray(mask.convert("L")) > 0).astype(np.uint8), "L"), path)


VARIANTS = {
    "grey16": Variant("grey16", True, _grey16, _mask16),
    "rgba": Variant("rgba", True, _rgba, lambda m, p: _png(m, p)),
    "palette": Variant("palette", True, _palette, lambda m, p: _png(m, p)),
    "exif": Variant("exif", False, _exif_jpeg, _rotated_mask),
    "cmyk_as_png": Variant("cmyk_as_png", False, _cmyk_jpeg, lambda m, p: _png(m, p)),
    "mask01": Variant("mask01", True, lambda im, p: _png(im, p), _mask01),
}


def originals(names: tuple[str, ...] = NAMES) -> dict[str, tuple[Path, list[Path]]]:
    """name -> (image file, mask files) of the bundled originals."""
    out = {}
    for name in names:
        folder = SAMPLES / name.split(" ")[0]
        masks = sorted(folder.glob(f"{name}_mask*.png"))
        out[name] = (folder / f"{name}.png", masks)
    return out


def write_original(dst: Path, names: tuple[str, ...] = NAMES) -> Path:
    """A BUSI tree holding the originals byte for byte; returns the ``--sources`` folder."""
    for image, masks in originals(names).values():
        folder = dst / "Dataset_BUSI_with_GT" / image.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        for f in (image, *masks):
            shutil.copyfile(f, folder / f.name)
    return dst


def write_variant(dst: Path, variant: Variant, names: tuple[str, ...] = NAMES) -> Path:
    """A BUSI tree with every image and mask re-encoded as ``variant``, names unchanged."""
    for image, masks in originals(names).values():
        folder = dst / "Dataset_BUSI_with_GT" / image.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        variant.write_image(Image.open(image), folder / image.name)
        for m in masks:
            variant.write_mask(Image.open(m), folder / m.name)
    return dst


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, depth: int, colour: int, rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour, nor a lying header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))
