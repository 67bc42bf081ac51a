"""Readers of the stage corpora (mmc4, pubmedvision, llava_med, quilt_llava, vqa_med_2019,
mimic_cxr_vqa, openmedreason) and their converters (``interleaved``, ``conversations``), on the
bundled samples and on damaged copies: every planted bad input is refused by name, with its reason,
and the good rows pass through unchanged."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import datakit
from datakit.converters.base import ConvertContext
from datakit.converters.interleaved import document_text
from datakit.cot import parse_reply
from datakit.errors import Rejected
from datakit.record import LoadedRecord
from datakit.registry import get_converter, get_source
from datakit.sample import IMAGE_TOKEN, SCHEMA, InterleavedSample, conversation_doc, turn_docs
from datakit.sources.base import Rejection, SourceReader

SAMPLES = Path(datakit.__file__).parent / "sample_sources"
MMC4_ZIP = "docs/docs_no_face_shard_0_v2.jsonl.zip"


class Outcome:
    """Discover + load every record: loaded records by id, refusals by path -> reason."""

    def __init__(self, reader: SourceReader) -> None:
        self.loaded: dict[str, LoadedRecord] = {}
        self.refused: dict[str, str] = {}
        for item in reader.discover():
            if isinstance(item, Rejection):
                assert item.path not in self.refused, item.path
                self.refused[item.path] = item.reason
                continue
            try:
                self.loaded[item.record_id] = reader.load(item)
            except Rejected as e:
                self.refused[e.path or ""] = e.reason


def reader_for(name: str, base: Path = SAMPLES, **options) -> SourceReader:
    cls = get_source(name)
    return cls(base / cls.top_folder, **options)


def samples_of(outcome: Outcome, converter: str, tasks: tuple[str, ...], langs=("en", "zh")) -> list:
    spec = get_converter(converter)
    ctx = ConvertContext(seed=5, tasks=tasks, langs=langs)
    return [s for rid in sorted(outcome.loaded) for s in spec.fn(outcome.loaded[rid], ctx)]


# --- MMC4 -----------------------------------------------------------------------------------------

def test_mmc4_documents_place_images_and_refuse_bad_rows_by_name():
    out = Outcome(reader_for("mmc4"))
    assert out.refused == {
        f"{MMC4_ZIP}:3": "bad_json",
        f"{MMC4_ZIP}:4": "missing_images",  # none of its images was downloaded
        f"{MMC4_ZIP}:6": "empty_document",
        "images/0/0a1b2c3d4e5f.jpg": "image_without_document",
    }
    assert len(out.loaded) == 6
    docs = {rid: s for rid, s in zip(sorted(out.loaded), samples_of(out, "interleaved", ("document",)))}
    assert all(isinstance(s, InterleavedSample) and s.lang == "en" for s in docs.values())
    knee = docs["docs_no_face_shard_0_v2:1"]
    raw = json.loads(zipfile.ZipFile(SAMPLES / "mmc4" / MMC4_ZIP).read("docs_no_face_shard_0_v2.jsonl").splitlines()[0])
    # each image stands right before the sentence MMC4 matched it to, in image_info order
    lines = knee.text.split("\n")
    for info in raw["image_info"]:
        sentence = raw["text_list"][info["matched_text_index"]]
        at = next(i for i, line in enumerate(lines) if line.startswith(sentence))
        assert lines[at - 1] == IMAGE_TOKEN
    assert knee.text.count(IMAGE_TOKEN) == len(knee.media) == 2
    assert knee.plain_text().split() == " ".join(raw["text_list"]).split()


def test_mmc4_trims_dead_links_and_bad_matches_and_escapes_literal_markers():
    out = Outcome(reader_for("mmc4"))
    skin = out.loaded["docs_no_face_shard_0_v2:2"].facts["document"]
    assert skin["trimmed"] == {"missing_image": 1} and len(skin["placement"]) == 2
    [sample] = get_converter("interleaved").fn(out.loaded["docs_no_face_shard_0_v2:2"],
                                               ConvertContext(seed=1, tasks=("document",), langs=("en",)))
    assert "<IMAGE> tag" in sample.text and sample.text.count(IMAGE_TOKEN) == 2  # web text's own tag escaped
    assert sample.provenance["trimmed"] == {"missing_image": 1}
    smear = out.loaded["docs_no_face_shard_0_v2:7"].facts["document"]
    assert smear["trimmed"] == {"bad_match_index": 1} and smear["placement"] == [1]
    # at most max_images per document, the best matched kept, document order preserved
    capped = Outcome(reader_for("mmc4", max_images=2)).loaded["docs_no_face_shard_1_v2:1"].facts["document"]
    assert capped["trimmed"] == {"over_max_images": 1} and capped["placement"] == [0, 2]


def test_mmc4_reads_zipped_and_unzipped_shards_alike(sources_copy):
    top = sources_copy / "mmc4"
    with zipfile.ZipFile(top / MMC4_ZIP) as zf:
        (top / "docs" / "docs_no_face_shard_0_v2.jsonl").write_bytes(zf.read(zf.namelist()[0]))
    (top / MMC4_ZIP).unlink()
    unzipped = Outcome(reader_for("mmc4", sources_copy))
    zipped = Outcome(reader_for("mmc4"))
    assert sorted(unzipped.loaded) == sorted(zipped.loaded)
    assert set(unzipped.refused.values()) == set(zipped.refused.values())


def test_mmc4_unreadable_image_is_trimmed_at_load_and_a_document_without_any_is_rejected(sources_copy):
    images = sources_copy / "mmc4" / "images" / "1"
    (images / "d9c8b7a6f5e4.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (images / "f00dcafe0001.jpg").write_bytes(b"")
    out = Outcome(reader_for("mmc4", sources_copy))
    echo = out.loaded["docs_no_face_shard_1_v2:1"].facts["document"]
    assert echo["trimmed"] == {"unreadable_image": 1} and len(echo["placement"]) == 2
    assert out.refused["images/1/f00dcafe0001.jpg"] == "no_readable_images"


def test_document_text_puts_each_image_on_its_own_line():
    assert document_text(["A.", "B.", "", "C."], [0, 2, 2]) == f"{IMAGE_TOKEN}\nA. B.\n{IMAGE_TOKEN}\n{IMAGE_TOKEN}\nC."


# --- LLaVA-format instruction sets ----------------------------------------------------------------

@pytest.mark.parametrize("name, options, refused, n_loaded", [
    ("pubmedvision", {}, {"PubMedVision_InstructionTuning_VQA.json[2]": "missing_image",
                          "PubMedVision_InstructionTuning_VQA.json[3]": "empty_conversation",
                          "PubMedVision_InstructionTuning_VQA.json[4]": "url_only_image"}, 3),
    ("pubmedvision", {"files": [{"file": "PubMedVision_Alignment_VQA.json", "task": "caption", "images_dir": "."}]},
     {"PubMedVision_Alignment_VQA.json[2]": "image_token_mismatch"}, 2),
    ("llava_med", {}, {"data/instruct/llava_med_instruct_60k_inline_mention.json[1]": "bad_conversation",
                       "data/instruct/llava_med_instruct_60k_inline_mention.json[2]": "missing_image",
                       "data/instruct/llava_med_instruct_60k_inline_mention.json[3]": "empty_conversation"}, 1),
    ("quilt_llava", {}, {"quilt_instruct_107k.json[2]": "bad_conversation"}, 2),
])
def test_llava_format_readers_refuse_bad_rows_by_name(name, options, refused, n_loaded):
    out = Outcome(reader_for(name, **options))
    assert out.refused == refused
    assert len(out.loaded) == n_loaded


def test_conversations_pass_through_unchanged_multi_turn_kept():
    rows = json.loads((SAMPLES / "Quilt-LLaVA" / "quilt_instruct_107k.json").read_text())
    out = Outcome(reader_for("quilt_llava"))
    samples = {s.provenance["row"]: s for s in samples_of(out, "conversations", ("instruction",))}
    multi = samples["quilt_instruct_107k.json[0]"]
    assert multi.conversation == rows[0]["conversations"] and len(multi.conversation) == 6
    assert multi.answer == rows[0]["conversations"][-1]["value"] and multi.question_type == "open"
    suffix = samples["quilt_instruct_107k.json[1]"]  # LLaVA's "...\n<image>" form is kept in place
    assert suffix.conversation[0]["value"].endswith(f"\n{IMAGE_TOKEN}")
    # a step asking for other tasks gets nothing; English rows give no Chinese samples
    assert samples_of(out, "conversations", ("caption",)) == []
    assert samples_of(out, "conversations", ("instruction",), langs=("zh",)) == []


def test_a_released_multi_turn_conversation_is_one_v2_sample_in_release_order():
    rows = json.loads((SAMPLES / "Quilt-LLaVA" / "quilt_instruct_107k.json").read_text())
    out = Outcome(reader_for("quilt_llava"))
    multi = next(s for s in samples_of(out, "conversations", ("instruction",))
                 if s.provenance["row"] == "quilt_instruct_107k.json[0]")
    assert multi.modality == "pathology"  # the one modality vocabulary (docs/data-quality.md)
    doc = conversation_doc(multi.key, [{**multi.to_json_dict(), "key": multi.key}])
    assert doc["schema"] == SCHEMA and doc["conversations"] == rows[0]["conversations"]
    turns = doc["turns"]
    assert [t["key"] for t in turns] == [multi.key, f"{multi.key}-turn1", f"{multi.key}-turn2"]
    assert [t["answer"] for t in turns] == [c["value"] for c in rows[0]["conversations"][1::2]]
    assert [t.get("follows_previous", False) for t in turns] == [False, True, True]
    assert {t["task"] for t in turns} == {"instruction"}
    # one question at a time (GRPO) only where a turn stands alone: the first
    assert [d["turns"][0]["key"] for d in turn_docs(doc)] == [multi.key]
    with pytest.raises(ValueError, match="several turns joined"):
        conversation_doc("x", [{**multi.to_json_dict(), "key": "a"}, {**multi.to_json_dict(), "key": "b"}])


def test_pubmedvision_multi_image_rows_and_markerless_rows():
    out = Outcome(reader_for("pubmedvision"))
    samples = {s.provenance["row"]: s for s in samples_of(out, "conversations", ("instruction",))}
    two = samples["PubMedVision_InstructionTuning_VQA.json[1]"]
    assert len(two.media) == 2 and two.provenance["modality"] == "Microscopy"
    markerless = samples["PubMedVision_InstructionTuning_VQA.json[5]"]
    assert markerless.conversation[0]["value"] == f"{IMAGE_TOKEN}\nWhat does the endoscopic view show?"


def test_llava_med_names_where_a_missing_image_comes_from():
    found = [r for r in reader_for("llava_med").discover() if isinstance(r, Rejection) and r.reason == "missing_image"]
    assert len(found) == 1 and "PMC6000004.tar.gz" in found[0].detail


def test_a_malformed_json_file_is_one_rejection_naming_it(sources_copy):
    path = sources_copy / "PubMedVision" / "PubMedVision_InstructionTuning_VQA.json"
    path.write_text(path.read_text()[:-40])
    out = Outcome(reader_for("pubmedvision", sources_copy))
    assert out.refused == {"PubMedVision_InstructionTuning_VQA.json": "bad_json"} and not out.loaded


def test_a_malformed_json_line_loses_only_its_row(sources_copy):
    rows = json.loads((SAMPLES / "Quilt-LLaVA" / "quilt_instruct_107k.json").read_text())
    lines = [json.dumps(r) for r in rows[:2]]
    (sources_copy / "Quilt-LLaVA" / "quilt_instruct.jsonl").write_text(f"{lines[0]}\n{{\"id\": \"cut\n{lines[1]}\n")
    reader = reader_for("quilt_llava", sources_copy,
                        files=[{"file": "quilt_instruct.jsonl", "task": "instruction", "images_dir": "quilt_instruct"}])
    out = Outcome(reader)
    assert out.refused == {"quilt_instruct.jsonl:2": "bad_json"} and len(out.loaded) == 2


def test_llava_format_options_are_checked_when_the_reader_is_made():
    with pytest.raises(ValueError, match="task 'pretrain'"):
        reader_for("quilt_llava", files=[{"file": "x.json", "task": "pretrain", "images_dir": "."}])


# --- QA-pair sets ---------------------------------------------------------------------------------

def test_vqa_med_2019_groups_questions_per_image_with_categories():
    split = "ImageClef-2019-VQA-Med-Training"
    out = Outcome(reader_for("vqa_med_2019"))
    assert out.refused == {f"{split}/All_QA_Pairs_train.txt:3": "malformed_row",
                           f"{split}/All_QA_Pairs_train.txt:8": "missing_image",
                           f"{split}/Train_images/synpic100099.jpg": "image_without_questions"}
    samples = samples_of(out, "conversations", ("vqa",))
    assert len(samples) == 6 and {s.group for s in samples} == {f"vqa_med_2019:synpic10000{i}" for i in (1, 2, 3)}
    by_question = {s.conversation[0]["value"].split("\n", 1)[1]: s for s in samples}
    assert by_question["was this image taken with mri?"].question_type == "yes_no"
    assert by_question["in what plane was this image taken?"].provenance["category"] == "plane"
    assert by_question["what modality is shown?"].answer == "ct w/contrast (iv)"


def test_mimic_cxr_vqa_answers_types_and_refusals():
    out = Outcome(reader_for("mimic_cxr_vqa"))
    assert out.refused == {"mimiccxrvqa/dataset/train.json[4]": "missing_answer",
                           "mimiccxrvqa/dataset/train.json[5]": "missing_image"}
    samples = {s.provenance["idx"]: s for s in samples_of(out, "conversations", ("vqa",))}
    assert samples[0].question_type == "yes_no" and samples[0].answer == "no"
    assert samples[1].answer == "atelectasis, lung opacity"
    assert samples[3].answer == "none" and samples[3].provenance["empty_answer_list"] is True
    records = [r for r in reader_for("mimic_cxr_vqa").discover() if not isinstance(r, Rejection)]
    assert sorted(r.split_key for r in records) == ["10000032", "10000764"]  # split by patient


def test_openmedreason_gives_cot_multiple_choice():
    out = Outcome(reader_for("openmedreason"))
    assert out.refused == {"data/train-00000-of-00001.parquet:2": "answer_mismatch",
                           "data/train-00000-of-00001.parquet:3": "no_options",
                           "data/train-00000-of-00001.parquet:4": "missing_image"}
    samples = samples_of(out, "conversations", ("cot",))
    assert [s.answer for s in samples] == ["A", "B"]
    for s in samples:
        assert s.question_type == "mcq" and len(s.options) >= 3
        chain, letter = parse_reply(s.conversation[-1]["value"])
        assert letter == s.answer and chain and s.conversation[-1]["value"].endswith(f"<answer>{letter}</answer>")
        assert s.media[0].ext == "jpg" and s.provenance["sha256"] != s.media[0].sha256  # the parquet's hash
