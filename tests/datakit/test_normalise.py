"""The image-normalisation rules (docs/normalisation.md), one by one, on tiny inline images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busi_variants import ORIENTATION, SAMPLES, VARIANTS, raw_png
from datakit.dedup.image_hash import signature
from datakit.errors import Rejected
from datakit.media import decode_image
from datakit.normalise import (
    ImageLimits,
    composite_on_black,
    grey_to_8bit,
    mask_foreground,
    read_image,
    read_mask,
)

BUSI_IMAGE = SAMPLES / "benign" / "benign (3).png"


def save(im: Image.Image, path: Path, fmt: str = "PNG", **kw) -> Path:
    im.save(path, format=fmt, **kw)
    return path


def test_deep_grey_rules():
    eight = np.arange(256, dtype=np.uint16).reshape(16, 16)
    out, rule = grey_to_8bit(Image.fromarray(eight * 257))
    assert np.array_equal(np.asarray(out), eight) and "v / 257" in rule  # widened 8-bit: exact
    twelve = np.array([[0, 1024, 2048, 4095]], dtype=np.uint16)
    out, rule = grey_to_8bit(Image.fromarray(twelve))
    assert np.asarray(out).tolist() == [[0, 64, 128, 255]] and "4095" in rule and "12 bits" in rule
    signed = np.array([[-1000, 0, 1000]], dtype=np.int32)
    out, rule = grey_to_8bit(Image.fromarray(signed, "I"))
    assert np.asarray(out).tolist() == [[0, 128, 255]] and "min-max" in rule


def test_alpha_is_composited_on_black():
    rgba = Image.fromarray(np.array([[[200, 100, 50, 128], [9, 9, 9, 0], [1, 2, 3, 255]]], np.uint8), "RGBA")
    assert np.asarray(composite_on_black(rgba)).tolist() == [[[100, 50, 25], [0, 0, 0], [1, 2, 3]]]
    la = Image.fromarray(np.array([[[255, 255], [255, 0]]], np.uint8), "LA")
    assert np.asarray(composite_on_black(la)).tolist() == [[255, 0]]


def test_plain_png_and_jpeg_are_stored_as_read(tmp_path):
    jpeg = save(Image.open(BUSI_IMAGE).convert("L"), tmp_path / "x.jpg", "JPEG", quality=90)
    for path in (BUSI_IMAGE, jpeg):
        read = read_image(path, path.name)
        assert read.media.data == path.read_bytes() and read.steps == []
        assert read.media.normalisation == {"stored": "as_read"} and read.media.sha256 == read.file_sha256


@pytest.mark.parametrize("fmt, mode, step", [("BMP", "RGB", "BMP format -> PNG"), ("PNG", "1", "bilevel -> L"),
                                             ("PNG", "LA", "alpha composited"), ("PNG", "P", "P -> RGB"),
                                             ("TIFF", "CMYK", "CMYK -> RGB")])
def test_other_encodings_are_reencoded_and_say_how(tmp_path, fmt, mode, step):
    path = save(Image.open(BUSI_IMAGE).convert(mode), tmp_path / f"x.{fmt.lower()}", fmt)
    read = read_image(path, path.name)
    assert read.media.ext == "png" and read.pixels.mode in ("L", "RGB")
    note = read.media.normalisation
    assert note["stored"] == "re-encoded" and any(step in s for s in note["steps"]), note
    decoded = Image.open(io.BytesIO(read.media.data))
    assert decoded.tobytes() == read.pixels.tobytes()  # the stored PNG holds exactly the pixels


def test_sixteen_bit_colour_png_is_reduced(tmp_path):
    rgb16 = np.full((2, 2, 3), 0xABCD, dtype=">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    path = tmp_path / "c16.png"
    path.write_bytes(raw_png(2, 2, 16, 2, rows))
    read = read_image(path, path.name)
    assert read.media.normalisation["stored"] == "re-encoded"
    assert np.asarray(read.pixels).max() == 0xAB  # the high byte, as Pillow reads it


def test_decoded_pixels_sign_like_the_stored_bytes(tmp_path):
    """The dedup signature is taken from the pixels of the one decode at read time: it must
    equal the signature of the stored bytes decoded again, for every encoding."""
    for name, variant in VARIANTS.items():
        path = tmp_path / f"{name}.png"
        variant.write_image(Image.open(BUSI_IMAGE), path)
        read = read_image(path, path.name)
        assert read.media.pixels is read.pixels
        again = decode_image(read.media.data, name)
        assert signature(read.pixels) == signature(again), name


def test_too_large_is_refused_from_the_header_naming_the_file(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(raw_png(20000, 20000, 8, 0, b"\x00" * 10))  # 400 Mpixel header, no pixels
    with pytest.raises(Rejected) as e:
        read_image(bomb, "benign/bomb.png")
    assert e.value.reason == "too_large" and e.value.path == "benign/bomb.png" and "400000000" in e.value.detail
    with pytest.raises(Rejected, match="too_large"):
        read_image(BUSI_IMAGE, "x.png", ImageLimits(max_pixels=1000))
    # a limit above Pillow's own is honoured (Pillow alone would refuse this header)
    with pytest.raises(Rejected) as e:
        read_image(bomb, "bomb.png", ImageLimits(max_pixels=10**9))
    assert e.value.reason in ("truncated_image", "corrupt_image")


@pytest.mark.parametrize("encode", ["0/1", "0/255", "16-bit", "RGB one channel", "RGBA", "palette"])
def test_any_non_zero_mask_pixel_is_foreground(tmp_path, encode):
    truth = np.zeros((12, 10), bool)
    truth[3:7, 2:5] = True
    u8 = truth.astype(np.uint8)
    im = {
        "0/1": lambda: Image.fromarray(u8, "L"),
        "0/255": lambda: Image.fromarray(u8 * 255, "L"),
        "16-bit": lambda: Image.fromarray(u8.astype(np.uint16) * 1000),
        "RGB one channel": lambda: Image.fromarray(np.dstack([0 * u8, u8 * 40, 0 * u8]), "RGB"),
        # colour everywhere, but transparent outside the lesion: alpha composited on black first
        "RGBA": lambda: Image.fromarray(np.dstack([u8 * 0 + 255, u8 * 0 + 255, u8 * 0 + 255, u8 * 255]), "RGBA"),
        "palette": lambda: _palette_mask(u8),
    }[encode]()
    path = save(im, tmp_path / "m.png")
    assert np.array_equal(mask_foreground(Image.open(path), lossy=False), truth)


def _palette_mask(u8: np.ndarray) -> Image.Image:
    p = Image.frombytes("P", (u8.shape[1], u8.shape[0]), u8.tobytes())
    p.putpalette([0, 0, 0, 255, 255, 255])
    return p


def test_lossy_mask_threshold(tmp_path):
    truth = np.zeros((64, 64), bool)
    truth[20:44, 16:40] = True
    path = save(Image.fromarray(truth.astype(np.uint8) * 255, "L"), tmp_path / "m.jpg", "JPEG", quality=75)
    im = Image.open(path)
    ringing = np.asarray(im)[~truth]
    assert ringing.max() > 0  # the JPEG did ring: "any non-zero" would grow the lesion
    image = read_image(save(Image.new("L", (64, 64), 90), tmp_path / "i.png"), "i.png")
    fg, _ = read_mask(path, "m.jpg", image)
    assert np.array_equal(fg, truth)


def _rotated_pair(tmp_path: Path, mask_tag: bool) -> tuple[Path, Path, np.ndarray]:
    """A 40x30 image stored turned (30x40, EXIF 6) and its mask drawn on the stored pixels."""
    shown = Image.open(BUSI_IMAGE).convert("L").crop((0, 0, 40, 30))
    truth = np.zeros((30, 40), bool)
    truth[5:12, 25:38] = True  # upper right, as displayed
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    image = save(shown.transpose(Image.Transpose.ROTATE_90), tmp_path / "i.png", exif=exif.tobytes())
    mask_im = Image.fromarray(truth.astype(np.uint8) * 255, "L").transpose(Image.Transpose.ROTATE_90)
    mask = save(mask_im, tmp_path / "m.png", **({"exif": exif.tobytes()} if mask_tag else {}))
    return image, mask, truth


@pytest.mark.parametrize("mask_tag", [False, True])
def test_exif_orientation_turns_image_and_masks_alike(tmp_path, mask_tag):
    image_path, mask_path, truth = _rotated_pair(tmp_path, mask_tag)
    image = read_image(image_path, "i.png")
    assert image.pixels.size == (40, 30) and image.orientation == 6
    assert any("EXIF orientation 6" in s for s in image.media.normalisation["steps"])
    assert Image.open(io.BytesIO(image.media.data)).size == (40, 30)  # delivered as displayed
    fg, _ = read_mask(mask_path, "m.png", image)
    assert np.array_equal(fg, truth)


def test_mask_in_the_wrong_frame_is_refused_with_a_hint(tmp_path):
    image_path, _, truth = _rotated_pair(tmp_path, mask_tag=False)
    displayed = save(Image.fromarray(truth.astype(np.uint8) * 255, "L"), tmp_path / "shown.png")
    with pytest.raises(Rejected) as e:
        read_mask(displayed, "shown.png", read_image(image_path, "i.png"))
    assert e.value.reason == "mask_size_mismatch" and e.value.path == "shown.png"
    assert "EXIF 6" in e.value.detail and "as stored is 40x30" in e.value.detail


def test_max_side_downsizes_image_and_masks_together(tmp_path):
    truth = np.zeros((256, 256), bool)
    truth[64:128, 32:160] = True
    mask_path = save(Image.fromarray(truth.astype(np.uint8), "L"), tmp_path / "m.png")
    image = read_image(BUSI_IMAGE, "i.png", ImageLimits(max_side=100))
    assert image.pixels.size == (100, 100) and image.media.width == 100
    assert any("max_side 100" in s for s in image.media.normalisation["steps"])
    fg, _ = read_mask(mask_path, "m.png", image, ImageLimits(max_side=100))
    assert fg.shape == (100, 100)
    rows, cols = np.nonzero(fg)
    box = np.array([rows.min(), rows.max() + 1, cols.min(), cols.max() + 1])
    assert np.abs(box - np.array([64, 128, 32, 160]) * 100 / 256).max() <= 0.5  # the box, scaled by 100/256
    with pytest.raises(ValueError, match="max_side"):
        ImageLimits.from_options("busi", {"max_side": 0})
