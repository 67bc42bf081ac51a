"""Write the bundled sample sources (``datakit/sample_sources/``), deterministically.

Run once by hand; its output is committed and is never regenerated at build time::

    .venv/bin/python scripts/make_sample_sources.py --busi-real PATH/TO/Dataset_BUSI_with_GT [--out DIR]

What it writes, each dataset in its released top-folder layout:

* ``Dataset_BUSI_with_GT/``: the 15 real BUSI images of ``--busi-real`` copied byte for byte,
  plus synthetic lesion masks (the copies came without masks): a smooth ellipse on a dark
  (hypoechoic) spot for benign, an irregular lobulated blob for malignant, an empty mask for
  normal. ``benign (25)`` gets ``_mask.png`` and ``_mask_1.png`` marking two separate lesions, as
  its real release does.
* ``abdominal_US/abdominal_US/{AUS,RUS}/...``: synthetic speckle images with RGB organ-code masks
  (AUS PNG with (10,10,10) background tissue, one mask with an alpha channel; RUS JPEG) and one
  AUS image released without annotation.
* ``Annotated_Ultrasound_Liver/{Benign,Malignant,Normal}/...``: synthetic liver scans (RGB JPEG)
  with outline/liver/mass JSON polygons; Normal has no mass polygon.

Every random draw comes from a ``numpy`` generator seeded by the file's name, and PNG/JPEG are
written with fixed settings, so a rerun with the same Pillow/zlib/libjpeg gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "datakit" / "sample_sources"
SEED = 20250101
PNG = {"format": "PNG", "optimize": False, "compress_level": 9}
JPEG = {"format": "JPEG", "quality": 90, "optimize": False, "progressive": False, "subsampling": 2}


def rng_for(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join((str(SEED),) + parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def blob(
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    rng: np.random.Generator,
    roughness: float = 0.0,
    angle: float = 0.0,
    n: int = 48,
) -> list[tuple[float, float]]:
    """A closed outline: a rotated ellipse whose radius is modulated by low harmonics."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radius = np.ones(n)
    for k in range(2, 7):
        radius += roughness / k * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    x, y = rx * radius * np.cos(theta), ry * radius * np.sin(theta)
    ca, sa = np.cos(angle), np.sin(angle)
    return [
        (float(cx + ca * a - sa * b), float(cy + sa * a + ca * b))
        for a, b in zip(x, y, strict=True)
    ]


def fill(size: tuple[int, int], outline: list[tuple[float, float]]) -> np.ndarray:
    canvas = Image.new("L", size, 0)
    ImageDraw.Draw(canvas).polygon(outline, fill=1, outline=1)
    return np.asarray(canvas).astype(bool)


def fan(
    width: int, height: int, half_angle: float = 0.6, apex_y: float = -12.0
) -> list[tuple[float, float]]:
    """The sector-shaped field of view of a curvilinear probe, as a polygon inside the image."""
    cx, r0, r1 = width / 2, 14.0, height - apex_y - 2
    arc = np.linspace(-half_angle, half_angle, 24)
    outer = [(cx + r1 * np.sin(a), apex_y + r1 * np.cos(a)) for a in arc]
    inner = [(cx + r0 * np.sin(a), apex_y + r0 * np.cos(a)) for a in arc[::-1]]
    pts = outer + inner
    return [(float(np.clip(x, 0, width - 1)), float(np.clip(y, 0, height - 1))) for x, y in pts]


def speckle(echo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ultrasound-like texture: echogenicity times Rayleigh speckle, mildly blurred, attenuated."""
    noise = ndimage.gaussian_filter(rng.rayleigh(1.0, echo.shape), 0.9) / 1.25
    depth = np.linspace(1.0, 0.7, echo.shape[0])[:, None]
    return np.clip(echo * noise * depth, 0, 255).astype(np.uint8)


def save(im: Image.Image, path: Path, settings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **settings)


# ---------------------------------------------------------------------------------------- BUSI
def busi(real: Path, out: Path) -> None:
    for src in sorted(real.glob("*/*.png")):
        cls, stem = src.parent.name, src.stem
        dst = out / cls / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        grey = np.asarray(Image.open(src).convert("L"), dtype=np.float64)
        rng = rng_for("busi", cls, stem)
        if cls == "normal":
            lesions = [np.zeros(grey.shape, dtype=bool)]  # the release ships empty normal masks
        else:
            lesions = _busi_lesions(grey, cls, rng, count=2 if stem == "benign (25)" else 1)
        # Whether released masks are 1- or 3-channel is unconfirmed: ship one of each kind.
        mode = "RGB" if stem == "malignant (7)" else "L"
        for k, mask in enumerate(lesions):
            suffix = "_mask" if k == 0 else f"_mask_{k}"
            im = Image.fromarray(mask.astype(np.uint8) * 255, "L").convert(mode)
            save(im, out / cls / f"{stem}{suffix}.png", PNG)


def _busi_lesions(
    grey: np.ndarray, cls: str, rng: np.random.Generator, count: int
) -> list[np.ndarray]:
    """Lesions on the most hypoechoic spots (darker than their surroundings), apart from each other.

    Each spot is grown into the dark region around it; an ellipse fitted to that region's moments
    (smooth for benign, lobulated for malignant) becomes the mask, so masks sit on real-looking
    lesions of the real image instead of at random.
    """
    h, w = grey.shape
    s = ndimage.gaussian_filter(grey, 2.0)
    near, far = ndimage.uniform_filter(s, 15), ndimage.uniform_filter(s, 61)
    contrast = near - far
    allowed = np.zeros((h, w), dtype=bool)
    allowed[h // 10 : h * 3 // 4, w // 10 : w * 9 // 10] = True
    masks: list[np.ndarray] = []
    for _ in range(count):
        cy, cx = np.unravel_index(np.argmin(np.where(allowed, contrast, np.inf)), contrast.shape)
        labels, _ = ndimage.label((s < near[cy, cx] + 0.4 * (far[cy, cx] - near[cy, cx])) & allowed)
        yy, xx = np.ogrid[:h, :w]
        near_seed = (yy - cy) ** 2 + (xx - cx) ** 2 <= 28**2  # a lesion, not a whole dark band
        region = (labels == labels[cy, cx]) & near_seed & (labels[cy, cx] > 0)
        if 60 <= region.sum() <= 0.12 * h * w:
            ys, xs = np.nonzero(region)
            cov = np.cov(np.stack([xs, ys]).astype(np.float64))
            evals, evecs = np.linalg.eigh(cov)
            ry, rx = np.sqrt(np.maximum(evals, 1.0)) * 2.0
            angle = float(np.arctan2(evecs[1, 1], evecs[0, 1]))
            cx, cy = xs.mean(), ys.mean()
        else:
            rx, ry, angle = rng.uniform(14, 26), rng.uniform(10, 18), rng.uniform(-0.3, 0.3)
        if cls == "benign":
            outline = blob(cx, cy, rx, ry, rng, roughness=0.08, angle=angle)
        else:
            outline = blob(cx, cy, rx * 1.1, ry * 1.1, rng, roughness=0.45, angle=angle, n=72)
        mask = fill((w, h), outline) & allowed
        masks.append(mask)
        allowed &= ~ndimage.binary_dilation(mask, iterations=4)  # the next lesion stays separate
    return masks


# ------------------------------------------------------------------------------------ AbdomenUS
ORGANS = {
    "liver": ((100, 0, 100), 115.0),
    "kidney": ((255, 255, 0), 80.0),
    "pancreas": ((0, 0, 255), 125.0),
    "vessels": ((255, 0, 0), 18.0),
    "adrenals": ((0, 255, 255), 95.0),
    "gallbladder": ((0, 255, 0), 12.0),
    "bones": ((255, 255, 255), 230.0),
    "spleen": ((255, 0, 255), 105.0),
}
# (domain, split, stem, organs drawn; None = released without annotation, mask mode)
ABDOMEN = [
    ("AUS", "train", "aus_0001", ("liver", "kidney", "vessels", "bones"), "RGB"),
    ("AUS", "train", "aus_0002", ("liver", "gallbladder", "pancreas"), "RGBA"),
    ("AUS", "train", "aus_0003", None, "RGB"),
    ("AUS", "test", "aus_0101", ("spleen", "kidney", "adrenals", "bones"), "RGB"),
    ("RUS", "train", "rus_0001", ("liver", "kidney"), "RGB"),
    ("RUS", "test", "rus_0101", ("liver", "gallbladder", "vessels"), "RGB"),
]
# Where each organ sits in a 128x128 frame: centre, radii, roughness.
PLACES = {
    "liver": ((50, 52), (38, 26), 0.15),
    "kidney": ((88, 84), (17, 10), 0.05),
    "pancreas": ((84, 48), (20, 7), 0.2),
    "vessels": ((62, 96), (16, 4), 0.0),
    "adrenals": ((70, 62), (8, 5), 0.1),
    "gallbladder": ((82, 56), (11, 7), 0.05),
    "bones": ((64, 116), (30, 5), 0.0),
    "spleen": ((46, 60), (30, 20), 0.1),
}


def abdomen(out: Path, size: int = 128) -> None:
    base = out / "abdominal_US"
    for domain, split, stem, organs, mask_mode in ABDOMEN:
        rng = rng_for("abdomen_us", domain, split, stem)
        view = fill((size, size), fan(size, size))
        mask = np.zeros((size, size, 3), dtype=np.uint8)
        if domain == "AUS":
            mask[view] = (10, 10, 10)  # background tissue exists only in simulated masks
        echo = np.where(view, 90.0, 0.0)
        for organ in organs or ("liver", "kidney"):
            (cx, cy), (rx, ry), rough = PLACES[organ]
            shape = (
                fill(
                    (size, size),
                    blob(
                        cx + rng.uniform(-4, 4),
                        cy + rng.uniform(-4, 4),
                        rx,
                        ry,
                        rng,
                        roughness=rough,
                        angle=rng.uniform(-0.4, 0.4),
                    ),
                )
                & view
            )
            colour, level = ORGANS[organ]
            mask[shape] = colour
            echo[shape] = level
        pixels = speckle(echo, rng)
        if domain == "AUS":
            save(
                Image.fromarray(pixels, "L"), base / domain / "images" / split / f"{stem}.png", PNG
            )
        else:
            save(
                Image.fromarray(pixels, "L").convert("RGB"),
                base / domain / "images" / split / f"{stem}.jpg",
                JPEG,
            )
        if organs is not None:
            save(
                Image.fromarray(mask, "RGB").convert(mask_mode),
                base / domain / "annotations" / split / f"{stem}.png",
                PNG,
            )


# ------------------------------------------------------------------------------------------ AUL
AUL = [
    ("Benign", "1"),
    ("Benign", "2"),
    ("Malignant", "1"),
    ("Malignant", "3"),
    ("Normal", "2"),
    ("Normal", "5"),
]


def aul(out: Path, width: int = 200, height: int = 150) -> None:
    for cls, n in AUL:
        rng = rng_for("aul", cls, n)
        outline = fan(width, height, half_angle=0.75)
        liver = blob(
            width * 0.5 + rng.uniform(-8, 8),
            height * 0.5,
            width * 0.3,
            height * 0.3,
            rng,
            roughness=0.12,
        )
        polygons = {"outline": outline, "liver": liver}
        view, liver_px = fill((width, height), outline), fill((width, height), liver)
        echo = np.where(view, 70.0, 0.0)
        echo[liver_px & view] = 110.0
        if cls != "Normal":
            cx, cy = width * 0.5 + rng.uniform(-15, 15), height * 0.5 + rng.uniform(-8, 8)
            if cls == "Benign":
                mass = blob(cx, cy, rng.uniform(10, 14), rng.uniform(8, 11), rng, roughness=0.05)
            else:
                mass = blob(
                    cx, cy, rng.uniform(15, 20), rng.uniform(12, 16), rng, roughness=0.5, n=64
                )
            polygons["mass"] = mass
            echo[fill((width, height), mass)] = 45.0 if cls == "Benign" else 150.0
        pixels = speckle(echo, rng)
        save(Image.fromarray(pixels, "L").convert("RGB"), out / cls / "image" / f"{n}.jpg", JPEG)
        for kind, points in polygons.items():
            path = out / cls / "segmentation" / kind / f"{n}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps([[round(x, 1), round(y, 1)] for x, y in points]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busi-real", type=Path, required=True,
                        help="a BUSI copy (Dataset_BUSI_with_GT) holding the 15 images to bundle")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    targets = {
        "Dataset_BUSI_with_GT": lambda d: busi(args.busi_real, d),
        "abdominal_US": abdomen,
        "Annotated_Ultrasound_Liver": aul,
    }
    for top, write in targets.items():
        shutil.rmtree(args.out / top, ignore_errors=True)  # no stale files from an earlier run
        write(args.out / top)
    files = sorted(p for p in args.out.rglob("*") if p.is_file())
    print(
        f"wrote {len(files)} files, {sum(p.stat().st_size for p in files)} bytes under {args.out}"
    )


if __name__ == "__main__":
    main()
