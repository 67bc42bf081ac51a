"""Volumes -> slice sequences: the demo's slice choice and scaling, order (by planted markers) on
a real NIfTI and the bundled M3D volume, bad volumes as manifest rows, and M3D-VQA rows refused
with their file and line."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest
from PIL import Image

from datakit.build import build
from datakit.converters.base import ConvertContext
from datakit.errors import Rejected
from datakit.recipe import load_recipe, parse_recipe
from datakit.registry import get_converter
from datakit.sources.base import Rejection
from datakit.sources.m3d_cap import M3DCapReader, extract_report
from datakit.sources.m3d_vqa import M3DVQAReader
from datakit.sources.nifti import NiftiReader
from datakit.volume import SliceOptions, as_volume, encode_png, slice_indices, slice_volume, to_uint8

ANATOMICAL = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
BUNDLED_NPY = "M3D_Cap_npy/ct_quizze/000008/Axial_C__arterial_phase.npy"


def demo_slice(s: np.ndarray) -> np.ndarray:
    """The released demo's ``normalize_image``, written out here as the oracle."""
    lo, hi = np.min(s), np.max(s)
    return np.zeros_like(s, dtype=np.uint8) if hi - lo == 0 else ((s - lo) / (hi - lo) * 255).astype(np.uint8)


def decode(media) -> np.ndarray:
    im = Image.open(io.BytesIO(media.data))
    assert im.mode == "RGB"
    arr = np.asarray(im)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()  # grey -> RGB
    return arr[..., 0]


def records(reader):
    found = list(reader.discover())
    return [r for r in found if not isinstance(r, Rejection)], [r for r in found if isinstance(r, Rejection)]


def test_slice_indices_are_the_demos_truncating_linspace():
    assert slice_indices(32) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 31]  # 15.5 -> 15, not 16
    for depth in (11, 12, 25, 33, 64, 300):
        assert slice_indices(depth) == np.linspace(0, depth - 1, 11, dtype=int).tolist()
    assert slice_indices(5) == [0, 1, 2, 3, 4]  # shallower than 11: each slice once
    assert slice_indices(32, 4) == [0, 10, 20, 31]


def test_bundled_npy_gives_11_slices_in_order_by_planted_markers(tmp_path, sample_sources):
    shutil.copytree(sample_sources / "M3D_Cap_npy", tmp_path / "M3D_Cap_npy")
    path = tmp_path / BUNDLED_NPY
    vol = np.load(path)
    assert vol.shape == (1, 32, 40, 40) and vol.dtype == np.float32
    chosen = np.linspace(0, 31, 11, dtype=int)
    for p, k in enumerate(chosen):
        vol[0, k, 2, p + 3] = 2.0  # above the [0, 1] range: the unique maximum of slice k
    vol[0, 1, 30, 30] = 5.0  # a decoy in a slice that is not chosen
    np.save(path, vol)
    reader = M3DCapReader(tmp_path / "M3D_Cap_npy")
    record = next(r for r in records(reader)[0] if r.record_id.startswith("ct_quizze/000008"))
    loaded = reader.load(record)
    assert len(loaded.media) == 11
    assert loaded.facts["provenance"]["slice_indices"] == chosen.tolist()
    for p, (media, k) in enumerate(zip(loaded.media, chosen)):
        pixels = decode(media)
        assert np.unravel_index(pixels.argmax(), pixels.shape) == (2, p + 3) and pixels.max() == 255
        assert (pixels == demo_slice(vol[0, k])).all()  # byte for byte the demo's scaling
    assert loaded.facts["plane"] == "axial"


def test_real_nifti_gives_slices_in_order_and_display_orientation(tmp_path):
    image = nib.load(ANATOMICAL)
    original = np.asanyarray(image.dataobj)
    data = original.copy()
    assert data.shape == (33, 41, 25)  # the real T1 volume nibabel ships
    chosen = np.linspace(0, 24, 11, dtype=int)
    for p, k in enumerate(chosen):
        data[p + 2, 5, k] = np.iinfo(np.int16).max  # above the volume's own maximum (30393)
    folder = tmp_path / "nifti"
    folder.mkdir()
    nib.Nifti1Image(data, image.affine, image.header).to_filename(folder / "anatomical.nii")
    shutil.copyfile(ANATOMICAL, folder / "unmodified.nii")
    reader = NiftiReader(folder, imaging="mri")
    found, refused = records(reader)
    assert not refused and [r.record_id for r in found] == ["anatomical", "unmodified"]
    loaded = reader.load(found[0])
    assert len(loaded.media) == 11 and loaded.facts["provenance"]["slice_indices"] == chosen.tolist()
    assert loaded.facts["plane"] == "axial"  # LAS affine: the third axis runs inferior-superior
    for p, media in enumerate(loaded.media):
        pixels = decode(media)
        assert pixels.shape == (41, 33)  # rows: second voxel axis, columns: first
        # voxel (i, j) is shown at row J-1-j, column i (np.rot90: anterior up)
        assert np.unravel_index(pixels.argmax(), pixels.shape) == (41 - 1 - 5, p + 2)
    untouched = reader.load(found[1])
    for media, k in zip(untouched.media, chosen):
        assert (decode(media) == demo_slice(np.rot90(original[:, :, k]).astype(np.float32))).all()


def test_window_and_robust_scaling():
    hu = np.array([[-1000.0, -160.0, 40.0, 240.0, 3000.0]])
    assert to_uint8(hu, (40.0, 400.0)).tolist() == [[0, 0, 127, 255, 255]]  # 127.5 truncated
    wide = np.array([[-32000, 0, 32000]], dtype=np.int16)  # the demo's int16 arithmetic overflows
    assert to_uint8(wide).tolist() == [[0, 127, 255]]
    holes = np.array([[np.nan, 0.0, 1.0, np.inf]], dtype=np.float32)
    assert to_uint8(holes).tolist() == [[0, 0, 255, 0]]  # non-finite -> the slice's finite minimum
    assert to_uint8(np.full((2, 2), 7.0)).tolist() == [[0, 0], [0, 0]]  # constant slice: black


def test_png_bytes_are_deterministic_without_metadata():
    vol = np.random.default_rng(0).random((20, 16, 16)).astype(np.float32)
    a = slice_volume(as_volume(vol, "v"), SliceOptions())
    b = slice_volume(as_volume(vol.copy(), "v"), SliceOptions())
    assert [m.data for m in a.media] == [m.data for m in b.media]
    data, pos, chunks = a.media[0].data, 8, []
    while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append(data[pos + 4:pos + 8].decode())
        pos += 12 + size
    assert chunks == ["IHDR", "IDAT", "IEND"]
    assert encode_png(np.zeros((3, 4), np.uint8), 1).width == 4


@pytest.mark.parametrize("arr,reason", [
    (np.full((8, 8, 8), np.nan, np.float32), "volume_all_nan"),
    (np.full((1, 8, 8, 8), 0.25, np.float32), "volume_constant"),
    (np.zeros((32, 40), np.float32), "volume_not_3d"),
    (np.zeros((2, 8, 8, 8), np.float32), "volume_bad_shape"),
    (np.zeros((0, 8, 8), np.float32), "volume_empty"),
    (np.array([["a"]]), "volume_bad_dtype"),
])
def test_as_volume_rejects(arr, reason):
    with pytest.raises(Rejected) as e:
        as_volume(arr, "x.npy")
    assert e.value.reason == reason and e.value.path == "x.npy"


def test_bad_volumes_become_rejection_rows_and_the_rest_is_emitted(tmp_path, sample_sources):
    src = tmp_path / "src"
    shutil.copytree(sample_sources / "M3D_Cap_npy", src / "M3D_Cap_npy")
    bad = {
        "all_nan": np.full((1, 32, 8, 8), np.nan, np.float32),
        "constant": np.full((32, 8, 8), 0.5, np.float32),
        "flat_2d": np.random.default_rng(1).random((32, 8)).astype(np.float32),
        "two_channels": np.random.default_rng(2).random((2, 32, 8, 8)).astype(np.float32),
    }
    case = src / "M3D_Cap_npy" / "ct_case" / "900001"
    case.mkdir()
    (case / "text.txt").write_text("study_findings: planted bad volumes for a test.", encoding="utf-8")
    for name, arr in bad.items():
        np.save(case / f"Axial_{name}.npy", arr)
    np.save(case / "Axial_pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (case / "Axial_truncated.npy").write_bytes((src / BUNDLED_NPY).read_bytes()[:5000])
    (case / "Axial_empty.npy").write_bytes(b"")
    lonely = src / "M3D_Cap_npy" / "ct_case" / "900002"
    lonely.mkdir()
    np.save(lonely / "Axial_no_report.npy", np.random.default_rng(3).random((32, 8, 8)).astype(np.float32))
    doc = load_recipe("ct3d").to_dict()
    doc["sources"] = [s for s in doc["sources"] if s["source"] == "m3d_cap"]
    result = build(parse_recipe(doc, Path("ct3d-m3d-cap.yaml")), src, tmp_path / "out")
    manifest = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    rejected = manifest.filter((pl.col("kind") == "record") & (pl.col("status") == "rejected"))
    reasons = dict(zip(rejected["path"].to_list(), rejected["reason"].to_list()))
    prefix = "ct_case/900001/Axial_"
    assert reasons == {
        f"{prefix}all_nan.npy": "volume_all_nan",
        f"{prefix}constant.npy": "volume_constant",
        f"{prefix}flat_2d.npy": "volume_not_3d",
        f"{prefix}two_channels.npy": "volume_bad_shape",
        f"{prefix}pickled.npy": "volume_unreadable",
        f"{prefix}truncated.npy": "volume_unreadable",
        f"{prefix}empty.npy": "empty_file",
        "ct_case/900002/Axial_no_report.npy": "missing_report",
        "ct_case/000200/Axial_non_contrast.npy": "held_out_split",
    }
    acc = result.summary["accounting"]["records"]
    # + one ignored file: the report of the held-out test phantom
    assert acc["emitted"] == 2 and acc["inputs"] == acc["emitted"] + acc["rejected"] + acc["ignored"] == 12


def test_expected_shape_option_rejects_other_shapes(tmp_path, sample_sources):
    shutil.copytree(sample_sources / "M3D_Cap_npy", tmp_path / "M3D_Cap_npy")
    reader = M3DCapReader(tmp_path / "M3D_Cap_npy", expected_shape=[32, 256, 256])
    with pytest.raises(Rejected) as e:
        reader.load(records(reader)[0][0])
    assert e.value.reason == "volume_bad_shape" and "(32, 256, 256)" in e.value.detail


def test_report_extraction_drops_the_raw_markers():
    # findings then discussion, as prose: no raw marker reaches a report
    assert extract_report("title\nstudy_findings: Liver  cyst\n\ndiscussion: benign appearance") == \
        "Liver cyst. Benign appearance"
    # a section shorter than 5 characters is left out, wherever the markers stand
    assert extract_report("discussion: Cyst seen.\nstudy_findings: n/a") == "Cyst seen."
    assert extract_report("Plain text report.\n") == "Plain text report."


VQA_HEADER = ("Image Path,Text,Question Type,Question,Choice A,Choice B,Choice C,Choice D,Answer,"
              "Answer Choice\n").encode()
VOL = "M3D_Cap_npy/ct_quizze/000008/Axial_C__arterial_phase.npy"


def write_vqa_csv(tmp_path: Path, sample_sources: Path) -> Path:
    """The bundled M3D-Cap volumes beside an M3D-VQA CSV with one row of each fault."""
    shutil.copytree(sample_sources / "M3D_Cap_npy", tmp_path / "M3D_Cap_npy")
    folder = tmp_path / "M3D-VQA"
    folder.mkdir()
    rows = [
        f"{VOL},report,3,Which organ?,Liver,Spleen,Kidney,NA,Liver,A".encode(),  # 2 good
        f"{VOL},report,3,Which organ?,Liver,Spleen".encode(),  # 3 wrong field count
        f"{VOL},report,3,Which \xff organ?,Liver,Spleen,Kidney,Lung,Liver,A".encode("latin-1"),  # 4
        f"{VOL},report,3,Which organ?,Liver,Spleen,Kidney,Lung,,A".encode(),  # 5 no answer
        f"{VOL},report,3,Which organ?,Liver,Spleen,Kidney,Lung,Liver,E".encode(),  # 6 letter E
        f"{VOL},report,3,Which organ?,Liver,Spleen,Kidney,NA,NA,D".encode(),  # 7 answer is NA
        f'{VOL},"multi\nline report",1,Which plane?,Axial,Coronal,Sagittal,Oblique,Axial,A'.encode(),  # 8-9
        f"{VOL},report,3,Which organ?,Liver,Spleen,Kidney,Lung,Spleen,A".encode(),  # 10 mismatch
        f"{VOL},report,9,Which organ?,Liver,Spleen,Kidney,Lung,Liver,A".encode(),  # 11 type 9
        b"M3D_Cap_npy/ct_case/404/none.npy,report,3,Which organ?,Liver,Spleen,Kidney,Lung,Liver,A",  # 12
        b"M3D_Cap_npy/ct_case/000200/Axial_non_contrast.npy,r,1,Plane?,Axial,Coronal,NA,NA,Axial,A",  # 13
        b"M3D_Cap_npy/ct_case/000100/Coronal_non_contrast.npy,r,1,Plane?,Axial,Coronal,NA,NA,Coronal,B",  # 14
    ]
    (folder / "M3D_VQA_train.csv").write_bytes(VQA_HEADER + b"\n".join(rows) + b"\n")
    return folder


WHERE = "M3D-VQA/M3D_VQA_train.csv"
ROW_FAULTS = {
    f"{WHERE}:3": "malformed_row",
    f"{WHERE}:4": "non_utf8",
    f"{WHERE}:5": "missing_field",
    f"{WHERE}:6": "bad_answer_choice",
    f"{WHERE}:7": "bad_answer_choice",
    f"{WHERE}:10": "answer_mismatch",
    f"{WHERE}:11": "unknown_question_type",
    f"{WHERE}:12": "missing_image_file",
}


def test_malformed_vqa_rows_are_refused_with_file_and_line(tmp_path, sample_sources):
    folder = write_vqa_csv(tmp_path, sample_sources)
    (folder / "M3D_VQA_broken.csv").write_bytes(b"Image Path,Question\nx,y\n")
    reader = M3DVQAReader(folder, csv_files=["M3D_VQA_train.csv", "M3D_VQA_broken.csv", "M3D_VQA_gone.csv"])
    good, refused = records(reader)
    assert {j.path: j.reason for j in refused} == {
        **ROW_FAULTS, "M3D-VQA/M3D_VQA_broken.csv:1": "bad_header", "M3D-VQA/M3D_VQA_gone.csv": "missing_csv"}
    # one record per volume, its questions in row order
    assert [(r.record_id, [q["row"] for q in r.meta["questions"]]) for r in good] == [
        ("ct_case/000100/Coronal_non_contrast", [f"{WHERE}:14"]),
        ("ct_case/000200/Axial_non_contrast", [f"{WHERE}:13"]),
        ("ct_quizze/000008/Axial_C__arterial_phase", [f"{WHERE}:2", f"{WHERE}:8"]),
    ]
    loaded = reader.load(good[2])
    first = loaded.facts["vqa"][0]
    assert first["options"] == ["Liver", "Spleen", "Kidney"] and first["answer_index"] == 0  # NA dropped
    assert loaded.record.primary_file == VOL and len(loaded.media) == 11


def test_m3d_cap_attaches_the_questions_of_each_volume(tmp_path, sample_sources):
    write_vqa_csv(tmp_path, sample_sources)
    reader = M3DCapReader(tmp_path / "M3D_Cap_npy", subsets=["ct_quizze"])
    good, refused = records(reader)
    assert {j.path: j.reason for j in refused} == {
        **ROW_FAULTS,
        f"{WHERE}:13": "held_out_split",  # about the volume M3D_Cap.json lists under test
        f"{WHERE}:14": "volume_not_in_m3d_cap",  # ct_case is not read here
    }
    [record] = good
    assert record.record_id == "ct_quizze/000008/Axial_C__arterial_phase"
    assert [q["row"] for q in record.meta["questions"]] == [f"{WHERE}:2", f"{WHERE}:8"]
    loaded = reader.load(record)
    assert loaded.facts["report"].startswith("Arterial phase CT") and len(loaded.facts["vqa"]) == 2
    convert = get_converter("volume_vqa").fn
    out = convert(loaded, ConvertContext(seed=3, tasks=("report", "vqa_mcq", "vqa_open"), langs=("en", "zh")))
    samples = [s for s in out if s.lang == "en"]  # the Chinese twins wait for the LLM translation
    assert sorted(s.task for s in samples) == ["report", "vqa_mcq", "vqa_mcq", "vqa_open", "vqa_open"]
    assert sorted((m.slot or m.task, m.status) for m in out if m.lang == "zh") == [
        ("report", "skipped_llm"), ("vqa_mcq_1", "skipped_llm"), ("vqa_mcq_2", "skipped_llm"),
        ("vqa_open_1", "skipped_llm"), ("vqa_open_2", "skipped_llm")]
    assert {s.group for s in samples} == {record.uid} and len({s.key for s in samples}) == 5
    assert [s.provenance["row"] for s in samples if s.task == "vqa_mcq"] == [f"{WHERE}:2", f"{WHERE}:8"]


def test_nifti_bad_files_are_rejected(tmp_path):
    folder = tmp_path / "nifti"
    folder.mkdir()
    shutil.copyfile(Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz", folder / "timeseries.nii.gz")
    nib.Nifti1Image(np.zeros((6, 6), np.int16), np.eye(4)).to_filename(folder / "flat.nii")
    (folder / "junk.nii").write_bytes(os.urandom(400))
    reader = NiftiReader(folder)
    reasons = {}
    for record in records(reader)[0]:
        with pytest.raises(Rejected) as e:
            reader.load(record)
        reasons[record.record_id] = e.value.reason
    assert reasons == {"flat": "volume_not_3d", "junk": "volume_unreadable", "timeseries": "volume_bad_shape"}
