"""Write the bundled samples of the label and caption sources (``datakit/sample_sources/``).

Run once by hand; the output is committed and never regenerated at build time::

    .venv/bin/python scripts/make_sample_sources_labels_captions.py [--out DIR]

Every file is synthetic (64x64 pictures drawn from a generator seeded by the file's name; texts
written for this purpose) and laid out as the real release is, with its known quirks:

* ``Digital Knee X-ray Images/Knee X-ray Images/MedicalExpert-{I,II}/<k><Grade>/<Grade>G<k> (<n>).png``:
  one grey knee joint per KL grade (joint space narrowing with the grade); expert II holds the
  same pictures and grades one of them differently, as the two experts do.
* ``brain-tumor-mri-dataset/{Training,Testing}/<class>/Tr-gl_0010.jpg``: grey axial "slices".
* ``PAD-UFES-20/metadata.csv`` (26 columns, ``fitspatrick`` spelling, ``True``/``False`` strings,
  ``UNK`` and empty values, ``BRASIL`` next to ``BRAZIL``) + ``images/imgs_part_<k>/imgs_part_<k>/``.
* ``diabetic-retinopathy-detection/trainLabels.csv`` (image without extension) + ``train/*.jpeg``.
* ``ROCOv2/{train,valid,test}_captions.csv`` + ``{train,valid,test}/<ID>.jpg``; one caption
  starts with a figure label, one ends with a citation, one holds a quoted comma.
* ``medicat/release/<jsonl>`` + ``figures/<pdf_hash>_<fig_uri>``; a label-only caption ("Figure 2.").
* ``MedPix-2-0/{Descriptions,Case_topic}.json`` + ``images/<image>.png``; MedPix's own placeholder
  caption "IN PROGRESS" and a one-word caption.
* ``FairVLMed/{Training,Validation,Testing}/data_<5 digits>.npz`` (one with the older key
  ``fundus_slo``) + ``gpt-4_summarized_notes.csv``. NPZ archives are written with fixed zip
  timestamps (numpy's own ``savez`` stamps the current time).

PNG and JPEG use fixed settings, so a rerun with the same Pillow/zlib/libjpeg gives the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "datakit" / "sample_sources"
SEED = 20250301
SIZE = 64
PNG = {"format": "PNG", "optimize": False, "compress_level": 9}
JPEG = {"format": "JPEG", "quality": 85, "optimize": False, "progressive": False, "subsampling": 2}
YX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / SIZE


def rng_for(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join((str(SEED),) + parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def disc(cy: float, cx: float, r: float) -> np.ndarray:
    return ((YX[0] - cy) ** 2 + (YX[1] - cx) ** 2) < r * r


def grey(values: np.ndarray, rng: np.random.Generator, noise: float = 6.0) -> np.ndarray:
    return np.clip(values + rng.normal(0, noise, values.shape), 0, 255).astype(np.uint8)


def save(array: np.ndarray, path: Path, settings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **settings)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def write_csv(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n").writerows(rows)
    write_text(path, buf.getvalue())


def knee(out: Path) -> None:
    base = out / "Digital Knee X-ray Images" / "Knee X-ray Images"
    grades = ["Normal", "Doubtful", "Mild", "Moderate", "Severe"]
    pictures = {}
    for k, name in enumerate(grades):
        rng = rng_for("knee", name)
        gap = 0.14 - 0.025 * k  # joint space narrows with the grade
        bone = (np.abs(YX[1] - 0.5) < 0.28) & (np.abs(YX[0] - 0.5) > gap / 2)
        pictures[k] = grey(40 + 150 * bone + 30 * (YX[0] * (1 - YX[0])), rng)
    # Expert II graded picture 1 as grade 2: same bytes, another folder and name.
    experts = {"MedicalExpert-I": {k: k for k in pictures}, "MedicalExpert-II": {0: 0, 1: 2, 2: 2, 3: 3, 4: 4}}
    for expert, graded in experts.items():
        for picture, k in graded.items():
            n = picture + 1
            save(pictures[picture], base / expert / f"{k}{grades[k]}" / f"{grades[k]}G{k} ({n}).png", PNG)


def brain(out: Path) -> None:
    base = out / "brain-tumor-mri-dataset"
    items = [("Training", "glioma", "Tr-gl_0010"), ("Training", "meningioma", "Tr-me_0010"),
             ("Training", "notumor", "Tr-no_0010"), ("Training", "pituitary", "Tr-pi_0010"),
             ("Testing", "glioma", "Te-gl_0010"), ("Testing", "meningioma", "Te-me_0010"),
             ("Testing", "notumor", "Te-no_0010"), ("Testing", "pituitary", "Te-pi_0010")]
    spots = {"glioma": (0.4, 0.35, 0.12), "meningioma": (0.25, 0.6, 0.08), "pituitary": (0.62, 0.5, 0.06)}
    for split, cls, stem in items:
        rng = rng_for("brain", stem)
        head = disc(0.5, 0.5, 0.42) * 90.0 + disc(0.5, 0.5, 0.36) * 40.0
        if cls in spots:
            head = head + disc(*spots[cls]) * 70.0
        save(grey(head, rng), base / split / cls / f"{stem}.jpg", JPEG)


PAD_HEADER = ["patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
              "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
              "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic", "itch",
              "grew", "hurt", "changed", "bleed", "elevation", "img_id", "biopsed"]
PAD_ROWS = [
    ("imgs_part_1", "PAT_46,881,False,False,POMERANIA,POMERANIA,55,False,FEMALE,True,True,True,True,3.0,NECK,"
     "6.0,5.0,BCC,True,True,False,True,True,True,PAT_46_881_14.png,True"),
    ("imgs_part_1", "PAT_1516,1765,,,,,8,,,,,,,,ARM,,,NEV,False,False,False,False,False,False,"
     "PAT_1516_1765_530.png,False"),
    ("imgs_part_2", "PAT_771,1489,False,True,BRASIL,BRAZIL,77,True,MALE,False,True,True,False,2.0,FACE,10.0,8.0,"
     "ACK,True,UNK,False,UNK,False,True,PAT_771_1489_179.png,False"),
    ("imgs_part_2", "PAT_9,17,True,False,ITALIA,BRAZIL,63,False,MALE,True,False,True,True,1.0,BACK,15.0,12.0,"
     "MEL,False,True,False,True,True,True,PAT_9_17_80.png,True"),
    ("imgs_part_3", "PAT_2046,4233,False,False,GERMANY,BRASIL,71,False,FEMALE,False,False,True,True,2.0,CHEST,"
     "7.0,7.0,SEK,UNK,UNK,UNK,UNK,UNK,UNK,PAT_2046_4233_795.png,False"),
    ("imgs_part_3", "PAT_380,1473,False,False,BRAZIL,BRAZIL,82,True,MALE,True,True,False,False,2.0,FOREARM,"
     "12.0,9.0,SCC,False,True,True,True,True,True,PAT_380_1473_301.png,True"),
]


def pad_ufes(out: Path) -> None:
    base = out / "PAD-UFES-20"
    lines = [",".join(PAD_HEADER)]
    for part, row in PAD_ROWS:
        lines.append(row)
        name = row.split(",")[24]
        rng = rng_for("pad", name)
        skin = np.array([205, 160, 130], dtype=np.float64) + rng.normal(0, 6, 3)
        lesion = disc(0.5 + rng.uniform(-0.1, 0.1), 0.5 + rng.uniform(-0.1, 0.1), rng.uniform(0.12, 0.25))
        rgb = skin[None, None, :] * (1 - 0.55 * lesion[..., None]) + rng.normal(0, 4, (SIZE, SIZE, 3))
        save(np.clip(rgb, 0, 255).astype(np.uint8), base / "images" / part / part / name, PNG)
    write_text(base / "metadata.csv", "\n".join(lines) + "\n")


def fundus_rgb(name: str, level: int) -> np.ndarray:
    rng = rng_for("fundus", name)
    eye = disc(0.5, 0.5, 0.46)
    rgb = eye[..., None] * np.array([190.0, 80.0, 30.0]) + disc(0.5, 0.7, 0.08)[..., None] * 60.0
    for _ in range(3 * level):  # haemorrhage-like dark spots, more with the grade
        rgb = rgb - disc(*rng.uniform(0.25, 0.75, 2), 0.025)[..., None] * np.array([90.0, 50.0, 20.0])
    return np.clip(rgb + rng.normal(0, 3, rgb.shape), 0, 255).astype(np.uint8)


def eyepacs(out: Path) -> None:
    base = out / "diabetic-retinopathy-detection"
    labels = [("10_left", 0), ("10_right", 0), ("13_left", 1), ("13_right", 2), ("15_left", 3), ("15_right", 4)]
    for name, level in labels:
        save(fundus_rgb(name, level), base / "train" / f"{name}.jpeg", JPEG)
    write_csv(base / "trainLabels.csv", [["image", "level"]] + [[n, str(v)] for n, v in labels])


ROCO = {
    "train": [
        ("ROCOv2_2023_train_000001", "Figure 1: Axial computed tomography of the chest showing a spiculated "
                                     "nodule in the right upper lobe."),
        ("ROCOv2_2023_train_000002", "Sagittal T2-weighted MRI of the lumbar spine demonstrating an L4-L5 "
                                     "disc herniation with compression of the thecal sac [12]."),
        ("ROCOv2_2023_train_000003", "Ultrasound of the right kidney, long axis, with mild hydronephrosis, "
                                     "no calculi and normal cortical thickness."),
    ],
    "valid": [("ROCOv2_2023_valid_000001", "Plain radiograph of the left wrist: distal radius fracture.")],
    "test": [("ROCOv2_2023_test_000001", "Contrast-enhanced CT of the abdomen showing a hypodense liver "
                                         "lesion in segment VII, measuring 3 cm, with peripheral nodular "
                                         "enhancement in the arterial phase and progressive centripetal "
                                         "filling on delayed images, consistent with a haemangioma.")],
}


def roco(out: Path) -> None:
    base = out / "ROCOv2"
    for split, rows in ROCO.items():
        for image_id, _ in rows:
            rng = rng_for("roco", image_id)
            save(grey(disc(0.5, 0.5, 0.4) * 120.0 + 30, rng, 10), base / split / f"{image_id}.jpg", JPEG)
        write_csv(base / f"{split}_captions.csv", [["ID", "Caption"]] + [list(r) for r in rows])


MEDICAT = [
    ("0b1c9e4f2a7d5e3c8f6a1b2c3d4e5f60718293a4", "2-Figure1-1.png",
     "Figure 1: Chest radiograph showing bilateral perihilar opacities and small pleural effusions."),
    ("0b1c9e4f2a7d5e3c8f6a1b2c3d4e5f60718293a4", "4-Figure3-1.png",
     "Fig. 3a Histopathology of the resected specimen (haematoxylin and eosin, x200) showing sheets of "
     "atypical epithelioid cells with prominent nucleoli, frequent mitoses and areas of necrosis, together "
     "with a dense lymphocytic infiltrate at the invasive margin (Smith et al., 2019)."),
    ("7f3e2d1c0b9a8f7e6d5c4b3a29180716f5e4d3c2", "3-Figure2-1.png", "Figure 2."),
    ("7f3e2d1c0b9a8f7e6d5c4b3a29180716f5e4d3c2", "5-Figure4-1.png",
     "Coronal FLAIR MRI demonstrating hyperintense lesions in the periventricular white matter."),
]


def medicat(out: Path) -> None:
    base = out / "medicat" / "release"
    lines = []
    for i, (pdf_hash, fig_uri, caption) in enumerate(MEDICAT):
        rng = rng_for("medicat", fig_uri, pdf_hash)
        save(grey(np.full((SIZE, SIZE), 200.0) - disc(0.5, 0.5, 0.3) * 120, rng, 8),
             base / "figures" / f"{pdf_hash}_{fig_uri}", PNG)
        doc = {"pdf_hash": pdf_hash, "fig_key": fig_uri.split("-")[1], "fig_uri": fig_uri, "s2_caption": caption,
               "s2orc_caption": None if i % 2 else caption, "s2orc_references": None, "radiology": i != 1,
               "scope": True, "predicted_type": "Figure",
               "oa_info": {"doi": None, "doi_url": None, "oa": {"is_oa": True, "oa_status": "gold",
                                                                 "journal_is_oa": True, "journal_is_in_doaj": True,
                                                                 "license": "cc-by", "provenance": None}}}
        lines.append(json.dumps(doc, sort_keys=False))
    write_text(base / "s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl", "\n".join(lines) + "\n")


MEDPIX_IMAGES = [
    ("CT", "MPX1009", "MPX1009_synpic46283", "The prostate is enlarged with several calcifications  noted "
                                             "within.  No dominant prostate mass is evident."),
    ("CT", "MPX1009", "MPX1009_synpic46295", "Bladder is prominent with mildly thickened wall.\n\nThere is a "
                                             "small posterolateral diverticulum on the right."),
    ("CT", "MPX1012", "MPX1012_synpic22949", "pelvis"),
    ("MR", "MPX1033", "MPX1033_synpic45450", "IN PROGRESS"),
    ("MR", "MPX1033", "MPX1033_synpic45451", "Axial T1 post-contrast image shows a ring-enhancing lesion in the "
                                             "left frontal lobe with surrounding vasogenic oedema."),
]
MEDPIX_CASES = {
    "MPX1009": ("Bladder Diverticulum", "Bladder with thickened wall and diverticulum on the right.\n\n"
                                        "Prostate enlargement."),
    "MPX1012": ("Ovarian torsion", "CT: Large heterogeneous pelvic mass displacing the uterus anteriorly."),
    "MPX1033": ("Cerebral abscess", ""),
}


def medpix(out: Path) -> None:
    base = out / "MedPix-2-0"
    descriptions = []
    for kind, case, image, caption in MEDPIX_IMAGES:
        rng = rng_for("medpix", image)
        picture = grey(disc(0.5, 0.5, 0.45) * 110.0 + disc(0.45, 0.4, 0.1) * 60.0, rng)
        save(picture, base / "images" / f"{image}.png", PNG)
        modality = "CT - noncontrast" if kind == "CT" else "MR - T1W w/Gadolinium"
        descriptions.append({"Type": kind, "U_id": case, "image": image,
                             "Description": {"ACR Codes": "8.-1", "Age": "73", "Caption": caption,
                                             "Figure Part": None, "Modality": modality, "Plane": "Axial",
                                             "Sex": "male"},
                             "Location": "Genitourinary", "Location Category": "Reproductive and Urinary System"})
    cases = []
    for case, (title, findings) in MEDPIX_CASES.items():
        images = [i for k, c, i, _ in MEDPIX_IMAGES if c == case]
        kind = next(k for k, c, _, _ in MEDPIX_IMAGES if c == case)
        cases.append({"U_id": case, "TAC": images if kind == "CT" else [], "MRI": images if kind == "MR" else [],
                      "Case": {"Title": title, "History": "N/A", "Exam": "N/A", "Findings": findings,
                               "Differential Diagnosis": title, "Case Diagnosis": title, "Diagnosis By": "N/A"},
                      "Topic": {"Title": title, "Disease Discussion": "", "ACR Code": "8.9", "Category": "Other"}})
    write_text(base / "Descriptions.json", json.dumps(descriptions, indent=1, ensure_ascii=False))
    write_text(base / "Case_topic.json", json.dumps(cases, indent=4, ensure_ascii=False))


FAIRVLMED = [
    ("Training", "data_00001", "slo_fundus", 1,
     "64 y/o male with primary open angle glaucoma OU, on latanoprost. Cup-to-disc ratio 0.8 OD with inferior "
     "rim thinning; visual field shows a superior arcuate defect. RNFL thinning inferiorly on OCT. Continue "
     "drops, recheck pressure in three months.",
     "Patient has primary open angle glaucoma with inferior rim thinning and a superior arcuate field defect."),
    ("Training", "data_00002", "slo_fundus", 0,
     "52 y/o female referred for glaucoma evaluation due to family history. Optic nerves appear healthy with "
     "cup-to-disc ratio 0.3 OU, normal pressures and full visual fields. No glaucoma; annual follow up.",
     "No glaucoma; healthy optic nerves and normal visual fields, annual follow up advised."),
    ("Validation", "data_07001", "fundus_slo", 1,
     "Glaucoma suspect OD progressing to normal tension glaucoma. Disc hemorrhage noted at 7 o'clock, "
     "cup-to-disc 0.7. Start timolol and repeat visual field testing.", None),
    ("Testing", "data_08001", "slo_fundus", 0,
     "Routine exam. Mild cataract OU, optic discs pink and sharp, cup-to-disc 0.2. No signs of glaucoma.", None),
]


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An NPZ archive (what ``np.savez`` writes) with fixed timestamps and member order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def fairvlmed(out: Path) -> None:
    base = out / "FairVLMed"
    summaries = [["filename", "note", "gpt4_summary"]]
    for split, stem, key, glaucoma, note, summary in FAIRVLMED:
        rng = rng_for("fairvlmed", stem)
        slo = grey(disc(0.5, 0.5, 0.47) * 120.0 + disc(0.5, 0.62, 0.09) * 80.0 - disc(0.5, 0.62, 0.03) * 60.0, rng)
        arrays = {key: slo, "md": np.float32(-2.5), "tds": np.zeros(52, dtype=np.float32), "age": np.float32(60.0),
                  "gender": np.int64(glaucoma), "race": np.int64(2), "ethnicity": np.int64(0), "language": np.int64(0),
                  "maritalstatus": np.int64(0), "glaucoma": np.int64(glaucoma), "note": np.array(note)}
        path = base / split / f"{stem}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(npz_bytes(arrays))
        if summary:
            summaries.append([f"{stem}.npz", note, summary])
    write_csv(base / "gpt-4_summarized_notes.csv", summaries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for write in (knee, brain, pad_ufes, eyepacs, roco, medicat, medpix, fairvlmed):
        write(args.out)
    print(f"wrote label and caption samples under {args.out}")


if __name__ == "__main__":
    main()
