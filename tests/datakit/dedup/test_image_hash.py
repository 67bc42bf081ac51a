"""Image signatures: exact hash invariances, planted near duplicates found, distinct images kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from datakit.dedup.image_hash import N_VIEWS, ImageSignature, signature
from datakit.dedup.image_index import NearImageConfig, SignatureTable, near_pairs, pair_distances

from dedup_images import (busi_images, crop3_each_side, crop3_offset, distinct_image, jpeg85, png_level, reencode,
                       resize90)


def distance(a: Image.Image, b: Image.Image) -> tuple[int, int]:
    ta, tb = SignatureTable.of([signature(a)]), SignatureTable.of([signature(b)])
    zero = np.zeros(1, np.int64)
    coarse, fine = pair_distances(ta, zero, tb, zero)
    return int(coarse[0]), int(fine[0])


def bases() -> list[Image.Image]:
    """Real BUSI images when bundled, plus procedural ones from every family."""
    return busi_images() + [distinct_image(s) for s in range(1000, 1036)]


def test_exact_hash_ignores_encoding_but_not_pixels() -> None:
    im = distinct_image(7)
    ref = signature(im).exact
    assert signature(png_level(im, 0)).exact == ref
    assert signature(png_level(im, 9)).exact == ref
    assert signature(reencode(im, "BMP")).exact == ref
    assert signature(im.convert("L")).exact == ref, "grey stored as RGB and as L are the same pixels"
    assert signature(im.convert("RGBA")).exact == ref, "an opaque alpha channel changes nothing"
    assert signature(jpeg85(im)).exact != ref
    changed = im.copy()
    changed.putpixel((3, 3), (0, 0, 0) if im.getpixel((3, 3)) != (0, 0, 0) else (1, 1, 1))
    assert signature(changed).exact != ref
    assert signature(im.transpose(Image.Transpose.TRANSPOSE)).exact != ref, "size is part of the hash"


def test_deep_images_keep_precision() -> None:
    arr = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 13) % 4096
    deep = Image.fromarray(arr)
    assert deep.mode.startswith("I;16")
    again = reencode(deep, "PNG", compress_level=9)
    assert signature(again).exact == signature(deep).exact
    shifted = Image.fromarray(arr + 1)
    assert signature(shifted).exact != signature(deep).exact, "a 16-bit change must change the hash"
    assert distance(deep, shifted) == (0, 0), "perceptually the same after min-max scaling"


def test_signature_round_trips_and_validates() -> None:
    sig = signature(distinct_image(3))
    assert ImageSignature.from_dict(json.loads(json.dumps(sig.to_dict()))) == sig
    assert len(sig.coarse) == 8 * N_VIEWS and 0 <= sig.phash < 2**64
    with pytest.raises(ValueError, match="views"):
        ImageSignature(exact="x", coarse=b"\0" * 8, fine=sig.fine, width=1, height=1, flat=False)


def test_flat_images_are_flagged() -> None:
    assert signature(Image.new("L", (64, 64), 0)).flat
    assert signature(Image.new("RGB", (64, 64), (90, 90, 90))).flat
    assert not signature(distinct_image(1)).flat


@pytest.mark.parametrize(
    "copy",
    [jpeg85, resize90, crop3_each_side, lambda im: crop3_offset(im, 5), lambda im: png_level(im, 1),
     lambda im: jpeg85(crop3_offset(resize90(im), 11))],
    ids=["jpeg_q85", "resize_0.9", "crop_3pct_each_side", "crop_3pct_offset", "png_level", "resize_crop_jpeg"],
)
def test_planted_copies_are_found(copy) -> None:
    originals = bases()
    copies = [copy(im) for im in originals]
    table = SignatureTable.of([signature(im) for im in originals + copies])
    i, j, _ = near_pairs(table, None, NearImageConfig())
    found = set(zip(i.tolist(), j.tolist()))
    n = len(originals)
    missed = [k for k in range(n) if (k, k + n) not in found]
    assert not missed, f"copies of {missed} not found"


def test_no_false_positives_among_distinct_images(distinct_set) -> None:
    if not busi_images():
        pytest.skip("datakit/sample_sources/Dataset_BUSI_with_GT is absent: real images not checked")
    table = SignatureTable.of([signature(im) for im in distinct_set])
    i, j, d = near_pairs(table, None, NearImageConfig())
    assert len(i) == 0, f"distinct images paired: {list(zip(i.tolist(), j.tolist(), d.tolist()))[:5]}"


def test_no_false_positives_among_procedural_images(distinct_set) -> None:
    procedural = distinct_set[:300]
    table = SignatureTable.of([signature(im) for im in procedural])
    i, j, _ = near_pairs(table, None, NearImageConfig())
    assert len(i) == 0
