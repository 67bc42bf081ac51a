"""Write the bundled samples of the benchmark train-split sources (``datakit/sample_sources/``):
VQA-RAD, SLAKE, PathVQA, PMC-VQA and the IU-Xray / MIMIC-CXR reports, each in its released layout
(train and test side by side, as released; ``docs/corpora.md``) with the cases its reader must
handle by name.

Run once by hand; the output is committed and never regenerated at build time::

    .venv/bin/python scripts/make_sample_sources_train_splits.py [--out DIR]

Every file is synthetic: pictures from ``make_sample_sources_corpora.picture`` (seeded by file
name; PNGs are those pictures re-saved losslessly) and questions, answers and reports written
for this repository (Apache-2.0), in English and, for SLAKE, Chinese. Same Pillow -> same bytes.
Planted in each set (each reader's docstring names the reasons):

* an image that train and test share (VQA-RAD, SLAKE: the same file; PathVQA: a train file with
  the very pixels of a test file), which a build checked against the registered test split drops
  as ``contaminated``;
* an image only the test (or validation) split names (``held_out_split``), an image no question
  names (``image_not_named``, VQA-RAD), a train row whose image is missing (``missing_image``);
* VQA-RAD: a numeric answer and a train paraphrase linked to a test question (the benchmark
  reader drops it); SLAKE: Chinese questions (是/否 answers are yes/no); PMC-VQA: released
  option strings with letters and stray spaces; IU-Xray: two views per study.
"""

from __future__ import annotations

import argparse
import csv
import io
import pickle
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sample_sources_corpora import DEFAULT_OUT, picture, write, write_json  # noqa: E402


def png_picture(name: str, colour: bool = True) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(picture(name, colour))).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def vqa_rad(out: Path) -> None:
    top = out / "VQA_RAD"
    for n in (201, 202, 203, 204, 205):
        write(top / "VQA_RAD Image Folder" / f"synpic{n}.jpg", picture(f"vqa_rad/synpic{n}", colour=False))

    def q(qid, image, question, answer, atype, phrase, link):
        return {"qid": qid, "phrase_type": phrase, "qid_linked_id": link, "image_case_url": "", "image_name": image,
                "image_organ": "CHEST", "evaluation": "given", "question": question, "question_rephrase": "NULL",
                "question_relation": "NULL", "question_frame": "NULL", "question_type": "PRES",
                "answer": answer, "answer_type": atype}

    write_json(top / "VQA_RAD Dataset Public.json", [
        q(1, "synpic201.jpg", "Is there a pleural effusion?", "Yes", "CLOSED", "freeform", "L1"),
        q(2, "synpic201.jpg", "Where is the effusion?", "left side", "OPEN", "test_freeform", "L2"),  # shared image
        q(3, "synpic202.jpg", "How many ribs are fractured?", 3, "OPEN", "freeform", "L3"),
        q(4, "synpic202.jpg", "Is the trachea midline?", "yes", "CLOSED", "freeform", "L4"),
        q(5, "synpic203.jpg", "Which organ is enlarged?", "heart", "OPEN", "test_freeform", "L5"),  # test only
        q(6, "synpic205.jpg", "Is the liver enlarged?", "no", "CLOSED", "test_freeform", "L6"),
        q(7, "synpic205.jpg", "Does the liver appear enlarged?", "no", "CLOSED", "para", "L6"),  # linked to test
        q(8, "synpic209.jpg", "Is there a pneumothorax?", "no", "CLOSED", "freeform", "L8"),  # image missing
    ])  # synpic204: no question names it


def slake(out: Path) -> None:
    top = out / "Slake1.0"
    for n in (1, 2, 3, 4):
        write(top / "imgs" / f"xmlab{n}" / "source.jpg", picture(f"slake/xmlab{n}"))

    def q(qid, img, question, answer, lang, atype, modality="CT"):
        return {"img_id": int(img[5:]), "img_name": f"{img}/source.jpg", "question": question, "answer": answer,
                "q_lang": lang, "location": "Lung", "modality": modality, "answer_type": atype,
                "base_type": "vqa", "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": qid}

    write_json(top / "train.json", [
        q(101, "xmlab1", "Does the picture contain lung?", "Yes", "en", "CLOSED"),  # xmlab1 is a test image too
        q(102, "xmlab1", "图中包含肺吗?", "是", "zh", "CLOSED"),
        q(103, "xmlab2", "Which organ is abnormal?", "Left Lung", "en", "OPEN", "MRI"),
        q(104, "xmlab2", "哪个器官不正常?", "左肺", "zh", "OPEN", "MRI"),
        q(105, "xmlab9", "Is this an MRI?", "No", "en", "CLOSED"),  # its image is missing
    ])
    write_json(top / "test.json", [q(201, "xmlab1", "What modality is used?", "CT", "en", "CLOSED"),
                                   q(202, "xmlab3", "Is the heart enlarged?", "No", "en", "CLOSED")])
    write_json(top / "validate.json", [q(301, "xmlab4", "Where is the liver?", "Right", "en", "OPEN")])


def path_vqa(out: Path) -> None:
    top = out / "pvqa"
    for name in ("train_0000", "train_0001", "train_0002", "val_0000", "test_0001"):
        split = name.split("_")[0]
        write(top / "images" / split / f"{name}.jpg", picture(f"path_vqa/{name}"))
    # the release drew train and test from the same books: the same picture under two names
    write(top / "images" / "test" / "test_0000.jpg", (top / "images" / "train" / "train_0001.jpg").read_bytes())
    qas = {
        "train": [{"image": "train_0000", "question": "is there inflammation?", "answer": "yes"},
                  {"image": "train_0000", "question": "what are present?", "answer": "neutrophils"},
                  {"image": "train_0001", "question": "what does this image show?", "answer": "granuloma"},
                  {"image": "train_0002", "question": "is this a fibroadenoma?", "answer": "no"},
                  {"image": "train_0007", "question": "what is shown?", "answer": "necrosis"}],  # image missing
        "val": [{"image": "val_0000", "question": "is this benign?", "answer": "yes"}],
        "test": [{"image": "test_0000", "question": "what is shown?", "answer": "granuloma"},
                 {"image": "test_0001", "question": "is there fibrosis?", "answer": "no"}],
    }
    for split, rows in qas.items():
        write(top / "qas" / split / f"{split}_qa.pkl", pickle.dumps(rows, protocol=2))


def pmc_vqa(out: Path) -> None:
    top = out / "PMC-VQA"
    for name in ("PMC1001_fig1.jpg", "PMC1002_fig3.jpg", "PMC9001_fig2.jpg"):
        write(top / "images" / name, picture(f"pmc_vqa/{name}"))
    header = ["index", "Figure_path", "Caption", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
              "Answer", "split"]
    train = [
        ["0", "PMC1001_fig1.jpg", "Axial CT of the chest.", "Which imaging modality is shown?",
         " A:CT ", " B:MRI", " C:Ultrasound ", " D:PET ", "A", "train"],
        ["1", "PMC1002_fig3.jpg", "A stained section.", "What stain was used?",
         " A:Gram stain", "  B: Hematoxylin and eosin ", " C:PAS", " D:Silver", "B", "train"],
        ["2", "PMC1003_fig1.jpg", "A fundus photograph.", "Which structure is marked?",
         " A:Macula", " B:Optic disc", " C:Fovea", " D:Vessel", "B", "train"],  # figure missing
    ]
    test = [["0", "PMC9001_fig2.jpg", "A knee radiograph.", "Which joint is shown?",
             " A:Hip", " B:Knee", " C:Ankle", " D:Elbow", "B", "test"]]
    for name, rows in (("train_2.csv", train), ("test_2.csv", test)):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerows([header, *rows])
        write(top / name, buf.getvalue())


def _r2gen(top: Path, entries: dict[str, list[dict]]) -> None:
    write_json(top / "annotation.json", entries)


def iu_xray(out: Path) -> None:
    top = out / "iu_xray"
    studies = ("CXR10_IM-0010", "CXR11_IM-0011", "CXR12_IM-0012", "CXR14_IM-0014")
    for study in studies:
        for view in (0, 1):
            write(top / "images" / study / f"{view}.png", png_picture(f"iu_xray/{study}/{view}", colour=False))

    def entry(study, report, split):
        return {"id": study, "report": report, "image_path": [f"{study}/0.png", f"{study}/1.png"], "split": split}

    _r2gen(top, {
        "train": [entry("CXR10_IM-0010", "the heart is normal in size . the mediastinum is unremarkable . "
                                         "the lungs are clear .", "train"),
                  entry("CXR11_IM-0011", "there is a small left pleural effusion . no pneumothorax . "
                                         "heart size is normal .", "train"),
                  entry("CXR13_IM-0013", "no acute cardiopulmonary abnormality .", "train")],  # images missing
        "val": [entry("CXR14_IM-0014", "mild cardiomegaly . no focal consolidation .", "val")],
        "test": [entry("CXR12_IM-0012", "the lungs are hyperexpanded . no focal airspace disease .", "test")],
    })


def mimic_cxr(out: Path) -> None:
    top = out / "mimic_cxr"
    rels = {"train": ["p10/p10000032/s50414267/02aa804e.jpg", "p10/p10000764/s57375967/096052b7.jpg"],
            "test": ["p10/p10000898/s50771383/2a280266.jpg"]}
    for rel in rels["train"] + rels["test"]:
        write(top / "images" / rel, picture(f"mimic_cxr/{rel}", colour=False))

    def entry(rel, report, split):
        subject, study = rel.split("/")[1][1:], rel.split("/")[2][1:]
        return {"id": Path(rel).stem, "study_id": int(study), "subject_id": int(subject), "report": report,
                "image_path": [rel], "split": split}

    _r2gen(top, {
        "train": [entry(rels["train"][0], "no acute cardiopulmonary process . heart size is normal .", "train"),
                  entry(rels["train"][1], "mild pulmonary edema . small bilateral pleural effusions .", "train"),
                  entry("p10/p10000999/s50000000/deadbeef.jpg", "no pneumothorax .", "train")],  # image missing
        "val": [],
        "test": [entry(rels["test"][0], "stable cardiomegaly . no pleural effusion .", "test")],
    })


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    for make in (vqa_rad, slake, path_vqa, pmc_vqa, iu_xray, mimic_cxr):
        make(args.out)
    print(f"wrote the benchmark train-split samples under {args.out}")


if __name__ == "__main__":
    main()
