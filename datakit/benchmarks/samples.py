"""Tiny synthetic benchmark folders, each in its released layout: tests, ``bench/`` and demos.

``write_samples(out)`` writes one folder per benchmark under ``out`` and returns name -> folder.
Images are seeded drawings (32-48 px), volumes small float32 phantoms, the video is the bundled
synthetic MedVideoCap clip; every question and answer was written for this repository
(Apache-2.0), in English and, for SLAKE, Chinese. Each folder exercises the reader's quirks:
VQA-RAD's linked paraphrases and a numeric answer, SLAKE's two languages, PathVQA's pickle,
PMC-VQA's lettered option strings, OmniMedVQA's JSON-array and JSON-Lines files with two
modalities, R2Gen's two-view IU entries, M3D-VQA's numeric question types and an ``NA`` row,
and a video record with both a summary and questions. Same ``out`` -> same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPO_SAMPLES = Path(__file__).resolve().parents[1] / "sample_sources"
CLIP = REPO_SAMPLES / "MedVideoCap-55K" / "videos" / "synthetic_lumen_flythrough.mp4"


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big"))


def _image(path: Path, size: tuple[int, int] = (40, 32), grey: bool = False) -> None:
    """A seeded blob-on-noise drawing, distinct per file name."""
    rng = _rng(path.name + path.parent.name)
    w, h = size
    y, x = np.mgrid[:h, :w]
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.15, 0.3) * min(w, h)
    base = rng.integers(0, 90, size=(h, w, 3)).astype(np.float64)
    base[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] += rng.integers(100, 160, size=3)
    arr = np.clip(base, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr[..., 0] if grey else arr, "L" if grey else "RGB")
    if path.suffix == ".png":
        im.save(path, format="PNG", compress_level=6)
    else:
        im.save(path, format="JPEG", quality=90, subsampling=2)


def _json(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def vqa_rad(root: Path) -> None:
    folder = "VQA_RAD Image Folder"
    for n in (101, 102, 103):
        _image(root / folder / f"synpic{n}.jpg", grey=True)

    def q(qid, image, question, answer, atype, phrase, link):
        return {"qid": qid, "phrase_type": phrase, "qid_linked_id": link, "image_case_url": "", "image_name": image,
                "image_organ": "CHEST", "evaluation": "given", "question": question, "question_rephrase": "NULL",
                "question_relation": "NULL", "question_frame": "NULL", "question_type": "PRES",
                "answer": answer, "answer_type": atype}

    _json(root / "VQA_RAD Dataset Public.json", [
        q(1, "synpic101.jpg", "Is there a pleural effusion?", "Yes", "CLOSED", "test_freeform", "L1"),
        q(2, "synpic101.jpg", "Is fluid present in the pleural space?", "yes", "CLOSED", "test_para", "L1"),
        q(3, "synpic102.jpg", "Which organ is enlarged?", "heart", "OPEN", "test_freeform", "L2"),
        q(4, "synpic102.jpg", "How many ribs are fractured?", 2, "OPEN", "test_freeform", "L3"),
        q(5, "synpic103.jpg", "Is the trachea midline?", "yes", "CLOSED", "freeform", "L4"),
        q(6, "synpic102.jpg", "What organ appears enlarged?", "heart", "OPEN", "para", "L2"),  # leaks test qid 3
    ])


def slake(root: Path) -> None:
    for n in (1, 2):
        _image(root / "imgs" / f"xmlab{n}" / "source.jpg")

    def q(qid, img, question, answer, lang, atype, modality):
        return {"img_id": int(img[5:]), "img_name": f"{img}/source.jpg", "question": question, "answer": answer,
                "q_lang": lang, "location": "Lung", "modality": modality, "answer_type": atype,
                "base_type": "vqa", "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": qid}

    _json(root / "test.json", [
        q(11, "xmlab1", "Does the picture contain lung?", "Yes", "en", "CLOSED", "CT"),
        q(12, "xmlab1", "Which organ is abnormal?", "Left Lung", "en", "OPEN", "CT"),
        q(13, "xmlab2", "What modality is used to take this image?", "MRI", "en", "CLOSED", "MRI"),
        q(14, "xmlab1", "图中包含肺吗?", "是", "zh", "CLOSED", "CT"),
        q(15, "xmlab2", "哪个器官不正常?", "左肺", "zh", "OPEN", "MRI"),
    ])
    _json(root / "train.json", [q(21, "xmlab2", "Is this an MRI?", "Yes", "en", "CLOSED", "MRI")])
    _json(root / "validate.json", [q(31, "xmlab2", "Is this a CT?", "No", "en", "CLOSED", "MRI")])


def path_vqa(root: Path) -> None:
    for n in range(2):
        _image(root / "images" / "test" / f"test_{n:04d}.jpg")
    rows = [{"image": "test_0000", "question": "is there inflammation?", "answer": "yes"},
            {"image": "test_0000", "question": "what are present?", "answer": "neutrophils"},
            {"image": "test_0001", "question": "is this a fibroadenoma?", "answer": "no"}]
    path = root / "qas" / "test" / "test_qa.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(rows, protocol=2))


def pmc_vqa(root: Path) -> None:
    for name in ("PMC100_fig1.jpg", "PMC200_fig2.jpg"):
        _image(root / "images" / name, size=(48, 32))
    rows = [
        ["0", "PMC100_fig1.jpg", "Axial CT of the chest.", "Which imaging modality is shown?",
         " A:CT ", " B:MRI", " C:Ultrasound ", " D:PET ", "A", "test"],
        ["1", "PMC200_fig2.jpg", "A stained section.", "What stain was used?",
         " A:Gram stain", "  B: Hematoxylin and eosin ", " C:PAS", " D:Silver", "B", "test"],
    ]
    with (root / "test_2.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "Figure_path", "Caption", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
                    "Answer", "split"])
        w.writerows(rows)


def omnimedvqa(root: Path) -> None:
    ct = "Images/Chest CT Scan/test/ct_001.png"
    fundus = "Images/RetinalFundus/fundus_001.jpg"
    _image(root / ct, grey=True)
    _image(root / fundus)
    _json(root / "QA_information" / "Open-access" / "Chest CT Scan.json", [
        {"dataset": "Chest CT Scan", "question_id": "Chest CT Scan_0001", "question_type": "Disease Diagnosis",
         "question": "What abnormality is seen in the lung?", "gt_answer": "Adenocarcinoma",
         "image_path": ct, "option_A": "Adenocarcinoma", "option_B": "Normal", "option_C": "Pneumothorax",
         "modality_type": "CT(Computed Tomography)"},
        {"dataset": "Chest CT Scan", "question_id": "Chest CT Scan_0002", "question_type": "Modality Recognition",
         "question": "What imaging technique is used?", "gt_answer": "CT", "image_path": ct,
         "option_A": "X-ray", "option_B": "CT", "modality": "CT(Computed Tomography)"},
    ])
    lines = [{"dataset": "RetinalFundus", "question_id": "RetinalFundus_0001", "question_type": "Anatomy Identification",
              "question": "Which structure is the bright disc?", "gt_answer": "Optic disc", "image_path": fundus,
              "option_A": "Macula", "option_B": "Fovea", "option_C": "Optic disc", "option_D": "Vessel",
              "modality_type": "Fundus Photography"}]
    (root / "QA_information" / "Open-access" / "Modality_Fundus.json").write_text(
        "".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    (root / "QA_information" / "Restricted-access").mkdir(parents=True, exist_ok=True)


def iu_xray(root: Path) -> None:
    for case in ("CXR1_1_IM-0001", "CXR2_1_IM-0652"):
        for view in (0, 1):
            _image(root / "images" / case / f"{view}.png", grey=True)
    _json(root / "annotation.json", {
        "train": [], "val": [],
        "test": [
            {"id": "CXR1_1_IM-0001", "report": "the heart is normal in size . the lungs are clear .",
             "image_path": ["CXR1_1_IM-0001/0.png", "CXR1_1_IM-0001/1.png"], "split": "test"},
            {"id": "CXR2_1_IM-0652", "report": "there is a small left pleural effusion . no pneumothorax .",
             "image_path": ["CXR2_1_IM-0652/0.png", "CXR2_1_IM-0652/1.png"], "split": "test"},
        ],
    })


def mimic_cxr(root: Path) -> None:
    rels = ["p10/p10000032/s50414267/02aa804e.jpg", "p10/p10000764/s57375967/096052b7.jpg"]
    for rel in rels:
        _image(root / "images" / rel, grey=True)
    _json(root / "annotation.json", {
        "train": [], "val": [],
        "test": [
            {"id": "02aa804e", "study_id": 50414267, "subject_id": 10000032, "report":
             "no acute cardiopulmonary process . heart size is normal .", "image_path": [rels[0]], "split": "test"},
            {"id": "096052b7", "study_id": 57375967, "subject_id": 10000764, "report":
             "mild pulmonary edema . small bilateral pleural effusions .", "image_path": [rels[1]], "split": "test"},
        ],
    })


def m3d_vqa(root: Path) -> None:
    rel = "M3D_Cap_npy/ct_case/000001/Axial_C__portal_venous_phase.npy"
    rng = _rng(rel)
    vol = rng.random((1, 12, 24, 24), dtype=np.float32)
    vol[0, :, 8:16, 8:16] += 1.0
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, vol / vol.max(), allow_pickle=False)
    path.write_bytes(buf.getvalue())
    header = ["Image Path", "Text", "Question Type", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
              "Answer", "Answer Choice"]
    text = "Portal venous phase CT of the abdomen with a hypodense liver lesion."
    rows = [
        [rel, text, "1", "In which plane is this image taken?", "Sagittal", "Axial", "Coronal", "Oblique", "Axial", "B"],
        [rel, text, "3", "Which organ contains the lesion?", "Liver", "Spleen", "Kidney", "Pancreas", "Liver", "A"],
        [rel, text, "4", "What is the lesion's density?", "NA", "Hypodense", "Hyperdense", "Isodense", "NA", "A"],
    ]
    out = root / "M3D-VQA" / "M3D_VQA_test.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])


def medvideo(root: Path) -> None:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CLIP, root / "videos" / "lumen_0001.mp4")
    record = {
        "key": "lumen_0001", "video_path": "videos/lumen_0001.mp4", "split": "test", "organ": "colon",
        "summary": "an endoscope advances through a tubular lumen with smooth mucosa and no lesion .",
        "qa": [{"question": "Which procedure does the video show?",
                "options": ["A. Colonoscopy", "B. Knee arthroscopy", "C. Echocardiography"], "answer": "A"},
               {"question": "Is a polyp visible?", "options": {"A": "Yes", "B": "No"}, "answer": "No"}],
    }
    (root / "medvideo_test.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")


WRITERS = {"vqa_rad": vqa_rad, "slake": slake, "path_vqa": path_vqa, "pmc_vqa": pmc_vqa,
           "omnimedvqa": omnimedvqa, "iu_xray": iu_xray, "mimic_cxr": mimic_cxr, "m3d_vqa": m3d_vqa,
           "medvideo": medvideo}


def write_samples(out: Path, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write the chosen (default: all) sample benchmark folders under ``out``."""
    folders = {}
    for name in names or tuple(WRITERS):
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        WRITERS[name](folder)
        folders[name] = folder
    return folders
