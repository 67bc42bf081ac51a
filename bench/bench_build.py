"""Throughput of ``datakit build ultrasound`` (BUSI part) against the codec floors, same process.

Makes >= 500 BUSI records in the released layout from the bundled real images (each copy
perturbed by one pixel so no two files are identical), then times, on one core:
  * decode floor: PIL decode of every image + mask (what any reader must do at least),
  * codec floor: decode + PNG re-encode of every image (what a pipeline that re-encodes pays),
  * the build itself (plan -> convert -> merge -> energon prepare), workers=1, and its convert
    phase alone (each image decoded once: validation and the dedup signature share the pixels).
Prints records/s and samples/s, and the build's (and convert phase's) ratios to the floors, by
wall-clock and by CPU time (the latter does not move when other processes share the cores).
Usage: python bench/bench_build.py [--records 510] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from datakit.build import SAMPLE_SOURCES, convert_all, plan_build
from datakit.merge import merge
from datakit.recipe import load_recipe, parse_recipe


def make_sources(dst: Path, n_records: int) -> list[Path]:
    """n distinct BUSI records from the 15 real images: each a seeded crop (70-90% of the side)
    of one original under one of the 8 flips/rotations, mask cropped the same way, so that
    dedup (which runs in every build) keeps them apart like distinct scans."""
    src = SAMPLE_SOURCES / "Dataset_BUSI_with_GT"
    rng = np.random.default_rng(0)
    ops = [None, Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM, Image.ROTATE_90, Image.ROTATE_180,
           Image.ROTATE_270, Image.TRANSPOSE, Image.TRANSVERSE]
    files: list[Path] = []
    originals = sorted(p for p in src.glob("*/*.png") if "_mask" not in p.name)
    for i in range(n_records):
        orig = originals[i % len(originals)]
        cls = orig.parent.name
        folder = dst / "Dataset_BUSI_with_GT" / cls
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.open(orig)
        mask = Image.open(orig.with_name(orig.stem + "_mask.png"))
        side = int(im.width * rng.uniform(0.7, 0.9))
        x0, y0 = (int(v) for v in rng.integers(0, im.width - side + 1, size=2))
        box = (x0, y0, x0 + side, y0 + side)
        op = ops[(i // len(originals)) % len(ops)]
        views = [v.crop(box) for v in (im, mask)]
        if op is not None:
            views = [v.transpose(op) for v in views]
        img = folder / f"{cls} ({1000 + i}).png"
        views[0].save(img, compress_level=6)
        views[1].save(folder / f"{cls} ({1000 + i})_mask.png")
        files += [img, folder / f"{cls} ({1000 + i})_mask.png"]
    return files


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (energon's prepare runs one): on a
    shared machine it does not count the time other processes held the core."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Timer:
    """Wall-clock and CPU seconds of a block."""

    def __enter__(self) -> "Timer":
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def decode_floor(files: list[Path]) -> Timer:
    with Timer() as t:
        for f in files:
            Image.open(io.BytesIO(f.read_bytes())).load()
    return t


def codec_floor(files: list[Path]) -> Timer:
    with Timer() as t:
        for f in files:
            im = Image.open(io.BytesIO(f.read_bytes()))
            im.load()
            if "_mask" not in f.name:
                im.save(io.BytesIO(), format="PNG")
    return t


def timed_build(recipe, sources: Path, out: Path):
    """``build`` step by step (plan, convert, merge), timing the whole and the convert phase on
    its own: the per-record reading, normalising, converting and signing the decode floor bounds."""
    with Timer() as whole:
        plan, work = plan_build(recipe, sources, out)
        with Timer() as convert:
            convert_all(plan, work, workers=1)
        result = merge(plan, work, out)
        shutil.rmtree(work, ignore_errors=True)
    return result, whole, convert


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=510)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    base = load_recipe("ultrasound")
    doc = base.to_dict()
    doc["sources"] = [s for s in doc["sources"] if s["source"] == "busi"]
    recipe = parse_recipe(doc, base.path)
    phases = ("decode", "codec", "build", "convert")
    best = {(k, clock): 1e9 for k in phases for clock in ("wall", "cpu")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = make_sources(tmp / "src", args.records)
        images = [f for f in files if "_mask" not in f.name]
        n_samples = 0
        for r in range(args.repeat):
            result, whole, convert = timed_build(recipe, tmp / "src", tmp / f"out{r}")
            timers = {"decode": decode_floor(files), "codec": codec_floor(files), "build": whole, "convert": convert}
            for k, t in timers.items():
                best[k, "wall"] = min(best[k, "wall"], t.wall)
                best[k, "cpu"] = min(best[k, "cpu"], t.cpu)
            acc = result.summary["accounting"]
            n_samples = acc["samples"]["emitted"]
    n = len(images)
    rec = {key: n / v for key, v in best.items()}
    print(f"records={n} samples={n_samples} (one core, best of {args.repeat}); {acc['records']['rejected']} "
          f"records rejected, {acc['records']['duplicate']} dropped by dedup")
    print(f"decode floor : {rec['decode', 'wall']:8.1f} records/s (image + mask decode)")
    print(f"codec floor  : {rec['codec', 'wall']:8.1f} records/s (decode + PNG re-encode)")
    print(f"build        : {rec['build', 'wall']:8.1f} records/s = {n_samples / best['build', 'wall']:.1f} samples/s")
    print(f"  convert    : {rec['convert', 'wall']:8.1f} records/s (read, normalise, convert, sign; no merge)")
    for clock in ("wall", "cpu"):
        what = "wall-clock" if clock == "wall" else "CPU time (steady on a shared machine)"
        print(f"{what}:")
        print(f"  ratio build/codec_floor    = {rec['build', clock] / rec['codec', clock]:.2f}x")
        print(f"  ratio build/decode_floor   = {rec['build', clock] / rec['decode', clock]:.2f}x")
        print(f"  ratio convert/decode_floor = {rec['convert', clock] / rec['decode', clock]:.2f}x")


if __name__ == "__main__":
    main()
