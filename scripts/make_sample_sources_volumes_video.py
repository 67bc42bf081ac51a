"""Write the bundled volume and video sample sources (``datakit/sample_sources/``), deterministically.

Run once by hand; its output is committed and is never regenerated at build time::

    .venv/bin/python scripts/make_sample_sources_volumes_video.py --clip FILE [--out DIR]

What it writes, each source in its (assumed, where unconfirmed) released layout:

* ``M3D_Cap_npy/``: three synthetic CT phantoms as M3D stores them (float32 in [0, 1], depth
  32): ``ct_quizze/000008/Axial_C__arterial_phase.npy`` (1×32×40×40),
  ``ct_case/000100/Coronal_non_contrast.npy`` (32×40×40, the 3-D form) and
  ``ct_case/000200/Axial_non_contrast.npy`` (1×32×16×16, listed under ``test`` in
  ``M3D_Cap.json`` so a build holds it out); a ``text.txt`` report per case, one in the raw
  ``study_findings:`` / ``discussion:`` form.
* ``M3D-VQA/M3D_VQA_train.csv``: questions over the two train phantoms with M3D's ten columns
  and numeric question types; one row has an unparsed ``NA`` choice, as real rows do, and one
  asks about the held-out test phantom.
* ``nifti/``: two synthetic abdominal CT phantoms in HU (int16, 24×24×16, LAS affine) as
  ``.nii.gz`` (gzip without a timestamp), with label sidecars and one report sidecar.
* ``MedVideoCap-55K/``: the real clip of ``--clip`` copied byte for byte, two synthetic MPEG-4
  clips (``bitexact``), and ``captions.jsonl`` with a brief and a detailed caption for each.

Every random draw comes from a ``numpy`` generator seeded by the file's name.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "datakit" / "sample_sources"
SEED = 20250301


def rng_for(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join((str(SEED),) + parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def abdomen(depth: int, size: int, name: str, lesion: float | None) -> np.ndarray:
    """An axial abdominal phantom in HU, (z, y, x) with anterior up: an ellipsoidal body, the
    liver on the image left (patient right) tapering towards the feet, the spine, and optionally
    a round liver lesion of ``lesion`` HU across the middle third of the slices."""
    rng = rng_for(name)
    vol = np.full((depth, size, size), -1000.0)
    s = size / 48.0
    for z in range(depth):
        t = (z - (depth - 1) / 2) / (depth / 2)  # -1 (head) .. 1 (feet)
        body = np.sqrt(max(1.0 - 0.45 * t * t, 0.05))
        liver = np.sqrt(max(1.0 - ((t + 0.3) / 1.1) ** 2, 0.0))
        sl = vol[z]
        sl[ellipse(sl.shape, 24 * s, 24 * s, 17 * s * body, 21 * s * body)] = 40.0
        if liver > 0.2:
            sl[ellipse(sl.shape, 20 * s, 15 * s, 9 * s * liver, 9 * s * liver)] = 60.0
        sl[ellipse(sl.shape, 35 * s, 24 * s, 3.5 * s, 3.5 * s)] = 700.0
        if lesion is not None and depth // 3 <= z < 2 * depth // 3:
            sl[ellipse(sl.shape, 19 * s, 13 * s, 3 * s, 3 * s)] = lesion
    return vol + rng.normal(0.0, 8.0, vol.shape)


def m3d_normalise(vol: np.ndarray) -> np.ndarray:
    """M3D's preprocessing: the whole volume min-max to [0, 1], float32."""
    vol = vol - vol.min()
    return (vol / vol.max()).astype(np.float32)


def write_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr, allow_pickle=False)


REPORTS = {
    "ct_quizze/000008": (
        "study_findings: Arterial phase CT of the upper abdomen. A well-defined round hypodense lesion "
        "in the right lobe of the liver, about 2 cm, without arterial enhancement. The spleen, "
        "kidneys and pancreas are unremarkable. The vertebral body is intact.\n"
        "discussion: Appearance favours a simple hepatic cyst."
    ),
    "ct_case/000100": (
        "Non-contrast coronal reformats of the abdomen. The liver is normal in size with homogeneous "
        "attenuation and no focal lesion. Normal vertebral alignment. No free fluid."
    ),
    "ct_case/000200": "Non-contrast axial CT of the abdomen. No acute abnormality.",
}

VQA_ROWS = [
    # (volume, question type, question, choices A-D, answer letter)
    ("ct_quizze/000008/Axial_C__arterial_phase", "1", "In which plane is this image taken?",
     ["Sagittal", "Axial", "Coronal", "Oblique"], "B"),
    ("ct_quizze/000008/Axial_C__arterial_phase", "2", "Which CT phase is this image acquired in?",
     ["Non-contrast", "Portal venous phase", "Arterial phase", "Delayed phase"], "C"),
    ("ct_quizze/000008/Axial_C__arterial_phase", "3", "Which organ contains the hypodense lesion?",
     ["Liver", "Spleen", "Left kidney", "Pancreas"], "A"),
    ("ct_quizze/000008/Axial_C__arterial_phase", "4", "What is the appearance of the liver lesion?",
     ["Calcified", "Hyperdense", "Fat-containing", "Well-defined hypodense"], "D"),
    ("ct_quizze/000008/Axial_C__arterial_phase", "5", "Where is the lesion located?",
     ["Left lobe of the liver", "Right lobe of the liver", "Splenic hilum", "NA"], "B"),
    ("ct_case/000100/Coronal_non_contrast", "1", "In which plane are these images reconstructed?",
     ["Coronal", "Axial", "Sagittal", "Oblique"], "A"),
    ("ct_case/000100/Coronal_non_contrast", "2", "Was intravenous contrast given for this scan?",
     ["Yes, arterial phase", "Yes, delayed phase", "No, non-contrast", "Yes, portal venous phase"], "C"),
    ("ct_case/000100/Coronal_non_contrast", "4", "Is a focal liver lesion present?",
     ["Yes, a cyst", "Yes, a mass", "Yes, a calcification", "No focal lesion"], "D"),
    # about the volume M3D_Cap.json lists under test: a build refuses it with the volume
    ("ct_case/000200/Axial_non_contrast", "1", "In which plane is this image taken?",
     ["Coronal", "Sagittal", "Axial", "Oblique"], "C"),
]


def write_m3d(out: Path) -> None:
    cap = out / "M3D_Cap_npy"
    write_npy(cap / "ct_quizze/000008/Axial_C__arterial_phase.npy",
              m3d_normalise(abdomen(32, 40, "000008", lesion=5.0))[None])
    coronal = np.transpose(abdomen(40, 40, "000100", None), (1, 0, 2))[5:37]  # (y, z, x): 32 coronal slices
    write_npy(cap / "ct_case/000100/Coronal_non_contrast.npy", m3d_normalise(coronal))
    write_npy(cap / "ct_case/000200/Axial_non_contrast.npy", m3d_normalise(abdomen(32, 16, "000200", None))[None])
    for case, text in REPORTS.items():
        (cap / case / "text.txt").write_text(text, encoding="utf-8")
    split = {
        "train": [{"image": f"M3D_Cap_npy/{c}/{v}.npy", "text": f"M3D_Cap_npy/{c}/text.txt"}
                  for c, v in (("ct_quizze/000008", "Axial_C__arterial_phase"), ("ct_case/000100", "Coronal_non_contrast"))],
        "validation": [],
        "test": [{"image": "M3D_Cap_npy/ct_case/000200/Axial_non_contrast.npy",
                  "text": "M3D_Cap_npy/ct_case/000200/text.txt"}],
    }
    (cap / "M3D_Cap.json").write_text(json.dumps(split, indent=1) + "\n", encoding="utf-8")
    vqa = out / "M3D-VQA"
    vqa.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Image Path", "Text", "Question Type", "Question", "Choice A", "Choice B", "Choice C",
                     "Choice D", "Answer", "Answer Choice"])
    for volume, qtype, question, choices, letter in VQA_ROWS:
        case = volume.rsplit("/", 1)[0]
        report = " ".join(REPORTS[case].split("study_findings:")[-1].split())
        writer.writerow([f"M3D_Cap_npy/{volume}.npy", report, qtype, question, *choices,
                         choices["ABCD".index(letter)], letter])
    (vqa / "M3D_VQA_train.csv").write_text(buf.getvalue(), encoding="utf-8")


def write_nifti(out: Path) -> None:
    import nibabel as nib

    folder = out / "nifti"
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([-1.5, 1.5, 2.5, 1.0])  # LAS: slices along the third axis are axial
    cases = {"ct_phantom_01": (10.0, "hepatic cyst"), "ct_phantom_02": (35.0, "hepatic solid mass")}
    for name, (lesion_hu, label) in cases.items():
        axial = abdomen(16, 24, name, lesion=lesion_hu)  # (k, rows, cols) with anterior up
        voxels = np.rot90(axial, k=-1, axes=(1, 2)).transpose(1, 2, 0)  # back to (i, j, k)
        image = nib.Nifti1Image(np.round(voxels).astype(np.int16), affine)
        image.header.set_xyzt_units("mm")
        (folder / f"{name}.nii.gz").write_bytes(gzip.compress(image.to_bytes(), compresslevel=9, mtime=0))
        (folder / f"{name}.label.txt").write_text(label + "\n", encoding="utf-8")
    (folder / "ct_phantom_01.txt").write_text(
        "Axial CT of the upper abdomen. A round well-defined fluid-attenuation lesion in the right "
        "hepatic lobe, consistent with a simple cyst. No other focal abnormality.\n", encoding="utf-8")


def synthetic_clip(path: Path, name: str, frames: np.ndarray, fps: int) -> None:
    import av

    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "3", "flags": "+bitexact"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def sweep_frames(name: str, n: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A speckled grey ultrasound-like sector with a dark round structure moving left to right."""
    rng = rng_for(name)
    y, x = np.mgrid[:h, :w]
    sector = (np.abs(np.arctan2(x - w / 2, y + 10)) < 0.7) & (y > 4)
    base = rng.gamma(2.0, 45.0, (h, w))
    out = []
    for t in range(n):
        img = base.copy()
        cx = 30 + t * (w - 60) / max(n - 1, 1)
        img[((y - 55) / 12) ** 2 + ((x - cx) / 14) ** 2 <= 1] *= 0.15
        img = np.clip(img * sector, 0, 255).astype(np.uint8)
        out.append(np.repeat(img[:, :, None], 3, axis=2))
    return np.stack(out)


def lumen_frames(name: str, n: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A pink endoscopic view of a tubular lumen whose folds move towards the viewer."""
    rng = rng_for(name)
    y, x = np.mgrid[:h, :w]
    r = np.hypot(y - h / 2, x - w / 2)
    noise = rng.normal(0, 6, (h, w))
    out = []
    for t in range(n):
        folds = 0.5 + 0.5 * np.cos(r / 4.0 - t * 0.9)
        shade = np.clip(r / (w / 2), 0.15, 1.0)
        red = np.clip(200 * shade * (0.7 + 0.3 * folds) + noise, 0, 255)
        frame = np.stack([red, red * 0.55, red * 0.5], axis=-1)
        frame[r > w / 2 + 6] = 0
        out.append(frame.astype(np.uint8))
    return np.stack(out)


CAPTIONS = [
    {
        "id": "surgery_endoscopy_monitor",
        "brief_caption": "In a dimly lit operating room, a masked surgeon watches an endoscopic view on a "
                         "monitor while handling the scope.",
        "detailed_caption": "The clip opens on a darkened operating room where a surgical team in blue gowns, "
                            "caps and masks stands around a draped patient. It then turns to an endoscopy tower: "
                            "a monitor shows a round endoscopic image of pink tissue above stacked video and light "
                            "source units, while a surgeon wearing glasses and a mask holds the endoscope in the "
                            "foreground. It ends on a close-up of the surgeon's masked face looking up at the screen.",
    },
    {
        "id": "synthetic_ultrasound_sweep",
        "brief_caption": "A synthetic grey ultrasound sector in which a dark round structure moves from left to right.",
        "detailed_caption": "A computer-generated ultrasound-like sector image with grainy speckle fills the frame. "
                            "A dark, round, fluid-like structure in the lower middle of the sector moves steadily "
                            "from the left side to the right side over three seconds while the speckle stays still.",
    },
    {
        "id": "synthetic_lumen_flythrough",
        "brief_caption": "A synthetic pink endoscopic view advancing through a tubular lumen with ring-shaped folds.",
        "detailed_caption": "A computer-generated endoscopic view looks down a pink tubular lumen. Concentric "
                            "ring-shaped folds move outward from the dark centre towards the edge of the round "
                            "field of view, giving the impression of the camera advancing steadily along the lumen.",
    },
]


def write_video(out: Path, clip: Path) -> None:
    folder = out / "MedVideoCap-55K"
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, folder / "videos" / "surgery_endoscopy_monitor.mp4")
    synthetic_clip(folder / "videos" / "synthetic_ultrasound_sweep.mp4", "sweep", sweep_frames("sweep", 12), fps=4)
    synthetic_clip(folder / "videos" / "synthetic_lumen_flythrough.mp4", "lumen", lumen_frames("lumen", 12), fps=4)
    lines = [json.dumps(c, ensure_ascii=False, sort_keys=True) for c in CAPTIONS]
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, required=True,
                    help="the real Fleming-VL demo clip (surgery_endoscopy_monitor.mp4 of its public release)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    write_m3d(args.out)
    write_nifti(args.out)
    write_video(args.out, args.clip)


if __name__ == "__main__":
    main()
