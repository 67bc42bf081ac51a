"""Caption readers (roco_v2, medicat, medpix2, fairvlmed), caption cleaning/filters, and the
``captions`` converter, on the bundled samples and on damaged copies of them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datakit
from datakit.converters.base import ConvertContext
from datakit.converters.caption_filters import REASONS, CaptionPolicy, check_caption, clean_caption
from datakit.converters.captions import MIN_QUESTIONS, TASKS
from datakit.converters.templates import template_bank
from datakit.errors import Rejected
from datakit.record import LoadedRecord
from datakit.registry import get_converter, get_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.fairvlmed import fundus_png

SAMPLES = Path(datakit.__file__).parent / "sample_sources"
CAPTIONS = get_converter("captions")
MEDICAT_JSONL = "release/s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl"


class Outcome:
    def __init__(self, reader: SourceReader) -> None:
        self.loaded: dict[str, LoadedRecord] = {}
        self.refused: dict[str, tuple[str, str]] = {}  # path -> (reason, message)
        for item in reader.discover():
            if isinstance(item, Rejection):
                self.refused[item.path] = (item.reason, f"{item.reason}: {item.path} ({item.detail})")
                continue
            try:
                self.loaded[item.record_id] = reader.load(item)
            except Rejected as e:
                self.refused[e.path or ""] = (e.reason, str(e))


def run(reader: SourceReader) -> Outcome:
    return Outcome(reader)


def reader_for(name: str, base: Path = SAMPLES, **options) -> SourceReader:
    cls = get_source(name)
    return cls(base / cls.top_folder, **options)


def convert(loaded: LoadedRecord, tasks=("caption_brief", "caption_detailed"), recipe_langs=("en", "zh"), **options):
    return CAPTIONS.fn(loaded, ConvertContext(seed=3, tasks=tuple(tasks), langs=tuple(recipe_langs), options=options))


# --- cleaning and filters --------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("Figure 2: axial CT of the chest shows a mass.", "Axial CT of the chest shows a mass."),
    ("Fig. 3a Axial CT showing a lesion [12].", "Axial CT showing a lesion."),
    ("FIG 1 - MRI of the knee (Smith et al., 2019).", "MRI of the knee."),
    ("Supplementary Figure S2. Chest X-ray of a child (ref. 4)", "Chest X-ray of a child"),
    ("Figure 2 B: sagittal view of the spine", "Sagittal view of the spine"),
    ("  Large  filling\n\ndefect\tdraped [3, 5-7].", "Large filling defect draped."),
    ("CT &amp; MRI of the brain\u200b", "CT & MRI of the brain"),
    ("Image shows a nodule [2] in the apex.", "Image shows a nodule [2] in the apex."),  # mid-text citation kept
    ("Figures 2 and 3 show the lesion.", "Figures 2 and 3 show the lesion."),
])
def test_clean_caption(raw, clean):
    assert clean_caption(raw) == clean


@pytest.mark.parametrize("value, reason", [
    (None, "non_text_caption"), (12, "non_text_caption"), (["a"], "non_text_caption"),
    ("--- 12 ---", "non_text_caption"),
    ("", "empty_caption"), (" \n\t", "empty_caption"),
    ("Figure 2.", "boilerplate_caption"), ("IN PROGRESS.", "boilerplate_caption"), ("N/A", "boilerplate_caption"),
    ("1.6 x 1.8 x 2.2 cm (12.4 ml)", "mostly_non_letters"),
    ("pelvis", "caption_too_short"), ("Fig. 1: chest radiograph", "caption_too_short"),
    (" ".join(["word"] * 401), "caption_too_long"),
    ("Axial CT of the chest.", None),
])
def test_check_caption_reasons(value, reason):
    assert check_caption(value, CaptionPolicy())[1] == reason
    assert reason is None or reason in REASONS


def test_caption_policy_validation():
    with pytest.raises(ValueError, match="min_words"):
        CaptionPolicy(min_words=10, max_words=5)
    with pytest.raises(ValueError, match="min_letter_fraction"):
        CaptionPolicy(min_letter_fraction=1.5)
    assert check_caption("Chest radiograph", CaptionPolicy(min_words=2))[1] is None
    assert check_caption("Unremarkable study today", CaptionPolicy(boilerplate=("unremarkable study today",)))[1] \
        == "boilerplate_caption"


# --- readers ---------------------------------------------------------------------------------

def test_roco_reads_every_split_and_keeps_raw_captions():
    out = run(reader_for("roco_v2"))
    assert not out.refused and len(out.loaded) == 5
    first = out.loaded["ROCOv2_2023_train_000001"]
    assert first.facts["texts"]["caption"].startswith("Figure 1: Axial computed tomography")
    assert first.facts["text_origin"]["caption"] == "train_captions.csv:2"
    assert first.record.primary_file == "train/ROCOv2_2023_train_000001.jpg"
    assert first.facts["label"] is None


def test_roco_bad_rows_and_orphans(sources_copy):
    top = sources_copy / "ROCOv2"
    csv = top / "train_captions.csv"
    csv.write_bytes(csv.read_bytes() + b'ROCOv2_2023_train_000009,"A caption"\nROCOv2_2023_train_000003,x\n'
                    b'ROCOv2_2023_train_000010,"caf\xe9 au lait spots"\n')
    (top / "valid" / "ROCOv2_2023_valid_000099.jpg").write_bytes(b"")
    out = run(reader_for("roco_v2", sources_copy))
    assert {p: r for p, (r, _) in out.refused.items()} == {
        "train_captions.csv:5": "missing_image", "train_captions.csv:6": "duplicate_row",
        "train_captions.csv:7": "non_utf8", "valid/ROCOv2_2023_valid_000099.jpg": "image_without_caption"}
    assert len(out.loaded) == 5


def test_medicat_lines_and_their_problems(sources_copy):
    out = run(reader_for("medicat"))
    assert not out.refused and len(out.loaded) == 4
    label_only = out.loaded["7f3e2d1c0b9a8f7e6d5c4b3a29180716f5e4d3c2_3-Figure2-1.png"]
    assert label_only.facts["texts"]["caption"] == "Figure 2."
    top = sources_copy / "medicat"
    jsonl = top / MEDICAT_JSONL
    good = json.loads(jsonl.read_bytes().splitlines()[0])
    extra = [b"{not json", json.dumps({**good, "fig_uri": None}).encode(), b'{"pdf_hash": "ab", "fig_uri": "caf\xe9"}',
             json.dumps({**good, "fig_uri": "9-Figure9-1.png"}).encode(), json.dumps(good).encode(),
             json.dumps({**good, "fig_uri": "4-Figure3-1.png", "s2_caption": None}).encode(), b"[1, 2]"]
    jsonl.write_bytes(jsonl.read_bytes() + b"\n".join(extra) + b"\n")
    out = run(reader_for("medicat", sources_copy))
    rel = MEDICAT_JSONL
    assert {p: r for p, (r, _) in out.refused.items()} == {
        f"{rel}:5": "malformed_json", f"{rel}:6": "missing_field", f"{rel}:7": "non_utf8",
        f"{rel}:8": "missing_image", f"{rel}:9": "duplicate_row", f"{rel}:10": "duplicate_row",
        f"{rel}:11": "malformed_json"}
    assert len(out.loaded) == 4


def test_medpix_texts_modality_and_bad_entries(sources_copy):
    out = run(reader_for("medpix2"))
    assert not out.refused and len(out.loaded) == 5
    ct = out.loaded["MPX1009_synpic46283"]
    assert ct.record.modality == "ct" and "findings" in ct.facts["texts"]
    mr = out.loaded["MPX1033_synpic45451"]
    assert mr.record.modality == "mri" and "findings" not in mr.facts["texts"]  # the case has empty Findings
    assert mr.facts["text_origin"]["caption"] == "Descriptions.json#4"
    top = sources_copy / "MedPix-2-0"
    entries = json.loads((top / "Descriptions.json").read_text())
    entries += ["oops", {**entries[0], "image": None}, {**entries[0], "image": "MPX9_synpic1"}, entries[1]]
    (top / "Descriptions.json").write_text(json.dumps(entries))
    out = run(reader_for("medpix2", sources_copy))
    assert {p: r for p, (r, _) in out.refused.items()} == {
        "Descriptions.json#5": "malformed_entry", "Descriptions.json#6": "malformed_entry",
        "Descriptions.json#7": "missing_image", "Descriptions.json#8": "duplicate_row"}
    (top / "Descriptions.json").write_text("{}")
    assert run(reader_for("medpix2", sources_copy)).refused == {
        "Descriptions.json": ("malformed_json", "malformed_json: Descriptions.json (a dict, not a JSON array)")}


def test_fairvlmed_reads_both_fundus_keys_notes_and_summaries():
    out = run(reader_for("fairvlmed"))
    assert not out.refused and len(out.loaded) == 4
    val = out.loaded["Validation/data_07001"]
    assert val.facts["fundus_key"] == "fundus_slo" and val.facts["label"] == "glaucoma"
    assert "note_summary" not in val.facts["texts"] and val.facts["texts"]["note"].startswith("Glaucoma suspect")
    train = out.loaded["Training/data_00001"]
    assert train.facts["fundus_key"] == "slo_fundus"
    assert train.facts["texts"]["note_summary"].startswith("Patient has primary open angle glaucoma")
    with np.load(SAMPLES / "FairVLMed/Training/data_00001.npz") as npz:
        array = npz["slo_fundus"]
    decoded = np.asarray(Image.open(io.BytesIO(train.media[0].data)))
    assert train.media[0].ext == "png" and np.array_equal(decoded, array)
    again = run(reader_for("fairvlmed")).loaded["Training/data_00001"]
    assert again.media[0].data == train.media[0].data  # deterministic encoding
    assert train.file_sha256 == {"Training/data_00001.npz": train.file_sha256["Training/data_00001.npz"]}


def test_fundus_png_scales_other_dtypes_and_refuses_bad_arrays():
    ramp = np.linspace(-1.0, 3.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    decoded = np.asarray(Image.open(io.BytesIO(fundus_png(ramp, "x.npz").data)))
    assert decoded.dtype == np.uint8 and decoded.min() == 0 and decoded.max() == 255
    bad = [(np.full((8, 8), 7, np.uint8), "constant_image"), (np.zeros((4, 4, 4), np.uint8), "bad_fundus_array"),
           (np.full((8, 8), np.nan), "bad_fundus_array"), (np.zeros((0, 3), np.uint8), "bad_fundus_array")]
    for array, reason in bad:
        with pytest.raises(Rejected) as e:
            fundus_png(array, "x.npz")
        assert e.value.reason == reason and e.value.path == "x.npz"


def test_fairvlmed_bad_archives(sources_copy):
    top = sources_copy / "FairVLMed" / "Training"
    data = (top / "data_00001.npz").read_bytes()
    (top / "data_00001.npz").write_bytes(data[: len(data) // 2])
    buf = io.BytesIO()
    np.savez(buf, note=np.array("a note"), glaucoma=np.int64(0))
    (top / "data_00003.npz").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, slo_fundus=np.arange(16, dtype=np.uint8).reshape(4, 4), glaucoma=np.int64(3))
    (top / "data_00004.npz").write_bytes(buf.getvalue())
    out = run(reader_for("fairvlmed", sources_copy))
    assert {p: r for p, (r, _) in out.refused.items()} == {
        "Training/data_00001.npz": "malformed_npz", "Training/data_00003.npz": "missing_fundus",
        "Training/data_00004.npz": "unknown_label"}
    assert len(out.loaded) == 3


# --- captions converter ----------------------------------------------------------------------

def test_question_pools_have_ten_phrasings_per_task_and_language():
    bank = template_bank("captions")
    for task in TASKS:
        for lang in ("en", "zh"):
            pool = bank.pool(task, "question", lang)
            assert len(pool) >= MIN_QUESTIONS == 10 and len(set(pool)) == len(pool)


def test_brief_and_detailed_split_captions_by_length():
    loaded = run(reader_for("roco_v2")).loaded
    short, long = loaded["ROCOv2_2023_train_000001"], loaded["ROCOv2_2023_test_000001"]
    (s,) = convert(short)
    assert s.task == "caption_brief" and s.question_type == "caption" and s.lang == "en"
    assert s.answer == s.conversation[1]["value"] == ("Axial computed tomography of the chest showing a "
                                                      "spiculated nodule in the right upper lobe.")
    assert s.provenance["text"] == "caption" and s.provenance["text_origin"] == "train_captions.csv:2"
    (d,) = convert(long)
    assert d.task == "caption_detailed"
    assert convert(long, brief_max_words=100)[0].task == "caption_brief"
    assert convert(short, tasks=("caption_detailed",)) == []


def test_filter_drops_are_rejections_naming_file_and_text_origin():
    loaded = run(reader_for("medpix2")).loaded
    with pytest.raises(Rejected) as e:
        convert(loaded["MPX1033_synpic45450"])
    assert e.value.reason == "boilerplate_caption" and e.value.path == "images/MPX1033_synpic45450.png"
    assert "Descriptions.json#3" in e.value.detail and "IN PROGRESS" in e.value.detail
    with pytest.raises(Rejected) as e:
        convert(loaded["MPX1012_synpic22949"])
    assert e.value.reason == "caption_too_short"
    assert convert(loaded["MPX1012_synpic22949"], min_words=1)[0].answer == "pelvis"


def test_chinese_needs_a_translation():
    from datakit.converters.base import Missing
    from datakit.llm.request import LLMReply

    loaded = run(reader_for("roco_v2")).loaded["ROCOv2_2023_train_000001"]
    assert [s.lang for s in convert(loaded, recipe_langs=("en", "zh"))] == ["en"]  # default langs: [en]
    en, missing = convert(loaded, recipe_langs=("en", "zh"), langs=["en", "zh"])
    assert isinstance(missing, Missing) and (missing.lang, missing.status) == ("zh", "skipped_llm")
    spec = get_converter("captions")
    ctx = ConvertContext(seed=7, tasks=("caption_brief", "caption_detailed"), langs=("en", "zh"),
                         options={"langs": ["en", "zh"]})
    (name, request), = spec.requests(loaded, ctx).items()
    assert request.task == "translate_zh" and en.answer in request.messages[1].content[0]
    reply = LLMReply(cache_key="k1", parsed={"translations": ["胸部轴位CT显示右上叶毛刺状结节。"]})
    en, zh = spec.fn(loaded, ConvertContext(seed=7, tasks=ctx.tasks, langs=ctx.langs, options=ctx.options,
                                            answers={name: reply}))
    assert zh.lang == "zh" and zh.answer == "胸部轴位CT显示右上叶毛刺状结节。" and zh.group == en.group
    assert zh.provenance["template_id"].startswith("caption_brief/zh/")
    with pytest.raises(ValueError, match="subset of the recipe's langs"):
        convert(loaded, recipe_langs=("en",), langs=["zh"])


def test_report_and_findings_tasks_and_text_override():
    fair = run(reader_for("fairvlmed")).loaded["Training/data_00002"]
    (note,) = convert(fair, tasks=("report",))
    assert note.question_type == "report" and note.answer.startswith("52 y/o female")
    (summary,) = convert(fair, tasks=("report",), texts={"report": "note_summary"})
    assert summary.answer.startswith("No glaucoma") and summary.provenance["text"] == "note_summary"
    medpix = run(reader_for("medpix2")).loaded["MPX1009_synpic46283"]
    findings = [s for s in convert(medpix, tasks=("caption_brief", "findings")) if s.task == "findings"]
    assert findings[0].answer.startswith("Bladder with thickened wall") and findings[0].question_type == "report"


def test_converter_rejects_unknown_options_and_tasks():
    loaded = run(reader_for("roco_v2")).loaded["ROCOv2_2023_train_000001"]
    with pytest.raises(ValueError, match="unknown option"):
        convert(loaded, colour="red")
    with pytest.raises(ValueError, match="options.texts"):
        convert(loaded, texts={"nope": "caption"})
    with pytest.raises(ValueError, match="unknown task"):
        convert(loaded, tasks=("caption_long",))
