"""The optional DALI tile path (CPU pipeline) against the PIL path.

Decoding matched PIL bit for bit on the bundled PNGs and JPEGs; DALI's antialiased bicubic resize is not PIL's to
the bit, so the uint8 tiles are compared in grey levels per image:
mean |difference| <= 0.5 level, 99.9th percentile <= 6 levels, max <= 16 levels. Measured on the
images below (bundled ultrasound sources, synthetic PNG and JPEG), 1 to 12 tiles: worst image
mean 0.21, p99.9 4.0, max 10.0 levels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from megatron.energon import SkipSample
from PIL import Image

pytest.importorskip("nvidia.dali", reason="skipped only because DALI is not installed "
                                          "(pip install nvidia-dali-cuda120)")

from datakit.energon_format import FlemingVQASample  # noqa: E402
from megatron_fleming.data.dali_decode import DaliTileDecoder  # noqa: E402
from megatron_fleming.data.decode import CorruptImageError, PilTileDecoder, image_size  # noqa: E402
from megatron_fleming.data.task_encoder import FlemingTaskEncoder, TaskEncoderConfig  # noqa: E402
from megatron_fleming.data.tiling import TilingConfig, plan_tiles  # noqa: E402
from megatron_fleming.data.tokenizer import train_tiny_tokenizer  # noqa: E402

SOURCES = Path(__file__).resolve().parents[2] / "datakit" / "sample_sources"
MEAN_LEVELS, P999_LEVELS, MAX_LEVELS = 0.5, 6.0, 16.0


def _synthetic(w: int, h: int, fmt: str, seed: int) -> bytes:
    """A smooth gradient with blobs and mild noise: upscaled and downscaled paths both."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0) + rng.normal(0, 8, (h, w))
    rgb = np.stack([base, base * 0.8 + 20, 255 - base], -1).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _media() -> list[bytes]:
    real = [p.read_bytes() for p in sorted(SOURCES.rglob("*"))
            if p.suffix in (".png", ".jpg") and "mask" not in p.name and "annotations" not in p.parts]
    return real[::6] + [_synthetic(1000, 600, "PNG", 0), _synthetic(700, 300, "JPEG", 1)]


def _levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of uint8 tiles, in grey levels."""
    assert a.dtype == b.dtype == torch.uint8
    return (a.float() - b.float()).abs()


def test_dali_tiles_match_pil_within_tolerance():
    media = _media()
    assert len(media) >= 5
    pil, dali = PilTileDecoder(448), DaliTileDecoder(448, max_images=4)
    for max_tiles in (1, 6):
        plans = [plan_tiles(*image_size(m), TilingConfig(max_tiles=max_tiles)) for m in media]
        a, b = pil(media, plans), dali(media, plans)  # 4 images per DALI run: chunks too
        assert a.shape == b.shape == (sum(p.num_tiles for p in plans), 3, 448, 448)
        start = 0
        for plan in plans:
            d = _levels(a[start:start + plan.num_tiles], b[start:start + plan.num_tiles])
            start += plan.num_tiles
            assert d.mean() <= MEAN_LEVELS, (plan, d.mean())
            sample = d.flatten()[::7]
            assert sample.kthvalue(int(0.999 * sample.numel())).values <= P999_LEVELS, plan
            assert d.max() <= MAX_LEVELS, (plan, d.max())
    assert any(p.num_tiles > 1 for p in plans)


def test_task_encoder_selects_dali_and_counts_its_corrupt_images():
    tok = train_tiny_tokenizer(["What is seen? a lesion", "user assistant system"], vocab_size=300)
    good, bad = _synthetic(900, 450, "PNG", 3), b"\x89PNG\r\n\x1a\n" + bytes(200)
    conv = [{"from": "human", "value": "<image>\nWhat is seen?"}, {"from": "gpt", "value": "a lesion"}]

    def sample(images):
        return FlemingVQASample(__key__="k", __restore_key__=(), images=images, conversation=conv,
                                meta={"modality": "ultrasound"})

    encoders = {name: FlemingTaskEncoder(tok, TaskEncoderConfig(decoder=name)) for name in ("pil", "dali")}
    out = {name: te.postencode_sample(te.preencode_sample(sample([good]))) for name, te in encoders.items()}
    assert out["dali"].pixel_values.shape == out["pil"].pixel_values.shape == (3, 3, 448, 448)
    assert _levels(out["dali"].pixel_values, out["pil"].pixel_values).mean() <= MEAN_LEVELS
    te = encoders["dali"]
    # a valid header with broken pixels passes planning and fails in DALI's decode
    broken = good[:60] + bytes(400)
    encoded = te.preencode_sample(sample([broken]))
    with pytest.raises(SkipSample):
        te.postencode_sample(encoded)
    assert te.skips.totals["corrupt_image"] == 1
    # the decoder recovers after a failed run
    again = te.postencode_sample(te.preencode_sample(sample([good])))
    assert torch.equal(again.pixel_values, out["dali"].pixel_values)
    with pytest.raises(CorruptImageError):
        DaliTileDecoder(448)([bad], [plan_tiles(448, 448, TilingConfig())])
