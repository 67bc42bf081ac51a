"""Edges of the normalisation rule that the rule tests leave open (found by mutation testing):
modes that must be converted before a mask is read, deep-grey ``F`` images, the resampling of a
downsized image and of its masks, the PNG encoder's settings, and where each refusal points."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from datakit.errors import Rejected
from datakit.normalise import (
    ImageLimits,
    encode_png,
    mask_foreground,
    normalise_image_bytes,
    read_colour_mask,
    read_image,
    read_mask,
    to_8bit_mode,
)


def encode(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_premultiplied_la_is_composited():
    la = Image.fromarray(np.array([[[3, 85], [200, 0]]], np.uint8), "LA").convert("La")
    out, steps = to_8bit_mode(la, "PNG", b"")
    assert steps == ["La: alpha composited on black"] and out.mode == "L"


def test_black_is_background_in_every_colour_encoding():
    """A mask pixel is foreground by its colour, not by its code: black in YCbCr or LAB is
    (0, 128, 128), a palette index may be black, and black in HSV keeps any hue."""
    rgb = Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8), "RGB")
    for mode in ("YCbCr", "LAB"):
        assert mask_foreground(rgb.convert(mode), lossy=False).tolist() == [[False, True]], mode
    lab = Image.fromarray(np.array([[[0, 20, 236], [200, 0, 0]]], np.uint8), "LAB")  # L = 0 is black
    assert mask_foreground(lab, lossy=False).tolist() == [[False, True]]
    hsv = Image.fromarray(np.array([[[100, 200, 0], [0, 0, 255]]], np.uint8), "HSV")  # black, white
    assert mask_foreground(hsv, lossy=False).tolist() == [[False, True]]
    palette = Image.fromarray(np.array([[1, 0]], np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 0])  # index 0 red, index 1 black
    assert mask_foreground(palette, lossy=False).tolist() == [[False, True]]


def test_float_images_take_the_grey_rule(tmp_path):
    values = np.array([[0.0, 0.5], [1.0, 2.0]], np.float32)  # fractional: min-max
    got = normalise_image_bytes(encode(Image.fromarray(values, "F"), "TIFF"), "f.tif")
    assert got.pixels.mode == "L" and np.asarray(got.pixels).tolist() == [[0, 64], [128, 255]]
    assert "grey F -> 8-bit: min-max 0..2 -> 0..255" in got.steps


def _image(tmp_path, size=(4, 2)) -> object:
    path = tmp_path / "i.png"
    path.write_bytes(encode(Image.new("RGB", size, (9, 9, 9))))
    return read_image(path, "i.png")


def test_colour_masks_of_float_cmyk_and_plain_palette_files(tmp_path):
    image = _image(tmp_path)
    codes = np.array([[0, 1, 2, 1], [2, 2, 0, 1]], np.uint8)
    deep = Image.fromarray(codes.astype(np.float32) * 500, "F")  # 0, 500, 1000: 10 bits
    cmyk = Image.fromarray(np.array([[0, 0, 0, 0], [0, 255, 255, 0], [255, 0, 255, 0]], np.uint8)[codes], "CMYK")
    palette = Image.fromarray(codes, "P")  # no transparency: the colours, not the indices
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    cases = {
        "deep.tif": (deep, np.dstack([np.array([0, 125, 249], np.uint8)[codes]] * 3)),  # round(v * 255 / 1023)
        "cmyk.tif": (cmyk, np.array([[255, 255, 255], [255, 0, 0], [0, 255, 0]], np.uint8)[codes]),
        "palette.png": (palette, np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)[codes]),
    }
    for name, (im, want) in cases.items():
        path = tmp_path / name
        path.write_bytes(encode(im, "TIFF" if name.endswith(".tif") else "PNG"))
        got, _ = read_colour_mask(path, name, image)
        assert np.array_equal(got, want), name


def test_refusals_name_the_file_they_come_from(tmp_path):
    image = _image(tmp_path)
    with pytest.raises(Rejected) as e:
        read_image(tmp_path / "missing.png", "data/missing.png")
    assert (e.value.reason, e.value.path) == ("unreadable_file", "data/missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    wrong = tmp_path / "wrong.png"
    wrong.write_bytes(encode(Image.new("L", (3, 3))))
    for read in (read_mask, read_colour_mask):
        with pytest.raises(Rejected) as e:
            read(tmp_path / "none.png", "masks/none.png", image)
        assert (e.value.reason, e.value.path) == ("unreadable_file", "masks/none.png")
        with pytest.raises(Rejected) as e:
            read(bad, "masks/bad.png", image)
        assert (e.value.reason, e.value.path) == ("corrupt_image", "masks/bad.png")
        with pytest.raises(Rejected) as e:
            read(wrong, "masks/wrong.png", image)
        assert (e.value.reason, e.value.path) == ("mask_size_mismatch", "masks/wrong.png")


def test_a_mask_above_the_pixel_limit_is_refused(tmp_path):
    image = _image(tmp_path)
    path = tmp_path / "m.png"
    path.write_bytes(encode(Image.new("L", (4, 2), 255)))
    assert read_mask(path, "m.png", image, ImageLimits(max_pixels=8))[0].all()
    with pytest.raises(Rejected) as e:
        read_mask(path, "m.png", image, ImageLimits(max_pixels=7))
    assert (e.value.reason, e.value.path) == ("too_large", "m.png")


def test_downsizing_uses_lanczos_and_names_both_sides(tmp_path):
    rng = np.random.default_rng(0)
    src = Image.fromarray(rng.integers(0, 256, (10, 20), dtype=np.uint8), "L")
    got = normalise_image_bytes(encode(src), "i.png", ImageLimits(max_side=8))
    assert got.pixels.size == (8, 4)
    assert np.array_equal(np.asarray(got.pixels), np.asarray(src.resize((8, 4), Image.Resampling.LANCZOS)))
    assert "downsized 20x10 -> 8x4 (max_side 8, Lanczos)" in got.steps


def test_a_downsized_mask_keeps_pixels_at_least_half_foreground(tmp_path):
    """Each target pixel of a mask halved in both sides is foreground iff at least two of its
    four source pixels are (the share of foreground, at least half)."""
    rng = np.random.default_rng(3)
    mask = rng.random((8, 12)) < 0.5
    mask[0:2, 0:2] = [[True, True], [False, False]]  # exactly half
    image_path = tmp_path / "i.png"
    image_path.write_bytes(encode(Image.new("L", (12, 8), 7)))
    image = read_image(image_path, "i.png", ImageLimits(max_side=6))
    path = tmp_path / "m.png"
    path.write_bytes(encode(Image.fromarray(mask.astype(np.uint8) * 255, "L")))
    fg, _ = read_mask(path, "m.png", image, ImageLimits(max_side=6))
    share = mask.reshape(4, 2, 6, 2).mean(axis=(1, 3))
    assert fg[0, 0] and np.array_equal(fg, share >= 0.5)


def test_reencoded_images_use_zlibs_default_level():
    """The stored bytes of a re-encoded image (and so the shards' checksums) depend on the PNG
    encoder's settings: level 6, no optimisation (the zlib header says level 'default')."""
    data = encode_png(Image.new("L", (16, 16), 3))
    idat = data.index(b"IDAT") + 4
    cmf, flg = data[idat], data[idat + 1]
    assert cmf == 0x78 and flg >> 6 == 2  # FLEVEL 2: zlib's default level (6)
    assert zlib.decompress(data[idat:data.index(b"IEND") - 8])  # one IDAT holds the whole stream
