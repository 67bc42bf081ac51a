"""Image normalisation, each stated rule pinned where test_normalise.py shows it by example: the
size options and their refusals, ``max_side`` rounding (a property over random sizes), every EXIF
orientation against its definition, the deep-grey rules at their edges, alpha rounding, the steps
and notes a sample's provenance records, and colour-coded masks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from busi_variants import ORIENTATION, raw_png
from datakit.errors import Rejected
from datakit.normalise import (
    DEFAULT_MAX_PIXELS,
    LOSSY_MASK_THRESHOLD,
    ImageLimits,
    apply_orientation,
    composite_on_black,
    grey_to_8bit,
    mask_foreground,
    normalise_image_bytes,
    orientation_of,
    read_colour_mask,
    read_image,
    read_mask,
    to_8bit_mode,
)


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def exif_bytes(value: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = value
    return exif.tobytes()


GRID = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20  # asymmetric: every turn is visible


# ---------------------------------------------------------------- size options


def test_size_options_and_their_refusals():
    assert ImageLimits.from_options("s", {}) == ImageLimits(max_pixels=DEFAULT_MAX_PIXELS, max_side=None)
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS == 89_478_485
    assert ImageLimits.from_options("s", {"max_pixels": 1, "max_side": 1}) == ImageLimits(1, 1)
    for bad in (0, -3, True, 2.5, "9"):
        with pytest.raises(ValueError) as e:
            ImageLimits.from_options("busi", {"max_pixels": bad})
        assert str(e.value) == f"source busi: option max_pixels must be a positive integer, got {bad!r}"
    for bad in (0, False, True, 1.5, "64"):
        with pytest.raises(ValueError) as e:
            ImageLimits.from_options("busi", {"max_side": bad})
        assert str(e.value) == f"source busi: option max_side must be a positive integer or null, got {bad!r}"


@settings(max_examples=150)
@given(w=st.integers(1, 5000), h=st.integers(1, 5000), side=st.integers(1, 3000))
def test_max_side_scales_the_longer_side_to_it_keeping_the_aspect(w, h, side):
    got = ImageLimits(max_side=side).target_size((w, h))
    if max(w, h) <= side:
        assert got == (w, h)
    else:
        scale = side / max(w, h)
        assert got == (max(1, round(w * scale)), max(1, round(h * scale)))
        assert max(got) == side and min(got) >= 1
    assert ImageLimits().target_size((w, h)) == (w, h)


def test_max_side_edges():
    assert ImageLimits(max_side=10).target_size((10, 4)) == (10, 4)  # at the limit: unchanged
    assert ImageLimits(max_side=10).target_size((1000, 3)) == (10, 1)  # never a zero side
    assert ImageLimits(max_side=10).target_size((11, 5)) == (10, 5)  # 4.545... rounds to 5


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("value,turn", [
    (2, np.fliplr), (3, lambda a: np.rot90(a, 2)), (4, np.flipud), (5, lambda a: a.T),
    (6, lambda a: np.rot90(a, -1)), (7, lambda a: np.rot90(a, 2).T), (8, lambda a: np.rot90(a, 1))])
def test_each_exif_orientation_turns_the_stored_pixels_to_the_display_frame(value, turn):
    shown = np.asarray(apply_orientation(Image.fromarray(GRID, "L"), value))
    assert np.array_equal(shown, turn(GRID))
    read = normalise_image_bytes(encode(Image.fromarray(GRID, "L"), exif=exif_bytes(value)), "x.png")
    assert np.array_equal(np.asarray(read.pixels), turn(GRID)) and read.orientation == value
    names = {2: "mirror", 3: "rotate 180", 4: "flip", 5: "transpose", 6: "rotate 90 cw", 7: "transverse",
             8: "rotate 90 ccw"}
    assert read.steps == [f"EXIF orientation {value} ({names[value]}) applied"]
    assert read.oriented_size == read.pixels.size


def test_no_or_unknown_orientation_is_none():
    im = Image.fromarray(GRID, "L")
    assert apply_orientation(im, 1) is im
    for value in (1, 9, 0):
        tagged = Image.open(io.BytesIO(encode(im, exif=exif_bytes(value))))
        assert orientation_of(tagged) == 1
    assert orientation_of(im) == 1
    broken = Image.open(io.BytesIO(encode(im)))
    broken.info["exif"] = b"Exif\x00\x00garbage"  # a malformed EXIF block: no rotation, no error
    assert orientation_of(broken) == 1


# ---------------------------------------------------------------- deep greys


def test_integers_up_to_eight_bits_in_a_deep_container_are_kept():
    out, rule = grey_to_8bit(Image.fromarray(np.array([[0, 1, 200, 255]], np.uint16)))
    assert np.asarray(out).tolist() == [[0, 1, 200, 255]]
    assert rule == "grey 16-bit -> 8-bit: round(v * 255 / 255) (8 bits used)"


def test_deep_integers_are_rounded_not_truncated():
    out, rule = grey_to_8bit(Image.fromarray(np.array([[9, 8, 2047, 4095]], np.uint16)))
    # 9 * 255 / 4095 = 0.56 -> 1; 8 -> 0.498 -> 0; 2047 -> 127.47 -> 127
    assert np.asarray(out).tolist() == [[1, 0, 127, 255]]
    assert rule == "grey 16-bit -> 8-bit: round(v * 255 / 4095) (12 bits used)"
    out, rule = grey_to_8bit(Image.fromarray(np.array([[0, 65535, 1]], np.int32), "I"))
    assert np.asarray(out).tolist() == [[0, 255, 0]] and "(16 bits used)" in rule
    out, rule = grey_to_8bit(Image.fromarray(np.array([[0, 257 * 3, 65535]], np.uint16)))
    assert np.asarray(out).tolist() == [[0, 3, 255]] and rule == "grey 16-bit -> 8-bit: v / 257 (8-bit data)"


def test_integral_floats_take_the_integer_rules_and_others_min_max():
    out, rule = grey_to_8bit(Image.fromarray(np.array([[0.0, 1024.0, 4095.0]], np.float32), "F"))
    assert np.asarray(out).tolist() == [[0, 64, 255]] and "12 bits" in rule
    out, rule = grey_to_8bit(Image.fromarray(np.array([[0.5, 1.0, 1.5]], np.float32), "F"))
    assert np.asarray(out).tolist() == [[0, 128, 255]] and rule == "grey F -> 8-bit: min-max 0.5..1.5 -> 0..255"
    out, rule = grey_to_8bit(Image.fromarray(np.array([[0, 65536]], np.int32), "I"))  # above 16 bits
    assert np.asarray(out).tolist() == [[0, 255]] and rule == "grey I -> 8-bit: min-max 0..65536 -> 0..255"
    out, rule = grey_to_8bit(Image.fromarray(np.array([[-1, 0, 2]], np.int32), "I"))  # negative
    assert np.asarray(out).tolist() == [[0, 85, 255]] and "min-max -1..2" in rule
    flat, rule = grey_to_8bit(Image.fromarray(np.full((2, 2), -7.25, np.float32), "F"))
    assert not np.asarray(flat).any() and flat.mode == "L" and "min-max -7.25..-7.25" in rule


# ---------------------------------------------------------------- alpha, modes, steps


def test_alpha_rounds_half_up_and_every_alpha_mode_is_composited():
    rgba = Image.fromarray(np.array([[[1, 1, 1, 127], [1, 1, 1, 128], [255, 0, 0, 255]]], np.uint8), "RGBA")
    assert np.asarray(composite_on_black(rgba)).tolist() == [[[0, 0, 0], [1, 1, 1], [255, 0, 0]]]
    la = Image.fromarray(np.array([[[3, 85], [200, 0]]], np.uint8), "LA")  # 3 * 85 / 255 = 1
    for im in (la, la.convert("La")):
        out = composite_on_black(im)
        assert out.mode == "L" and np.asarray(out).tolist() == [[1, 0]]
    palette = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    palette.putpalette([10, 20, 30, 40, 50, 60])
    palette.info["transparency"] = 0
    steps = to_8bit_mode(palette, "PNG", b"")[1]
    assert steps == ["P: alpha composited on black"]
    assert np.asarray(to_8bit_mode(palette, "PNG", b"")[0]).tolist() == [[[0, 0, 0], [40, 50, 60]]]
    for mode in ("RGBa", "PA"):
        im = rgba.convert(mode)
        assert to_8bit_mode(im, "PNG", b"")[1] == [f"{mode}: alpha composited on black"]


def test_mode_steps_are_recorded_word_for_word():
    rgb = Image.new("RGB", (2, 2), (1, 2, 3))
    assert to_8bit_mode(rgb, "PNG", encode(rgb)) == (rgb, [])
    assert to_8bit_mode(Image.new("L", (2, 2)), "JPEG", b"\x89PNG")[1] == []
    assert to_8bit_mode(Image.new("1", (2, 2)), "PNG", b"")[1] == ["bilevel -> L"]
    assert to_8bit_mode(Image.new("CMYK", (2, 2)), "TIFF", b"")[1] == ["CMYK -> RGB"]
    assert to_8bit_mode(Image.new("YCbCr", (2, 2)), "TIFF", b"")[1] == ["YCbCr -> RGB"]
    assert to_8bit_mode(Image.new("I;16", (2, 2)), "PNG", b"")[1] == ["grey 16-bit -> 8-bit: v / 257 (8-bit data)"]
    grey16 = raw_png(2, 1, 16, 0, b"\x00\x12\x34\x56\x78")
    read = normalise_image_bytes(grey16, "g16.png")
    assert read.pixels.mode == "L" and read.steps == ["grey 16-bit -> 8-bit: round(v * 255 / 32767) (15 bits used)"]
    rgb16 = raw_png(1, 1, 16, 2, b"\x00" + b"\xab\xcd" * 3)
    assert normalise_image_bytes(rgb16, "c.png").steps == ["16-bit RGB PNG -> 8-bit (high byte of each sample)"]
    rgb8 = raw_png(1, 1, 8, 2, b"\x00\xab\xcd\xef")
    assert normalise_image_bytes(rgb8, "c8.png").steps == []  # depth read from the IHDR chunk: 8


def test_the_note_says_where_from_and_every_step():
    im = Image.fromarray(np.dstack([GRID] * 3 + [np.full_like(GRID, 255)]), "RGBA")
    read = normalise_image_bytes(encode(im, exif=exif_bytes(3)), "x.png", ImageLimits(max_side=2))
    assert read.steps == ["EXIF orientation 3 (rotate 180) applied", "RGBA: alpha composited on black",
                          "downsized 4x3 -> 2x2 (max_side 2, Lanczos)"]
    assert read.media.normalisation == {"stored": "re-encoded", "from": "PNG RGBA", "steps": read.steps}
    assert read.oriented_size == (4, 3) and read.pixels.size == (2, 2)
    assert (read.media.width, read.media.height, read.media.ext) == (2, 2, "png")
    assert read.media.pixels is read.pixels and Image.open(io.BytesIO(read.media.data)).size == (2, 2)


def test_other_formats_and_frames_are_reencoded_and_named():
    frames = [Image.fromarray(GRID, "L"), Image.fromarray(255 - GRID, "L")]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    read = normalise_image_bytes(buf.getvalue(), "stack.tif")
    assert read.steps == ["first of 2 frames", "TIFF format -> PNG"]
    assert np.array_equal(np.asarray(read.pixels), GRID) and read.media.normalisation["from"] == "TIFF L"
    bmp = normalise_image_bytes(encode(Image.fromarray(GRID, "L"), "BMP"), "x.bmp")
    assert bmp.steps == ["BMP format -> PNG"] and bmp.media.ext == "png"


def test_png_and_jpeg_as_read_keep_their_bytes_and_hash():
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg")):
        data = encode(Image.fromarray(GRID, "L"), fmt)
        read = normalise_image_bytes(data, f"x.{ext}")
        assert read.steps == [] and read.media.data == data and read.media.ext == ext
        assert read.media.sha256 == read.file_sha256 and read.orientation == 1
        assert (read.media.width, read.media.height) == (4, 3)
        assert read.media.normalisation == {"stored": "as_read"}
    with pytest.raises(Rejected) as e:
        normalise_image_bytes(encode(Image.fromarray(GRID, "L")), "data/train.parquet:12", ImageLimits(max_pixels=11))
    assert e.value.reason == "too_large" and e.value.path == "data/train.parquet:12"
    assert normalise_image_bytes(encode(Image.fromarray(GRID, "L")), "x", ImageLimits(max_pixels=12)).steps == []


# ---------------------------------------------------------------- masks


def test_lossy_masks_need_the_threshold_exactly():
    values = np.array([[LOSSY_MASK_THRESHOLD - 1, LOSSY_MASK_THRESHOLD, 1, 0]], np.uint8)
    assert LOSSY_MASK_THRESHOLD == 128
    assert mask_foreground(Image.fromarray(values, "L"), lossy=True).tolist() == [[False, True, False, False]]
    assert mask_foreground(Image.fromarray(values, "L"), lossy=False).tolist() == [[True, True, True, False]]
    cmyk = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (0, 0, 0, 255))  # black ink: RGB (0, 0, 0)
    assert mask_foreground(cmyk, lossy=False).tolist() == [[True, False]]


def _tagged_mask_case(tmp_path, image_tag: int, mask_tag: int, mask_size: tuple[int, int]):
    image_path = tmp_path / "i.png"
    image_path.write_bytes(encode(Image.new("L", (4, 3), 50), exif=exif_bytes(image_tag)))
    mask_path = tmp_path / "m.png"
    mask_path.write_bytes(encode(Image.new("L", mask_size, 255), exif=exif_bytes(mask_tag)))
    return read_image(image_path, "i.png"), mask_path


def test_a_mask_in_another_frame_is_refused_with_its_orientation_named(tmp_path):
    image, mask = _tagged_mask_case(tmp_path, 1, 1, (3, 4))
    with pytest.raises(Rejected) as e:
        read_mask(mask, "m.png", image)
    assert e.value.detail == "mask (3, 4) vs image (4, 3) (width, height)"  # nothing turned: no hint
    image, mask = _tagged_mask_case(tmp_path, 6, 1, (3, 4))  # the image turned by its tag, the mask too
    with pytest.raises(Rejected) as e:
        read_mask(mask, "m.png", image)
    assert e.value.detail == ("mask (4, 3) vs image (3, 4) (width, height); orientation applied: EXIF 6 "
                              "(the image tag), the mask as stored is 3x4")


def test_a_mask_with_its_own_tag_follows_it(tmp_path):
    image, mask = _tagged_mask_case(tmp_path, 1, 6, (3, 4))  # stored turned, tagged: shown 4x3
    fg, sha = read_mask(mask, "m.png", image)
    assert fg.shape == (3, 4) and fg.all() and len(sha) == 64
    image, mask = _tagged_mask_case(tmp_path, 1, 8, (4, 3))
    with pytest.raises(Rejected) as e:
        read_mask(mask, "m.png", image)
    assert e.value.detail.endswith("; orientation applied: EXIF 8 (its own tag), the mask as stored is 4x3")


def test_colour_masks_keep_their_codes(tmp_path):
    image_path = tmp_path / "i.png"
    image_path.write_bytes(encode(Image.new("RGB", (4, 2), (9, 9, 9))))
    image = read_image(image_path, "i.png")
    codes = np.array([[0, 1, 2, 1], [2, 2, 0, 1]], np.uint8)
    palette = Image.fromarray(codes, "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    cases = {
        "palette": (palette, np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)[codes]),
        "grey": (Image.fromarray(codes * 100, "L"), np.dstack([codes * 100] * 3)),
        "deep": (Image.fromarray(codes.astype(np.uint16) * 257 * 100), np.dstack([codes * 100] * 3)),
        "rgba": (Image.fromarray(np.dstack([codes * 100] * 3 + [np.full_like(codes, 255)]), "RGBA"),
                 np.dstack([codes * 100] * 3)),
        "rgb": (Image.fromarray(np.dstack([codes, codes * 2, codes * 3]), "RGB"), np.dstack([codes, codes * 2, codes * 3])),
    }
    for name, (im, want) in cases.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(encode(im))
        got, sha = read_colour_mask(path, f"{name}.png", image)
        assert got.dtype == np.uint8 and got.shape == (2, 4, 3) and got.flags.c_contiguous, name
        assert np.array_equal(got, want), name
    # downsized with its image: the nearest code, never a blend
    big = tmp_path / "big.png"
    big.write_bytes(encode(Image.fromarray(np.kron(codes, np.ones((4, 4), np.uint8)) * 100, "L")))
    image_big = tmp_path / "ib.png"
    image_big.write_bytes(encode(Image.new("RGB", (16, 8))))
    small = read_image(image_big, "ib.png", ImageLimits(max_side=4))
    got, _ = read_colour_mask(big, "big.png", small, ImageLimits(max_side=4))
    assert got.shape == (2, 4, 3) and set(np.unique(got)) <= {0, 100, 200}
