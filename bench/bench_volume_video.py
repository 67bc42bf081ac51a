"""Throughput of volume -> slices and video -> frames on one core, against the bare decode.

Volumes: a CT-like phantom (smooth organs in HU plus 8 HU noise) stored as M3D stores volumes
(``.npy``, 1×32×256×256 float32 in [0, 1]) and as NIfTI (``.nii.gz``, 256×256×32 int16 HU).
Timed per volume, in the same run:
  * bare decode: ``np.load`` / ``nibabel.load(...).get_fdata()`` (what any reader must do),
  * datakit: the readers' ``load`` (read, sha256, validate, 11 slices, scale, RGB PNG).
Video: the real 6 s, 8 fps 720×480 Fleming-VL clip of the bundled samples, timed per clip:
  * bare decode: decord opening the clip and reading the same 6 frames (and, for scale, all 48),
  * datakit: ``read_video`` (sha256, decord, 1 fps sampling, JPEG q90) and the ``store: clip`` form.
Prints items/s and each datakit path as a ratio to its bare decode (1.0 = as fast as decoding).
Usage: python bench/bench_volume_video.py [--volumes 8] [--clips 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from datakit.build import SAMPLE_SOURCES
from datakit.record import RawRecord
from datakit.sources.m3d_cap import M3DCapReader
from datakit.sources.nifti import NiftiReader
from datakit.video import FrameOptions, demo_frame_indices, read_video
from datakit.volume import SliceOptions, as_volume, read_npy, slice_volume

CLIP = SAMPLE_SOURCES / "MedVideoCap-55K" / "videos" / "surgery_endoscopy_monitor.mp4"


def phantom_hu(depth: int, size: int, seed: int) -> np.ndarray:
    """(depth, size, size) HU: body, liver, spine, a lesion, CT-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    body = ((y - 0.5) / 0.36) ** 2 + ((x - 0.5) / 0.44) ** 2 <= 1
    liver = ((y - 0.42) / 0.18) ** 2 + ((x - 0.32) / 0.18) ** 2 <= 1
    spine = ((y - 0.74) / 0.07) ** 2 + ((x - 0.5) / 0.07) ** 2 <= 1
    lesion = ((y - 0.40) / 0.05) ** 2 + ((x - 0.28) / 0.05) ** 2 <= 1
    plane = np.where(body, 40.0, -1000.0)
    plane[liver], plane[spine], plane[lesion] = 60.0, 700.0, 5.0
    return plane[None].repeat(depth, 0) + rng.normal(0.0, 8.0, (depth, size, size))


def write_inputs(root: Path, n: int) -> tuple[list[Path], list[Path]]:
    import nibabel as nib

    npys, niftis = [], []
    for i in range(n):
        hu = phantom_hu(32, 256, i)
        case = root / "M3D_Cap_npy" / "ct_case" / f"{i:06d}"
        case.mkdir(parents=True)
        norm = (hu - hu.min()) / (hu.max() - hu.min())
        np.save(case / "Axial_C__portal_venous_phase.npy", norm.astype(np.float32)[None])
        (case / "text.txt").write_text("study_findings: A hypodense liver lesion.", encoding="utf-8")
        npys.append(case / "Axial_C__portal_venous_phase.npy")
        image = nib.Nifti1Image(np.round(hu.transpose(1, 2, 0)).astype(np.int16), np.diag([-0.8, 0.8, 5.0, 1.0]))
        path = root / "nifti" / f"ct_{i:03d}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))
        niftis.append(path)
    return npys, niftis


def best_rate(fn: Callable[[], int], repeat: int) -> float:
    """Items per second, best of ``repeat`` timed runs of ``fn`` (which returns its item count)."""
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def main() -> None:
    import decord
    import nibabel as nib

    ap = argparse.ArgumentParser()
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows: list[tuple[str, float, float]] = []  # (name, items/s, bare items/s)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        npys, niftis = write_inputs(root, args.volumes)
        cap = M3DCapReader(root / "M3D_Cap_npy", split_file=None, vqa_csvs=[])
        cap_records = [r for r in cap.discover() if isinstance(r, RawRecord)]
        nii = NiftiReader(root / "nifti", window=[40, 400])
        nii_records = [r for r in nii.discover() if isinstance(r, RawRecord)]

        def load_all(reader, recs) -> int:
            return sum(len(reader.load(r).media) > 0 for r in recs)

        def slice_all(opts: SliceOptions) -> int:
            return sum(len(slice_volume(as_volume(read_npy(p, "v")[0], "v"), opts).media) > 0 for p in npys)

        def video_all(opts: FrameOptions) -> int:
            return sum(len(read_video(CLIP, "c", opts).media) > 0 for _ in range(args.clips))

        def decord_read(frames: list[int] | None) -> int:
            for _ in range(args.clips):
                reader = decord.VideoReader(str(CLIP), ctx=decord.cpu(0), num_threads=1)
                reader.get_batch(frames if frames is not None else list(range(len(reader)))).asnumpy()
            return args.clips

        bare_npy = best_rate(lambda: sum(1 for p in npys if np.load(p).size), args.repeat)
        rows.append(("npy -> 11 PNG slices (m3d_cap.load)", best_rate(lambda: load_all(cap, cap_records), args.repeat),
                     bare_npy))
        for level in (1, 6):
            opts = SliceOptions(png_compress_level=level)
            size = sum(len(m.data) for m in slice_volume(as_volume(read_npy(npys[0], "v")[0], "v"), opts).media)
            rows.append((f"  slices only, png level {level} ({size / 1024:.0f} KiB/volume)",
                         best_rate(lambda: slice_all(opts), args.repeat), bare_npy))
        bare_nii = best_rate(lambda: sum(1 for p in niftis if nib.load(p).get_fdata(dtype=np.float32).size), args.repeat)
        rows.append(("nii.gz -> 11 PNG slices (nifti.load, window)",
                     best_rate(lambda: load_all(nii, nii_records), args.repeat), bare_nii))

        bare_video = best_rate(lambda: decord_read(demo_frame_indices(48, 8.0, 32)), args.repeat)
        rows.append(("clip -> 6 JPEG frames (read_video)", best_rate(lambda: video_all(FrameOptions()), args.repeat),
                     bare_video))
        rows.append(("clip -> key.0.mp4 (store: clip)",
                     best_rate(lambda: video_all(FrameOptions(store="clip")), args.repeat), bare_video))
        rows.append(("  bare decord, all 48 frames", best_rate(lambda: decord_read(None), args.repeat), bare_video))
    print(f"one core, best of {args.repeat}; volumes: {args.volumes} phantoms 32x256x256; clip: 6 s 720x480 x{args.clips}")
    print(f"bare decode: np.load {bare_npy:.1f} volumes/s, nibabel {bare_nii:.1f} volumes/s, "
          f"decord 6 frames {bare_video:.1f} clips/s")
    for name, rate, bare in rows:
        print(f"{name:50s} {rate:8.1f} /s   ratio to bare decode {rate / bare:6.3f}")


if __name__ == "__main__":
    main()
