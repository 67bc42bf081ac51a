"""The label readers (knee_xray, brain_tumor_mri, pad_ufes_20, eyepacs) and the metadata converter.

Bad-input tests damage a ``tmp_path`` copy of the bundled samples and check that exactly the
damaged input is refused, with its reason and its file (and, for CSV rows, its line), while every
other record is still discovered and loaded.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import datakit
from datakit.converters.base import ConvertContext
from datakit.converters.templates import MIN_QUESTIONS, template_bank, vocabulary
from datakit.errors import Rejected
from datakit.record import LoadedRecord
from datakit.registry import get_converter, get_source
from datakit.sources.base import Rejection, SourceReader

SAMPLES = Path(datakit.__file__).parent / "sample_sources"
FACT_KEYS = {"label", "label_set", "body_part", "lesion_mask", "lesion_expected"}
LABEL_SOURCES = ("knee_xray", "brain_tumor_mri", "pad_ufes_20", "eyepacs", "fairvlmed")
METADATA = get_converter("metadata")
LABELS = get_converter("labels")


@dataclass
class Outcome:
    loaded: dict[str, LoadedRecord]
    refused: dict[str, tuple[str, str]]  # path -> (reason, message)


def run(reader: SourceReader) -> Outcome:
    loaded: dict[str, LoadedRecord] = {}
    refused: dict[str, tuple[str, str]] = {}
    for item in reader.discover():
        if isinstance(item, Rejection):
            assert item.path not in refused, f"two rejections name {item.path}"
            refused[item.path] = (item.reason, f"{item.reason}: {item.path} {item.detail}")
            continue
        try:
            loaded[item.record_id] = reader.load(item)
        except Rejected as e:
            refused[e.path or ""] = (e.reason, str(e))
    return Outcome(loaded, refused)


def reader_for(name: str, base: Path = SAMPLES, **options) -> SourceReader:
    cls = get_source(name)
    return cls(base / cls.top_folder, **options)


# --- bundled samples --------------------------------------------------------------------------

@pytest.mark.parametrize("name, n", [("knee_xray", 5), ("brain_tumor_mri", 8), ("pad_ufes_20", 6), ("eyepacs", 6)])
def test_bundled_samples_load_cleanly(name, n):
    out = run(reader_for(name))
    assert out.refused == {}
    assert len(out.loaded) == n
    for loaded in out.loaded.values():
        assert FACT_KEYS <= set(loaded.facts)
        assert loaded.facts["label"] in loaded.facts["label_set"]
        assert len(loaded.media) == 1 and loaded.media[0].width == loaded.media[0].height == 64
        assert loaded.record.primary_file in loaded.file_sha256
        assert not Path(loaded.record.primary_file).is_absolute()


@pytest.mark.parametrize("name", LABEL_SOURCES)
def test_every_label_has_both_translations(name):
    vocab, cls = vocabulary(), get_source(name)
    for label in cls.label_set:
        assert vocab.label(name, label, "en") and vocab.label(name, label, "zh")
    assert vocab.term("modalities", cls.modality, "zh")


def test_knee_reads_one_expert_and_its_grades():
    first = run(reader_for("knee_xray")).loaded
    grades = {r.record.record_id.split("/")[-1]: (r.facts["label"], r.facts["kl_grade"]) for r in first.values()}
    assert grades == {"NormalG0 (1)": ("normal", 0), "DoubtfulG1 (2)": ("doubtful", 1), "MildG2 (3)": ("mild", 2),
                      "ModerateG3 (4)": ("moderate", 3), "SevereG4 (5)": ("severe", 4)}
    second = run(reader_for("knee_xray", expert="MedicalExpert-II")).loaded
    regraded = second["MedicalExpert-II/2Mild/MildG2 (2)"]
    assert regraded.facts["label"] == "mild"
    # the same picture as expert I's "doubtful" one: the experts share images, hence one per build
    assert regraded.media[0].data == first["MedicalExpert-I/1Doubtful/DoubtfulG1 (2)"].media[0].data
    with pytest.raises(ValueError, match="one folder name"):
        reader_for("knee_xray", expert=["MedicalExpert-I", "MedicalExpert-II"])


def test_knee_reads_a_copy_without_the_nested_folder(tmp_path):
    flat = tmp_path / "knee"
    shutil.copytree(SAMPLES / "Digital Knee X-ray Images" / "Knee X-ray Images", flat)
    out = run(get_source("knee_xray")(flat))
    assert len(out.loaded) == 5 and not out.refused


def test_brain_splits_option_and_missing_class_folder(sources_copy):
    assert len(run(reader_for("brain_tumor_mri", splits=["Training"])).loaded) == 4
    top = sources_copy / "brain-tumor-mri-dataset"
    for p in (top / "Testing" / "pituitary").iterdir():
        p.unlink()
    (top / "Testing" / "pituitary").rmdir()
    victim = top / "Training" / "glioma" / "Tr-gl_0010.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    out = run(reader_for("brain_tumor_mri", sources_copy))
    assert out.refused.keys() == {"Testing/pituitary", "Training/glioma/Tr-gl_0010.jpg"}
    assert out.refused["Testing/pituitary"][0] == "unreadable_dir"
    assert out.refused["Training/glioma/Tr-gl_0010.jpg"][0] in ("truncated_image", "corrupt_image")
    assert len(out.loaded) == 6


# --- PAD-UFES-20 -----------------------------------------------------------------------------

def test_pad_metadata_is_normalised():
    loaded = run(reader_for("pad_ufes_20")).loaded
    ack = loaded["PAT_771_1489_179.png"]
    assert ack.facts["label"] == "ack" and ack.facts["body_part"] == "skin"
    meta = ack.facts["metadata"]
    assert meta["background_father"] == "BRAZIL" == meta["background_mother"]  # BRASIL respelled
    assert "grew" not in meta and "changed" not in meta  # UNK left out
    assert meta["itch"] is True and meta["hurt"] is False and meta["age"] == 77
    assert meta["fitzpatrick"] == 2.0 and meta["region"] == "face" and meta["gender"] == "male"
    sparse = loaded["PAT_1516_1765_530.png"].facts["metadata"]
    assert "smoke" not in sparse and "gender" not in sparse and sparse["age"] == 8  # empty cells left out
    # images sit two folders deep, as the extracted zips put them
    assert ack.record.primary_file == "images/imgs_part_2/imgs_part_2/PAT_771_1489_179.png"


def _csv_lines(top: Path) -> list[bytes]:
    return (top / "metadata.csv").read_bytes().splitlines(keepends=True)


def test_pad_malformed_rows_are_rejected_with_file_and_line(sources_copy):
    top = sources_copy / "PAD-UFES-20"
    lines = _csv_lines(top)
    good = lines[1].decode()
    bad = [
        good.replace("PAT_46_881_14.png", "PAT_1_1_1.png").replace(",BCC,", ",,"),  # missing label
        good.replace("PAT_46_881_14.png", "PAT_2_2_2.png").replace(",BCC,", ",XYZ,"),  # unknown label
        good.replace("PAT_46_881_14.png", "PAT_3_3_3.png").replace("POMERANIA", "POMER\udcff", 1),  # non-UTF-8
        good.replace("PAT_46_881_14.png", "PAT_4_4_4.png"),  # image file missing
        good.replace("PAT_46_881_14.png", "PAT_5_5_5.png").replace(",NECK,", ",NECK,EXTRA,"),  # 27 fields
        good,  # the same img_id again
    ]
    assert b",NEV,False," in lines[2]
    lines[2] = lines[2].replace(b",NEV,False,", b",NEV,maybe,")  # itch neither True, False nor UNK
    data = b"".join(lines) + b"".join(b.encode("utf-8", "surrogateescape") for b in bad)
    (top / "metadata.csv").write_bytes(data)
    first = len(lines) + 1
    expected = ["missing_label", "unknown_label", "non_utf8", "missing_image", "malformed_row", "duplicate_row"]
    out = run(reader_for("pad_ufes_20", sources_copy))
    assert {path: reason for path, (reason, _) in out.refused.items()} == {
        "metadata.csv:3": "malformed_value",
        **{f"metadata.csv:{first + i}": reason for i, reason in enumerate(expected)},
    }
    assert "already on line 2" in out.refused[f"metadata.csv:{first + 5}"][1]
    assert "PAT_4_4_4.png" in out.refused[f"metadata.csv:{first + 3}"][1]
    assert "itch" in out.refused["metadata.csv:3"][1]
    assert len(out.loaded) == 5 and "PAT_1516_1765_530.png" not in out.loaded


def test_pad_orphan_and_duplicate_image_files(sources_copy):
    top = sources_copy / "PAD-UFES-20" / "images"
    src = top / "imgs_part_1" / "imgs_part_1" / "PAT_46_881_14.png"
    (top / "imgs_part_3" / "PAT_46_881_14.png").write_bytes(src.read_bytes())  # also extracted flat
    (top / "imgs_part_1" / "imgs_part_1" / "PAT_999_1_1.png").write_bytes(src.read_bytes())
    out = run(reader_for("pad_ufes_20", sources_copy))
    assert {p: r for p, (r, _) in out.refused.items()} == {
        "images/imgs_part_3/PAT_46_881_14.png": "duplicate_image_file",
        "images/imgs_part_1/imgs_part_1/PAT_999_1_1.png": "image_without_metadata",
    }
    assert len(out.loaded) == 6


def test_pad_header_without_a_required_column_is_one_rejection(sources_copy):
    top = sources_copy / "PAD-UFES-20"
    text = (top / "metadata.csv").read_text().replace("diagnostic", "diagnosis", 1)
    (top / "metadata.csv").write_text(text)
    out = run(reader_for("pad_ufes_20", sources_copy))
    assert out.refused["metadata.csv"][0] == "malformed_csv" and "diagnostic" in out.refused["metadata.csv"][1]
    # its images are still accounted for, as images no row describes
    assert sum(r == "image_without_metadata" for r, _ in out.refused.values()) == 6


# --- EyePACS ---------------------------------------------------------------------------------

def test_eyepacs_appends_the_extension_and_reads_levels():
    loaded = run(reader_for("eyepacs")).loaded
    assert {k: v.facts["label"] for k, v in loaded.items()} == {
        "train/10_left": "0", "train/10_right": "0", "train/13_left": "1", "train/13_right": "2",
        "train/15_left": "3", "train/15_right": "4"}
    assert loaded["train/15_right"].record.primary_file == "train/15_right.jpeg"


def test_eyepacs_bad_rows_and_orphans(sources_copy):
    top = sources_copy / "diabetic-retinopathy-detection"
    csv = top / "trainLabels.csv"
    csv.write_bytes(csv.read_bytes() + b"20_left,\n21_left,7\n22_l\xe9ft,1\n23_left,2\n10_left,0\n")
    (top / "train" / "13_left.jpeg").rename(top / "train" / "99_left.jpeg")
    out = run(reader_for("eyepacs", sources_copy))
    assert {p: r for p, (r, _) in out.refused.items()} == {
        "trainLabels.csv:4": "missing_image",  # 13_left moved away
        "trainLabels.csv:8": "missing_label", "trainLabels.csv:9": "unknown_label",
        "trainLabels.csv:10": "non_utf8", "trainLabels.csv:11": "missing_image",
        "trainLabels.csv:12": "duplicate_row", "train/99_left.jpeg": "image_without_label",
    }
    assert len(out.loaded) == 5


def test_eyepacs_test_table_with_usage_column(sources_copy):
    top = sources_copy / "diabetic-retinopathy-detection"
    (top / "test").mkdir()
    (top / "train" / "15_right.jpeg").rename(top / "test" / "1_left.jpeg")
    (top / "retinopathy_solution.csv").write_text("image,level,Usage\n1_left,4,Private\n")
    tables = [{"csv": "trainLabels.csv", "images": "train"}, {"csv": "retinopathy_solution.csv", "images": "test"}]
    out = run(reader_for("eyepacs", sources_copy, tables=tables))
    assert out.loaded["test/1_left"].facts["label"] == "4"
    assert out.refused.keys() == {"trainLabels.csv:7"}  # 15_right moved to test/


# --- metadata converter ----------------------------------------------------------------------

def _metadata_samples(loaded: LoadedRecord, langs=("en", "zh")):
    return METADATA.fn(loaded, ConvertContext(seed=7, tasks=METADATA.tasks, langs=langs))


def test_metadata_states_the_history_and_asks_the_diagnosis():
    loaded = run(reader_for("pad_ufes_20")).loaded
    ack = loaded["PAT_771_1489_179.png"]  # grew and changed UNK
    samples = _metadata_samples(ack)
    assert {s.task for s in samples} == set(METADATA.tasks)
    by = {(s.task, s.lang): s for s in samples}
    en, zh = by[("history_diagnosis_mcq", "en")], by[("history_diagnosis_mcq", "zh")]
    assert en.answer == zh.answer and en.options["ABCD".index(en.answer)] == "actinic keratosis"
    question = en.conversation[0]["value"]
    # the history is in the question itself: what the answer may rest on besides the image
    assert "Patient history: 77 years old; lesion on the face; reports itching" in question
    assert "growth" not in question and "change" not in question  # unknown values are not stated
    assert "患者病史：77岁；病变位于面部；自述瘙痒" in zh.conversation[0]["value"]
    open_en = by[("history_diagnosis_open", "en")]
    assert open_en.answer.endswith("actinic keratosis.") and open_en.question_type == "open"
    for s in samples:
        assert s.group == ack.record.uid and s.conversation[0]["value"].startswith("<image>\n")
        assert not re.search(r"\{[^{}]*\}", s.conversation[0]["value"] + s.conversation[1]["value"])
    # a record whose every history field is unknown gets no history question
    sek = loaded["PAT_2046_4233_795.png"]
    assert {s.task for s in _metadata_samples(sek)} <= set(METADATA.tasks)
    blank = LoadedRecord(record=ack.record, media=ack.media, facts={**ack.facts, "metadata": {}},
                         file_sha256=ack.file_sha256)
    assert _metadata_samples(blank) == []


def test_metadata_is_seeded_and_rejects_options():
    loaded = run(reader_for("pad_ufes_20")).loaded["PAT_46_881_14.png"]
    a, b = _metadata_samples(loaded), _metadata_samples(loaded)
    assert [s.json_bytes() for s in a] == [s.json_bytes() for s in b]
    other = METADATA.fn(loaded, ConvertContext(seed=8, tasks=METADATA.tasks, langs=("en", "zh")))
    assert [s.conversation for s in a] != [s.conversation for s in other]
    with pytest.raises(ValueError, match="no options"):
        METADATA.fn(loaded, ConvertContext(seed=7, tasks=("history_diagnosis_open",), options={"x": 1}))


def test_metadata_templates_and_regions_are_complete():
    bank = template_bank("metadata")
    for task in METADATA.tasks:
        for lang in ("en", "zh"):
            assert len(bank.pool(task, "question", lang)) >= MIN_QUESTIONS
    vocab = vocabulary()
    for region in get_source("pad_ufes_20").options["regions"]:
        assert vocab.term("skin_regions", region.lower(), "zh")


def test_labels_mcq_on_knee_offers_kl_grades():
    loaded = run(reader_for("knee_xray")).loaded["MedicalExpert-I/3Moderate/ModerateG3 (4)"]
    (en, zh) = LABELS.fn(loaded, ConvertContext(seed=1, tasks=("diagnosis_mcq",), langs=("en", "zh")))
    assert len(en.options) == 4 and en.answer == zh.answer
    assert en.options["ABCD".index(en.answer)] == "moderate osteoarthritis (Kellgren-Lawrence grade 3)"
    assert zh.options["ABCD".index(zh.answer)] == "中度骨关节炎（Kellgren-Lawrence 3级）"


def test_fundus_questions_never_repeat_the_body_part():
    loaded = run(reader_for("eyepacs")).loaded["train/13_left"]
    questions = [s.conversation[0]["value"] for seed in range(12)
                 for s in LABELS.fn(loaded, ConvertContext(seed=seed, tasks=LABELS.tasks, langs=("en", "zh")))]
    assert not any("眼底眼底" in q for q in questions)
    assert any("这张眼底图像" in q for q in questions) and any("retinal fundus image" in q for q in questions)
