"""Test material for the dedup tests: procedural distinct images, the real BUSI images bundled with
datakit, and the copy operations a duplicate goes through in the wild."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from datakit.dedup.image_hash import ImageSignature, signature
from datakit.dedup.summary import SampleSummary

BUSI = Path(__file__).resolve().parents[3] / "datakit" / "sample_sources" / "Dataset_BUSI_with_GT"
FAMILIES = 6


def distinct_image(seed: int, size: int = 128) -> Image.Image:
    """One of six families (shapes, smooth fields, gratings, ultrasound-like fans with visible
    anatomy, radiograph-like, cell-like), every parameter drawn from ``seed``. Fans with nothing
    but speckle inside the same outline are left out on purpose: 64 + 144 low-frequency bits
    see only the outline, so such frames can pair (a known limit of perceptual hashing)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    family = seed % FAMILIES
    if family == 0:
        im = Image.new("L", (size, size), int(rng.integers(0, 90)))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = (int(v) for v in rng.integers(0, size - 30, 2))
            w, h = (int(v) for v in rng.integers(15, size // 2, 2))
            shape = d.ellipse if rng.random() < 0.5 else d.rectangle
            shape([x0, y0, x0 + w, y0 + h], fill=int(rng.integers(60, 256)))
        a = np.asarray(im.filter(ImageFilter.GaussianBlur(1.5)), dtype=float) + rng.normal(0, 6, (size, size))
    elif family == 1:
        coarse = Image.fromarray(rng.normal(0, 1, (6, 6)).astype(np.float32), "F")
        a = np.asarray(coarse.resize((size, size), Image.BICUBIC)) + 0.2 * rng.normal(0, 1, (size, size))
    elif family == 2:
        a = sum(rng.uniform(0.3, 1) * np.sin(2 * np.pi * (rng.uniform(0.5, 5) * x + rng.uniform(0.5, 5) * y) + rng.uniform(0, 6.3))
                for _ in range(3))
        a = a + 0.3 * rng.normal(0, 1, (size, size))
    elif family == 3:
        apex = rng.uniform(0.3, 0.7)
        r, ang = np.hypot(x - apex, y + rng.uniform(0, 0.2)), np.arctan2(x - apex, y + 0.1)
        fan = (r < rng.uniform(0.7, 1.1)) & (np.abs(ang) < rng.uniform(0.4, 0.9))
        anatomy = sum(rng.choice([-1, 1]) * rng.uniform(0.6, 1.2) * np.exp(-((x - rng.uniform(0.2, 0.8)) ** 2 + (y - rng.uniform(0.2, 0.9)) ** 2) / rng.uniform(0.005, 0.05))
                      for _ in range(4))
        a = fan * (1.5 + anatomy) * rng.rayleigh(1, (size, size))
    elif family == 4:
        body = np.exp(-(((x - 0.5) / rng.uniform(0.3, 0.45)) ** 2 + ((y - 0.55) / rng.uniform(0.35, 0.5)) ** 2))
        lungs = sum(np.exp(-(((x - cx) / 0.12) ** 2 + ((y - cy) / 0.22) ** 2))
                    for cx, cy in ((rng.uniform(0.25, 0.4), rng.uniform(0.4, 0.6)), (rng.uniform(0.6, 0.75), rng.uniform(0.4, 0.6))))
        ribs = 0.1 * np.sin(2 * np.pi * rng.uniform(5, 9) * y + rng.uniform(0, 6.3))
        a = body - 0.6 * lungs + ribs * body + 0.05 * rng.normal(0, 1, (size, size))
    else:
        im = Image.new("L", (size, size), int(rng.integers(150, 230)))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(10, 40))):
            cx, cy = (int(v) for v in rng.integers(0, size, 2))
            rad = int(rng.integers(3, 14))
            d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=int(rng.integers(20, 140)))
        a = np.asarray(im.filter(ImageFilter.GaussianBlur(1)), dtype=float) + rng.normal(0, 5, (size, size))
    a = (a - a.min()) / (np.ptp(a) + 1e-9) * 255
    return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")


def busi_images() -> list[Image.Image]:
    """The 15 real BUSI images bundled with datakit (empty if that folder is absent)."""
    paths = sorted(p for p in BUSI.glob("*/*.png") if "_mask" not in p.name) if BUSI.is_dir() else []
    return [Image.open(p).convert("RGB") for p in paths]


def reencode(im: Image.Image, fmt: str, **opts) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **opts)
    out = Image.open(io.BytesIO(buf.getvalue()))
    out.load()
    return out


def jpeg85(im: Image.Image) -> Image.Image:
    return reencode(im.convert("RGB"), "JPEG", quality=85)


def resize90(im: Image.Image) -> Image.Image:
    return im.resize((round(im.width * 0.9), round(im.height * 0.9)), Image.LANCZOS)


def crop3_each_side(im: Image.Image) -> Image.Image:
    dx, dy = round(im.width * 0.03), round(im.height * 0.03)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


def crop3_offset(im: Image.Image, seed: int) -> Image.Image:
    """3% of each axis removed, split at random between the two sides."""
    rng = np.random.default_rng(seed)
    fx, fy = rng.uniform(0, 0.03, 2)
    w, h = im.size
    return im.crop((round(w * fx), round(h * fy), round(w * (0.97 + fx)), round(h * (0.97 + fy))))


def png_level(im: Image.Image, level: int) -> Image.Image:
    return reencode(im, "PNG", compress_level=level)


def media_sha(im: Image.Image) -> str:
    """A stand-in for ``Media.sha256``: distinct per image object content and mode."""
    return hashlib.sha256(im.tobytes() + im.mode.encode() + repr(im.size).encode()).hexdigest()


def summaries_for(source: str, rid: str, images: list[Image.Image], sigs: dict[str, ImageSignature],
                  text: str = "Describe the image.", question_type: str = "caption",
                  tasks: tuple[str, ...] = ("caption",)) -> list[SampleSummary]:
    """EN + ZH samples of one record (one group per task), registering its image signatures."""
    shas = []
    for im in images:
        h = media_sha(im)
        sigs[h] = signature(im)
        shas.append(h)
    out = []
    for task in tasks:
        group = f"{source}-{rid}-{task}"
        for lang in ("en", "zh"):
            out.append(SampleSummary(key=f"{group}-{lang}", group=group, source=source, record_uid=f"{source}:{rid}",
                                     lang=lang, question_type=question_type, task=task,
                                     text=text if lang == "en" else f"{text} 中文", media_sha256=tuple(shas)))
    return out
