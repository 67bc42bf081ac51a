"""Write the bundled samples of the stage corpora (``datakit/sample_sources/``): MMC4, PubMedVision,
LLaVA-Med, Quilt-LLaVA, VQA-Med-2019, MIMIC-CXR-VQA and OpenMedReason, each in its released layout
(``docs/corpora.md``) with the bad inputs its reader must refuse by name.

Run once by hand; the output is committed and never regenerated at build time::

    .venv/bin/python scripts/make_sample_sources_corpora.py [--out DIR]

Every file is synthetic: 48x48 pictures drawn from a generator seeded by the file's name (a
smooth random field plus two ellipses, so perceptual hashes differ between files) and texts
written for this repository (Apache-2.0). JPEGs use fixed settings, zips a fixed timestamp and
parquet fixed writer options, so a rerun with the same Pillow/libjpeg/pyarrow gives the same
bytes. Bad inputs planted on purpose (each reader's docstring names the reasons):

* MMC4: a malformed JSON line, a document whose images were never downloaded, a dead link
  trimmed from a document, a match index outside the text, a literal ``<image>`` in web text, a
  document without text, a near-duplicate of another document (MinHash drops it at merge), an
  image no document names.
* PubMedVision / LLaVA-Med / Quilt-LLaVA: a missing image, an empty conversation, a URL-only
  item, a conversation ending on a human turn, a marker count that does not match the images.
* VQA-Med-2019: a row without three fields, a missing image, an image without questions.
* MIMIC-CXR-VQA: an answer-less row, a missing image, an empty answer list (answered "none").
* OpenMedReason: a trace whose letter is not the answer, a question without options, an empty
  image cell.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "datakit" / "sample_sources"
SEED = 20251201
SIZE = 48
JPEG = {"format": "JPEG", "quality": 80, "optimize": False, "progressive": False, "subsampling": 2}
YX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / SIZE


def rng_for(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join((str(SEED),) + parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def picture(name: str, colour: bool = True) -> bytes:
    """A JPEG whose content depends only on ``name``: a smooth random field and two ellipses."""
    rng = rng_for("picture", name)
    coarse = rng.uniform(40, 215, (6, 6, 3 if colour else 1))
    field = np.asarray(Image.fromarray(coarse.astype(np.uint8).squeeze()).resize((SIZE, SIZE), Image.BILINEAR),
                       dtype=np.float64)
    if field.ndim == 2:
        field = field[..., None]
    for _ in range(2):
        cy, cx, ry, rx = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2), rng.uniform(0.08, 0.2)
        inside = ((YX[0] - cy) / ry) ** 2 + ((YX[1] - cx) / rx) ** 2 < 1
        field[inside] = rng.uniform(0, 255, field.shape[-1])
    arr = np.clip(field + rng.normal(0, 4, field.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr.squeeze() if not colour else arr).save(buf, **JPEG)
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_json(path: Path, obj: object) -> None:
    write(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def turns(*values: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


# --- MMC4 ---------------------------------------------------------------------------------------

KNEE = ["Knee pain is one of the most common reasons adults visit a sports clinic.",
        "A plain radiograph shows the joint space between the femur and the tibia.",
        "When the cartilage thins, that space narrows and small bony spurs appear at the margins.",
        "Physiotherapy that strengthens the quadriceps often eases the pain within weeks.",
        "Surgery is kept for the few patients whose symptoms do not improve."]


def _doc(url: str, sentences: list[str], images: list[tuple[str, int, float]], dup: int = 0) -> dict:
    n = len(sentences)
    return {
        "url": url, "text_list": sentences, "could_have_url_duplicate": dup,
        "image_info": [{"image_name": name, "raw_url": f"https://img.example.org/{name}", "matched_text_index": idx,
                        "matched_sim": sim, "face_detections": None} for name, idx, sim in images],
        "similarity_matrix": [[round(0.12 + 0.02 * ((i + j) % 5), 4) for j in range(n)] for i in range(len(images))],
    }


def mmc4(out: Path) -> None:
    top = out / "mmc4"
    shard0 = [
        _doc("https://health.example.org/knee-pain", KNEE, [("3f2a9c1d0b11.jpg", 1, 0.312), ("a41c77e0f902.jpg", 3, 0.268)]),
        _doc("https://clinic.example.org/skin-checks", [
            "Dermatologists look at moles with a handheld dermoscope.",
            "Some web pages print a literal <image> tag where a picture failed to load.",
            "An irregular border or several colours in one lesion is a reason for a biopsy.",
            "Most changing moles turn out to be harmless."],
            [("5be0d2c81a77.jpg", 0, 0.287), ("dead0link000.jpg", 1, 0.251), ("77c3e91f04ad.jpg", 2, 0.301)]),
        None,  # a malformed line
        _doc("https://old.example.org/gallery", ["Pictures from the hospital open day.", "Thanks to every visitor."],
             [("0000gone0001.jpg", 0, 0.22), ("0000gone0002.jpg", 1, 0.21)]),
        # A copy of the knee page with one word changed and its own picture: MinHash drops it.
        _doc("https://mirror.example.net/knee-pain", [s.replace("most common", "commonest") for s in KNEE],
             [("c0ffee1234ab.jpg", 2, 0.295)], dup=1),
        _doc("https://empty.example.org/", ["", "   "], [("ee11ee22ee33.jpg", 0, 0.2)]),
        _doc("https://lab.example.org/blood-smear", [
            "A blood smear is stained and examined under the microscope.",
            "Red cells appear as pale discs without a nucleus.",
            "White cells are fewer and larger, with dark purple nuclei."],
            [("9a8b7c6d5e4f.jpg", 99, 0.24), ("1b2c3d4e5f60.jpg", 1, 0.333)]),
    ]
    lines = [json.dumps(d, ensure_ascii=False) if d else '{"url": "https://broken.example.org/", "text_list": ["cut' for d in shard0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("docs_no_face_shard_0_v2.jsonl", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, "\n".join(lines) + "\n")
    write(top / "docs" / "docs_no_face_shard_0_v2.jsonl.zip", buf.getvalue())
    for name in ("3f2a9c1d0b11.jpg", "a41c77e0f902.jpg", "5be0d2c81a77.jpg", "77c3e91f04ad.jpg", "c0ffee1234ab.jpg",
                 "ee11ee22ee33.jpg", "9a8b7c6d5e4f.jpg", "1b2c3d4e5f60.jpg", "0a1b2c3d4e5f.jpg"):
        write(top / "images" / "0" / name, picture(f"mmc4/{name}"))  # 0a1b2c3d4e5f: no document names it
    shard1 = [
        _doc("https://heart.example.org/echo", [
            "An echocardiogram uses ultrasound to watch the heart beat.",
            "The four chambers and their valves can be seen in one view.",
            "A weak left ventricle pumps less blood with each beat.",
            "Doctors measure that as the ejection fraction."],
            [("4e5f6a7b8c9d.jpg", 0, 0.27), ("d9c8b7a6f5e4.jpg", 2, 0.29), ("abcdef012345.jpg", 2, 0.26)]),
        _doc("https://teeth.example.org/xray", [
            "Dental radiographs show cavities between the teeth that a mirror cannot.",
            "A bitewing film covers the crowns of the upper and lower teeth at once."],
            [("f00dcafe0001.jpg", 1, 0.305)]),
    ]
    write(top / "docs" / "docs_no_face_shard_1_v2.jsonl", "".join(json.dumps(d) + "\n" for d in shard1))
    for name in ("4e5f6a7b8c9d.jpg", "d9c8b7a6f5e4.jpg", "abcdef012345.jpg", "f00dcafe0001.jpg"):
        write(top / "images" / "1" / name, picture(f"mmc4/{name}"))


# --- LLaVA-format sets --------------------------------------------------------------------------

def pubmedvision(out: Path) -> None:
    top = out / "PubMedVision"
    for name in ("pmc_101_0.jpg", "pmc_102_0.jpg", "pmc_102_1.jpg", "pmc_103_0.jpg", "pmc_104_0.jpg"):
        write(top / "images" / name, picture(f"pubmedvision/{name}"))
    write_json(top / "PubMedVision_InstructionTuning_VQA.json", [
        {"id": "Instruction-Tuning_VQA_1", "image": ["images/pmc_101_0.jpg"], "modality": "Computed Tomography",
         "body_part": "Chest", "conversations": turns(
             "<image>\nWhat structure is marked by the bright oval in this chest scan?",
             "The bright oval lies in the right lower lobe and is most consistent with a calcified granuloma.",
             "Does it need follow-up?",
             "A small calcified nodule like this is usually benign; comparison with older scans is enough.")},
        {"id": "Instruction-Tuning_VQA_2", "image": ["images/pmc_102_0.jpg", "images/pmc_102_1.jpg"],
         "modality": "Microscopy", "body_part": "Kidney", "conversations": turns(
             "<image>\n<image>\nCompare the two stained sections.",
             "The first section shows normal glomeruli; the second shows thickened capillary walls.")},
        {"id": "Instruction-Tuning_VQA_3", "image": ["images/pmc_9_0.jpg"], "modality": "X-Ray", "body_part": "Hand",
         "conversations": turns("<image>\nIs there a fracture?", "No fracture line is visible.")},  # missing image
        {"id": "Instruction-Tuning_VQA_4", "image": ["images/pmc_103_0.jpg"], "modality": "MRI", "body_part": "Brain",
         "conversations": []},  # empty conversation
        {"id": "Instruction-Tuning_VQA_5", "image": ["https://www.ncbi.nlm.nih.gov/pmc/articles/PMC0000000/bin/fig1.jpg"],
         "modality": "Ultrasound", "body_part": "Abdomen",
         "conversations": turns("<image>\nWhat organ is shown?", "The liver.")},  # URL-only item
        {"id": "Instruction-Tuning_VQA_6", "image": ["images/pmc_104_0.jpg"], "modality": "Endoscopy",
         "body_part": "Stomach", "conversations": turns(
             "What does the endoscopic view show?",  # no marker: one is put before the question
             "A shallow ulcer with a clean base on the lesser curvature.")},
    ])
    write_json(top / "PubMedVision_Alignment_VQA.json", [
        {"id": "Alignment_VQA_1", "image": ["images/pmc_101_0.jpg"], "modality": "Computed Tomography",
         "body_part": "Chest", "conversations": turns(
             "<image>\nDescribe the image.",
             "An axial chest CT slice with a small, very bright oval nodule in the right lower lobe.")},
        {"id": "Alignment_VQA_2", "image": ["images/pmc_104_0.jpg"], "modality": "Endoscopy", "body_part": "Stomach",
         "conversations": turns("<image>\nWhat is shown here?",
                                "An endoscopic photograph of the stomach wall with a shallow ulcer.")},
        {"id": "Alignment_VQA_3", "image": ["images/pmc_103_0.jpg"], "modality": "MRI", "body_part": "Brain",
         "conversations": turns("<image>\n<image>\nDescribe the figure.", "Two MRI slices.")},  # 2 markers, 1 image
    ])


def llava_med(out: Path) -> None:
    top = out / "LLaVA-Med" / "data"
    for pair in ("32432162_F1", "31001234_F2", "30555000_F3", "29999111_F1"):
        write(top / "images" / f"{pair}.jpg", picture(f"llava_med/{pair}"))
    write_json(top / "instruct" / "llava_med_instruct_60k_inline_mention.json", [
        {"id": "32432162_F1", "image": "32432162_F1.jpg",
         "domain": {"chest_xray": True, "mri": False, "ct_scan": False, "histology": False, "gross": False},
         "conversations": turns(
             "What abnormality is seen in the left lung?\n<image>",  # LLaVA's suffix form, kept as is
             "There is a patchy opacity in the left lower zone, in keeping with consolidation.",
             "What could cause it?",
             "Pneumonia is the most likely cause; aspiration is another possibility.")},
        {"id": "31001234_F2", "image": "31001234_F2.jpg",
         "domain": {"chest_xray": False, "mri": False, "ct_scan": False, "histology": True, "gross": False},
         "conversations": turns("<image>\nWhat type of tissue is this?", "Stratified squamous epithelium.",
                                "Is there dysplasia?")},  # ends on a human turn
        {"id": "28000000_F4", "image": "28000000_F4.jpg",  # never downloaded: the URL list says from where
         "domain": {"chest_xray": False, "mri": True, "ct_scan": False, "histology": False, "gross": False},
         "conversations": turns("<image>\nWhich sequence is this?", "A T2-weighted image.")},
        {"id": "30555000_F3", "image": "30555000_F3.jpg",
         "domain": {"chest_xray": False, "mri": False, "ct_scan": True, "histology": False, "gross": False},
         "conversations": turns("<image>\nWhere is the mass?", "   ")},  # an empty reply
    ])
    write_json(top / "alignment" / "llava_med_alignment_500k.json", [
        {"id": "29999111_F1", "image": "29999111_F1.jpg", "conversations": turns(
            "<image>\nGive a short description of the figure.",
            "Gross photograph of a resected colon segment with an ulcerated tumour.")},
        {"id": "30555000_F3", "image": "30555000_F3.jpg", "conversations": turns(
            "<image>\nSummarize the visual content of the image.",
            "Contrast-enhanced abdominal CT showing a rim-enhancing mass in the left kidney.")},
    ])
    urls = [
        {"pmc_tar_url": "https://ftp.ncbi.nlm.nih.gov/pub/pmc/oa_package/3f/46/PMC7236913.tar.gz",
         "image_file_path": "PMC7236913/fig1.jpg", "pair_id": "32432162_F1"},
        {"pmc_tar_url": "https://ftp.ncbi.nlm.nih.gov/pub/pmc/oa_package/aa/bb/PMC6000004.tar.gz",
         "image_file_path": "PMC6000004/fig4.jpg", "pair_id": "28000000_F4"},
    ]
    write(top / "llava_med_image_urls.jsonl", "".join(json.dumps(u) + "\n" for u in urls) + '{"pmc_tar_url": \n')


def quilt_llava(out: Path) -> None:
    top = out / "Quilt-LLaVA"
    for name in ("lWTeEfSE2oY_187.jpg", "x8Pq2RtZk1A_12.jpg", "x8Pq2RtZk1A_40.jpg"):
        write(top / "quilt_instruct" / name, picture(f"quilt/{name}"))
    for name in ("q1m_000001.jpg", "q1m_000002.jpg"):
        write(top / "quilt_1m" / name, picture(f"quilt/{name}"))
    write_json(top / "quilt_instruct_107k.json", [
        {"id": "lWTeEfSE2oY_187", "image": "lWTeEfSE2oY_187.jpg", "conversations": turns(
            "<image>\nWhat features suggest this is a benign lesion?",
            "The nuclei are small and uniform and the border is well circumscribed.",
            "Anything that argues against that?",
            "A few mitoses are present, but without atypia they do not change the impression.",
            "So what is the most likely diagnosis?",
            "A benign adnexal tumour such as a hidradenoma.")},
        {"id": "x8Pq2RtZk1A_12", "image": "x8Pq2RtZk1A_12.jpg", "conversations": turns(
            "Describe the pattern of growth.\n<image>",
            "Tumour cells form nests separated by thin fibrous septa.")},
        {"id": "x8Pq2RtZk1A_40", "image": "x8Pq2RtZk1A_40.jpg", "conversations": [
            {"from": "gpt", "value": "Here is the slide."}, {"from": "human", "value": "<image>\nWhat is it?"}]},
    ])
    write_json(top / "quilt_pretrain.json", [
        {"id": "q1m_000001", "image": "q1m_000001.jpg", "conversations": turns(
            "<image>\nRender a clear and concise summary of the photo.",
            "Low-power view of skin with a dense dermal lymphoid infiltrate.")},
        {"id": "q1m_000002", "image": "q1m_000002.jpg", "conversations": turns(
            "<image>\nWhat is in the image?", "High-power view of a granuloma with multinucleated giant cells.")},
    ])


# --- QA-pair sets -------------------------------------------------------------------------------

def vqa_med_2019(out: Path) -> None:
    top = out / "VQA-Med-2019" / "ImageClef-2019-VQA-Med-Training"
    for sid in ("synpic100001", "synpic100002", "synpic100003", "synpic100099"):
        write(top / "Train_images" / f"{sid}.jpg", picture(f"vqa_med/{sid}", colour=False))
    rows = {
        "C1_Modality": [("synpic100001", "what modality is shown?", "ct w/contrast (iv)"),
                        ("synpic100002", "was this image taken with mri?", "yes")],
        "C2_Plane": [("synpic100001", "in what plane was this image taken?", "axial"),
                     ("synpic100003", "what plane is this?", "sagittal")],
        "C3_Organ": [("synpic100002", "what organ system is shown in this image?", "skull and contents")],
        "C4_Abnormality": [("synpic100003", "is this image abnormal?", "no")],
    }
    for prefix, pairs in rows.items():
        write(top / "QAPairsByCategory" / f"{prefix}_train.txt", "".join(f"{a}|{b}|{c}\n" for a, b, c in pairs))
    all_pairs = [p for pairs in rows.values() for p in pairs]
    lines = [f"{a}|{b}|{c}" for a, b, c in all_pairs]
    lines.insert(2, "synpic100002|what is the primary abnormality in this image?")  # two fields only
    lines.append("synpic100077|what modality is shown?|xr - plain film")  # its image is missing
    write(top / "All_QA_Pairs_train.txt", "\n".join(lines) + "\n")  # synpic100099: no question names it


def mimic_cxr_vqa(out: Path) -> None:
    top = out / "mimic-cxr-vqa"
    images = {"p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg": "10000032",
              "p10/p10000764/s57375967/096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4.jpg": "10000764"}
    for rel in images:
        write(top / "mimic-cxr-jpg" / "files" / rel, picture(f"mimic/{rel}", colour=False))
    (a, sa), (b, sb) = images.items()

    def row(idx, image, subject, question, semantic, answer, **extra):
        study = image.split("/")[2][1:]
        r = {"split": "train", "idx": idx, "subject_id": subject, "study_id": study,
             "image_id": Path(image).stem, "image_path": image, "question": question, "semantic_type": semantic,
             "content_type": extra.pop("content", "presence"), "template": extra.pop("template", question),
             "template_program": "program_1", "template_arguments": {"object": {}, "attribute": {}, "category": {},
                                                                      "viewpos": {}, "gender": {}}}
        if answer is not None:
            r["answer"] = answer
        return r

    write_json(top / "mimiccxrvqa" / "dataset" / "train.json", [
        row(0, a, sa, "is there evidence of pleural effusion in the left lung?", "verify", ["no"]),
        row(1, a, sa, "list all anatomical findings in the right lung.", "query", ["atelectasis", "lung opacity"],
            content="anatomy"),
        row(2, b, sb, "which is seen, pneumothorax or cardiomegaly?", "choose", ["cardiomegaly"],
            content="abnormality"),
        row(3, b, sb, "list all abnormalities in the left apical zone.", "query", [], content="abnormality"),
        row(4, b, sb, "is the cardiac silhouette enlarged?", "verify", None),  # answer-less release row
        row(5, "p10/p10000999/s50000000/00000000-00000000-00000000-00000000-00000000.jpg", "10000999",
            "is there a rib fracture?", "verify", ["no"]),  # image missing
    ])


def openmedreason(out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def reasoning(chain: str, letter: str) -> str:
        return f"<think>{chain}</think>\n<answer>{letter}</answer>"

    rows = [
        ("omr_1", "Which imaging modality produced this figure?\nA. Ultrasound\nB. Computed tomography\n"
                  "C. Plain radiograph\nD. Light microscopy",
         reasoning("The image shows a grey fan-shaped field with speckle, the look of a sector probe. "
                   "CT and radiographs have no sector shape and microscopy shows stained cells.", "A"), "A"),
        ("omr_2", "What is the most likely diagnosis of the lesion shown?\nA. Lipoma\nB. Melanoma\nC. Haemangioma",
         reasoning("The lesion is dark, asymmetric and has an irregular border with several colours, "
                   "which points to a melanocytic malignancy rather than fat or vessels.", "B"), "B"),
        ("omr_3", "Which stain was most likely used?\nA. Haematoxylin and eosin\nB. Gram stain",
         reasoning("Pink cytoplasm and purple nuclei are the classic appearance of H&E.", "A"), "B"),  # mismatch
        ("omr_4", "Describe the finding in one word.",
         reasoning("It is round.", "A"), "A"),  # no lettered options
        ("omr_5", "Which organ is shown?\nA. Liver\nB. Spleen",
         reasoning("The organ fills the right upper quadrant and is the largest solid organ.", "A"), "A"),
    ]
    images = [{"bytes": picture(f"openmedreason/{rid}"), "path": f"{rid}.jpg"} for rid, *_ in rows]
    images[4] = None  # an empty image cell
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array(images, type=image_type),
        "question": [r[1] for r in rows],
        "reasoning": [r[2] for r in rows],
        "answer": [r[3] for r in rows],
    })
    path = out / "OpenMedReason" / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", use_dictionary=False, write_statistics=False,
                   row_group_size=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    for make in (mmc4, pubmedvision, llava_med, quilt_llava, vqa_med_2019, mimic_cxr_vqa, openmedreason):
        make(args.out)
    print(f"wrote the stage-corpora samples under {args.out}")


if __name__ == "__main__":
    main()
