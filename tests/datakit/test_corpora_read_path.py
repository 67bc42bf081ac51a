"""The stage-corpora readers on the one read path: images (files and OpenMedReason's embedded
bytes) through ``datakit.normalise`` with the size guards honoured, and every file under each
corpus's top folder a manifest row with its reason."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from datakit.errors import Rejected
from datakit.normalise import ImageLimits, normalise_image_bytes, read_image
from datakit.plan import make_plan
from datakit.recipe import load_recipe
from datakit.registry import get_source
from datakit.sources.base import Rejection
from datakit.sources.walk import walk_tree

CORPORA = ("mmc4", "pubmedvision", "llava_med", "quilt_llava", "vqa_med_2019", "mimic_cxr_vqa", "openmedreason")
OMR_TRAIN = "data/train-00000-of-00001.parquet"
MIMIC_ROWS = "mimiccxrvqa/dataset/train.json"
MIMIC_IMAGE = "p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"

# (source, path under its top folder) -> (status, reason) the plan must give the file
EXPECTED = {
    ("mmc4", "images/0/9a8b7c6d5e4f.jpg"): ("ignored", "image_trimmed"),
    ("mmc4", "images/0/ee11ee22ee33.jpg"): ("ignored", "image_of_refused_document"),
    ("mmc4", "images/0/0a1b2c3d4e5f.jpg"): ("rejected", "image_without_document"),
    ("mmc4", "docs/notes.txt"): ("ignored", "unknown_extension"),
    ("pubmedvision", "PubMedVision_Alignment_VQA.json"): ("ignored", "file_not_selected"),
    ("pubmedvision", "images/pmc_103_0.jpg"): ("ignored", "image_of_refused_row"),
    ("pubmedvision", "images/.DS_Store"): ("ignored", "hidden_file"),
    ("llava_med", "data/images/29999111_F1.jpg"): ("ignored", "image_not_named"),
    ("llava_med", "data/images/31001234_F2.jpg"): ("ignored", "image_of_refused_row"),
    ("quilt_llava", "quilt_pretrain.json"): ("ignored", "file_not_selected"),
    ("quilt_llava", "quilt_instruct.zip"): ("ignored", "unknown_extension"),
    ("vqa_med_2019", "ImageClef-2019-VQA-Med-Validation/Val_images/synpic1.jpg"): ("ignored", "file_not_selected"),
    ("vqa_med_2019", "ImageClef-2019-VQA-Med-Training/Train_images/synpic100099.jpg"):
        ("rejected", "image_without_questions"),
    ("mimic_cxr_vqa", "mimiccxrvqa/dataset/valid.json"): ("ignored", "file_not_selected"),
    ("mimic_cxr_vqa", "mimic-cxr-jpg/files/p10/p10000032/s50414267/extra.jpg"): ("ignored", "image_of_refused_row"),
    ("mimic_cxr_vqa", "mimic-cxr-jpg/files/p11/p11000000/s1/unasked.jpg"): ("ignored", "image_not_named"),
    ("openmedreason", "data/test-00000-of-00001.parquet"): ("ignored", "file_not_selected"),
}


def corpora_recipe(tmp: Path, **options) -> Path:
    """A recipe reading every corpus (planned only: documents and VQA are never merged here)."""
    sources = [{"source": "mmc4", "options": options, "convert": [{"converter": "interleaved", "tasks": ["document"]}]}]
    tasks = {"openmedreason": "cot", "vqa_med_2019": "vqa", "mimic_cxr_vqa": "vqa"}
    sources += [{"source": s, "options": options, "convert": [{"converter": "conversations",
                                                                 "tasks": [tasks.get(s, "instruction")]}]}
                for s in CORPORA[1:]]
    path = tmp / "corpora.yaml"
    path.write_text(yaml.safe_dump({"name": "corpora", "seed": 1, "langs": ["en"], "sources": sources}))
    return path


def plant_strays(src: Path) -> None:
    jpg = (src / "mmc4" / "images" / "0" / "1b2c3d4e5f60.jpg").read_bytes()
    (src / "mmc4" / "docs" / "notes.txt").write_text("download log\n")
    (src / "PubMedVision" / "images" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (src / "Quilt-LLaVA" / "quilt_instruct.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    val = src / "VQA-Med-2019" / "ImageClef-2019-VQA-Med-Validation" / "Val_images"
    val.mkdir(parents=True)
    (val / "synpic1.jpg").write_bytes(jpg)
    mimic = src / "mimic-cxr-vqa"
    (mimic / "mimiccxrvqa" / "dataset" / "valid.json").write_text("[]")
    rows = json.loads((mimic / MIMIC_ROWS).read_text())
    rows.append({"idx": 99, "subject_id": 10000032, "image_path": "p10/p10000032/s50414267/extra.jpg",
                 "question": "is there an effusion?", "semantic_type": "verify"})  # no answer: refused
    (mimic / MIMIC_ROWS).write_text(json.dumps(rows))
    (mimic / "mimic-cxr-jpg" / "files" / "p10/p10000032/s50414267/extra.jpg").write_bytes(jpg)
    (mimic / "mimic-cxr-jpg" / "files" / "p11/p11000000/s1").mkdir(parents=True)
    (mimic / "mimic-cxr-jpg" / "files" / "p11/p11000000/s1/unasked.jpg").write_bytes(jpg)
    shutil.copyfile(src / "OpenMedReason" / OMR_TRAIN, src / "OpenMedReason" / "data/test-00000-of-00001.parquet")


def test_every_file_under_each_corpus_top_folder_has_a_row(tmp_path, sources_copy):
    plant_strays(sources_copy)
    plan = make_plan(load_recipe(corpora_recipe(tmp_path)), sources_copy)
    for name in CORPORA:
        reader = get_source(name)(sources_copy / get_source(name).top_folder)
        rows = {j.path: j for j in plan.rejections if j.source == name}
        records = [r for r in plan.records if r.source == name]
        covered = set(rows) | {r.rel(p) for r in records for p in r.images}
        covered |= {p.relative_to(reader.root).as_posix() for p in reader.index_files()}
        files = {e.rel.as_posix() for e in walk_tree(reader.root)}
        assert files - covered == set(), name
        for (source, path), want in EXPECTED.items():
            if source == name:
                assert (rows[path].status, rows[path].reason) == want, (name, path, rows[path])
    by_path = {(j.source, j.path): j for j in plan.rejections}
    assert by_path[("pubmedvision", "images/pmc_103_0.jpg")].detail == \
        "named by PubMedVision_InstructionTuning_VQA.json[3] (empty_conversation)"
    assert by_path[("mmc4", "images/0/9a8b7c6d5e4f.jpg")].detail.endswith(":7: bad_match_index")
    # the planted refused MIMIC row is a rejection of its own, its image an ignored row beside it
    assert by_path[("mimic_cxr_vqa", f"{MIMIC_ROWS}[6]")].reason == "missing_answer"


def loaded_or_refused(reader) -> tuple[list, list[Rejected]]:
    loaded, refused = [], []
    for item in reader.discover():
        if isinstance(item, Rejection):
            continue
        try:
            loaded.append(reader.load(item))
        except Rejected as e:
            refused.append(e)
    return loaded, refused


@pytest.mark.parametrize("name", CORPORA)
def test_corpus_images_honour_max_side_and_record_their_normalisation(sample_sources, name):
    cls = get_source(name)
    plain, plain_refused = loaded_or_refused(cls(sample_sources / cls.top_folder))
    assert all(m.normalisation == {"stored": "as_read"} for r in plain for m in r.media)
    loaded, refused = loaded_or_refused(cls(sample_sources / cls.top_folder, max_side=12))
    assert len(loaded) == len(plain) and [e.path for e in refused] == [e.path for e in plain_refused]
    for record in loaded:
        for m in record.media:
            assert max(m.width, m.height) == 12 and m.ext == "png"
            assert m.normalisation["stored"] == "re-encoded"
            assert any(step.startswith("downsized") for step in m.normalisation["steps"])
            assert Image.open(io.BytesIO(m.data)).size == (m.width, m.height)


@pytest.mark.parametrize("name", CORPORA)
def test_corpus_images_above_max_pixels_are_refused_too_large_by_name(sample_sources, name):
    cls = get_source(name)
    _, planted = loaded_or_refused(cls(sample_sources / cls.top_folder))  # bad inputs the samples hold
    loaded, refused = loaded_or_refused(cls(sample_sources / cls.top_folder, max_pixels=100))
    assert not loaded and len(refused) > len(planted)
    for e in [e for e in refused if e.path not in {p.path for p in planted}]:
        assert "too_large" in (e.reason, e.detail.split(":")[0]), e
        assert e.path and (Path(e.path).suffix in (".jpg", ".png") or ".parquet:" in e.path), e.path


def rgba_png(size: int = 24) -> bytes:
    """Red everywhere, fully transparent on the left half: black there once composited."""
    arr = np.zeros((size, size, 4), np.uint8)
    arr[..., 0] = 200
    arr[:, size // 2:, 3] = 255
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def test_openmedreason_embedded_bytes_take_the_same_normalisation(sources_copy):
    path = sources_copy / "OpenMedReason" / OMR_TRAIN
    table = pq.read_table(path)
    cells = table.column("image").to_pylist()
    cells[0] = {**cells[0], "bytes": rgba_png()}
    table = table.set_column(table.schema.get_field_index("image"), "image", [cells])
    pq.write_table(table, path)
    reader = get_source("openmedreason")(sources_copy / "OpenMedReason")
    loaded, _ = loaded_or_refused(reader)
    first = next(r for r in loaded if r.record.meta["row"] == 0)
    [m] = first.media
    assert m.ext == "png" and m.normalisation["steps"] == ["RGBA: alpha composited on black"]
    pixels = np.asarray(Image.open(io.BytesIO(m.data)))
    assert pixels[:, :12].max() == 0 and (pixels[:, 12:, 0] == 200).all()
    assert first.file_sha256 == {OMR_TRAIN: reader._open(path)[2]}  # provenance hashes the parquet file


def test_bytes_entry_point_equals_the_file_one_and_names_where(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(rgba_png())
    limits = ImageLimits(max_side=10)
    from_file, from_bytes = read_image(path, "x.png", limits), normalise_image_bytes(path.read_bytes(), "x.png", limits)
    assert from_file.media.data == from_bytes.media.data and from_file.steps == from_bytes.steps
    assert from_file.file_sha256 == from_bytes.file_sha256
    with pytest.raises(Rejected) as e:
        normalise_image_bytes(path.read_bytes(), "t.parquet:4", ImageLimits(max_pixels=100))
    assert (e.value.reason, e.value.path) == ("too_large", "t.parquet:4")


def test_stage_samples_record_the_normalisation_of_each_image(stage_builds):
    from datakit.shard_writer import iter_samples

    for recipe in ("stage1", "stage3"):
        out = stage_builds[recipe].out
        docs = [json.loads(p["json"]) for tar in sorted(out.glob("*/*.tar")) for _, p in iter_samples(tar)]
        corpus = [d for d in docs if d["source"] in CORPORA]
        assert corpus, recipe
        for d in corpus:
            notes = d["provenance"]["normalisation"]
            assert len(notes) == len(d["media"]) and all(n["stored"] in ("as_read", "re-encoded") for n in notes)
