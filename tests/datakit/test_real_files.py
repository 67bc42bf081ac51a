"""Real BUSI images re-encoded the ways real copies come (16-bit, RGBA, palette, EXIF-rotated,
CMYK JPEG named .png, 0/1 masks) give the same training data as the originals: every sample's
question, answers and options are identical, and the pixels energon delivers equal the
original's (exactly where the variant is lossless, within ``TOLERANCE`` for JPEG)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busi_variants import NAMES, TOLERANCE, VARIANTS, originals, write_original, write_variant
from datakit.build import build
from datakit.recipe import load_recipe, parse_recipe
from datakit.shard_writer import iter_samples


def busi_recipe():
    base = load_recipe("ultrasound")
    doc = base.to_dict()
    doc["sources"] = [s for s in doc["sources"] if s["source"] == "busi"]
    doc["val_fraction"] = 0.0  # one split: one energon dataset to load per variant
    return parse_recipe(doc, base.path)


def samples_on_disk(out: Path) -> dict[str, dict[str, bytes]]:
    return {key: parts for tar in sorted(out.glob("*/*.tar")) for key, parts in iter_samples(tar)}


def delivered_by_energon(out: Path) -> dict[str, list[Image.Image]]:
    from megatron.energon import DefaultTaskEncoder, WorkerConfig, get_loader, get_val_dataset
    from megatron.energon.flavors.webdataset.sample_decoder import SampleDecoder

    from datakit.energon_format import COOKERS

    class Encoder(DefaultTaskEncoder):
        cookers = COOKERS
        decoder = SampleDecoder(image_decode="pil")

    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    ds = get_val_dataset(out, split_part="train", worker_config=wc, batch_size=None, task_encoder=Encoder())
    return {s.__key__: s.images for s in get_loader(ds)}


def without_media(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("media", "provenance")}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("original")
    result = build(busi_recipe(), write_original(tmp / "src"), tmp / "out")
    return result.out


def test_originals_are_stored_as_read(original):
    files = {hashlib.sha256(image.read_bytes()).hexdigest() for image, _ in originals().values()}
    docs = [json.loads(p["json"]) for p in samples_on_disk(original).values()]
    assert {d["provenance"]["sha256"] for d in docs} == files
    for doc in docs:
        assert doc["provenance"]["normalisation"] == [{"stored": "as_read"}]
        assert doc["media"][0]["sha256"] == doc["provenance"]["sha256"]  # the file's own bytes


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_gives_the_originals_samples_and_pixels(name, original, tmp_path):
    variant = VARIANTS[name]
    out = build(busi_recipe(), write_variant(tmp_path / "src", variant), tmp_path / "out").out
    want, got = samples_on_disk(original), samples_on_disk(out)
    assert sorted(got) == sorted(want), "a variant lost or gained samples"
    spatial = 0
    for key in want:
        a, b = json.loads(want[key]["json"]), json.loads(got[key]["json"])
        assert without_media(b) == without_media(a), key  # questions, answers, options, boxes
        spatial += sum(t["task"].startswith("lesion_") for t in a["turns"])
        note = b["provenance"]["normalisation"][0]
        if name == "mask01":
            assert note == {"stored": "as_read"}  # only the masks changed
        else:
            assert note["stored"] == "re-encoded" and note["steps"], note
    assert spatial >= 30  # lesion presence/count/location/box/size of six images, both languages

    images = {image.stem: np.asarray(Image.open(image).convert("RGB")) for image, _ in originals().values()}
    delivered = delivered_by_energon(out)
    assert set(delivered) == set(got)
    for key, ims in delivered.items():
        doc = json.loads(got[key]["json"])
        stem = Path(doc["provenance"]["source_file"]).stem
        expected = variant.expected(Image.fromarray(images[stem]))
        pixels = np.asarray(ims[0].convert("RGB")).astype(int)
        assert pixels.shape == expected.shape, key
        diff = np.abs(pixels - expected)
        if variant.lossless:
            assert diff.max() == 0, (key, int(diff.max()))
        else:
            assert diff.mean() <= TOLERANCE["mean"] and diff.max() <= TOLERANCE["max"], (key, diff.mean(), diff.max())


def test_variants_cover_every_name():
    assert len(originals()) == len(NAMES) and all(masks for _, masks in originals().values())
