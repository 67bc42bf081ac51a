"""Benchmark readers on tiny synthetic folders in each released layout, and decontamination
through the same readers (``datakit decontam add --benchmark``)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import polars as pl
import pytest

from datakit.benchmarks import BENCHMARKS, read_benchmark
from datakit.benchmarks.items import BenchmarkLayoutError
from datakit.benchmarks.media import count_images, load_media
from datakit.benchmarks.samples import write_samples
from datakit.benchmarks.vqa_rad import linked_to_test
from datakit.cli import main as datakit_main


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    return write_samples(tmp_path_factory.mktemp("bench"))


def qids(name: str, root: Path, split: str = "test") -> list[str]:
    return [i.qid for i in read_benchmark(name, root, split).items]


def test_vqa_rad_test_split_and_no_linked_paraphrase_in_train(samples):
    assert qids("vqa_rad", samples["vqa_rad"]) == ["1", "2", "3", "4"]
    # qid 6 ("para") shares qid_linked_id L2 with test qid 3: it must not reach the train split.
    assert linked_to_test(samples["vqa_rad"]) == ["6"]
    assert qids("vqa_rad", samples["vqa_rad"], "train") == ["5"]
    items = {i.qid: i for i in read_benchmark("vqa_rad", samples["vqa_rad"]).items}
    assert items["4"].answer == "2" and items["4"].answer_type == "open"  # numeric answer cast to text
    assert items["1"].answer_type == "closed" and items["1"].media_labels == ("VQA_RAD Image Folder/synpic101.jpg",)


def test_slake_languages_and_splits(samples):
    items = read_benchmark("slake", samples["slake"]).items
    assert [(i.qid, i.lang, i.answer_type, i.modality) for i in items] == [
        ("11", "en", "closed", "CT"), ("12", "en", "open", "CT"), ("13", "en", "closed", "MRI"),
        ("14", "zh", "closed", "CT"), ("15", "zh", "open", "MRI")]
    assert qids("slake", samples["slake"], "validation") == ["31"]  # validate.json, the original name
    with pytest.raises(ValueError, match="split 'dev'"):
        read_benchmark("slake", samples["slake"], "dev")


def test_pathvqa_pickle_is_read_without_running_code(samples, tmp_path):
    items = read_benchmark("path_vqa", samples["path_vqa"]).items
    assert [(i.qid, i.answer_type) for i in items] == [("test_0", "closed"), ("test_1", "open"), ("test_2", "closed")]
    bad = tmp_path / "pvqa"
    (bad / "qas" / "test").mkdir(parents=True)
    (bad / "qas" / "test" / "test_qa.pkl").write_bytes(pickle.dumps([Path("x")]))  # a class reference
    with pytest.raises(BenchmarkLayoutError, match="refusing"):
        read_benchmark("path_vqa", bad)


def test_multiple_choice_readers(samples):
    pmc = read_benchmark("pmc_vqa", samples["pmc_vqa"]).items
    assert [(i.qid, i.answer_letter, i.answer) for i in pmc] == [("0", "A", "CT"), ("1", "B", "Hematoxylin and eosin")]
    assert pmc[1].options == ("Gram stain", "Hematoxylin and eosin", "PAS", "Silver")
    assert pmc[1].extra["option_lines"][1] == "  B: Hematoxylin and eosin "  # shown as released
    omni = read_benchmark("omnimedvqa", samples["omnimedvqa"]).items  # JSON array + JSON Lines files
    assert [(i.qid, i.answer_letter, i.modality) for i in omni] == [
        ("Chest CT Scan_0001", "A", "CT(Computed Tomography)"), ("Chest CT Scan_0002", "B", "CT(Computed Tomography)"),
        ("RetinalFundus_0001", "C", "Fundus Photography")]
    m3d = read_benchmark("m3d_vqa", samples["m3d_vqa"])
    assert [(i.answer_letter, i.extra["question_type"]) for i in m3d.items] == [("B", "plane"), ("A", "organ")]
    assert [w for w, _ in m3d.skipped] == ["M3D-VQA/M3D_VQA_test.csv:4"]  # the right choice is "NA"
    assert "bad_answer_choice" in m3d.skipped[0][1]


def test_reports_and_video(samples):
    iu = read_benchmark("iu_xray", samples["iu_xray"]).items
    assert [len(i.media) for i in iu] == [2, 2] and iu[0].task == "report"
    video = read_benchmark("medvideo", samples["medvideo"]).items
    assert [(i.qid, i.task, i.answer_letter) for i in video] == [
        ("lumen_0001#summary", "summary", None), ("lumen_0001#qa0", "mcq", "A"), ("lumen_0001#qa1", "mcq", "B")]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_item_decodes_and_prompt_count_matches(samples, name):
    for item in read_benchmark(name, samples[name]).items:
        media = load_media(item)
        assert len(media) == count_images(item) >= 1
        assert all(im.mode == "RGB" and im.size[0] > 0 for _, im in media)
    if name == "m3d_vqa":
        assert [label.rsplit("=", 1)[1] for label, _ in media] == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "11"]


def test_duplicate_question_ids_are_refused(samples, tmp_path):
    root = tmp_path / "slake"
    root.mkdir()
    doc = json.loads((samples["slake"] / "test.json").read_text())
    (root / "test.json").write_text(json.dumps(doc + doc[:1]))
    with pytest.raises(BenchmarkLayoutError, match="'11' appears twice"):
        read_benchmark("slake", root)


def test_decontam_add_benchmark_registers_what_evaluation_shows(samples, tmp_path):
    reg = tmp_path / "reg"
    assert datakit_main(["decontam", "add", "vqa_rad", str(samples["vqa_rad"]), "--benchmark", "vqa_rad",
                         "--registry", str(reg)]) == 0
    files = pl.read_parquet(reg / "vqa_rad.parquet")["file"].to_list()
    # The test split's two images; synpic103 is used only by a train question.
    assert files == ["VQA_RAD Image Folder/synpic101.jpg", "VQA_RAD Image Folder/synpic102.jpg"]
    assert datakit_main(["decontam", "add", "m3d", str(samples["m3d_vqa"]), "--benchmark", "m3d_vqa",
                         "--registry", str(reg)]) == 0
    info = json.loads((reg / "m3d.json").read_text())
    assert info["images"] == 11 and info["layout"] == "benchmark:m3d_vqa"
    assert info["skipped"] == {"row_not_an_item": 1}
