"""The three ultrasound readers (busi, abdomen_us, aul) on the bundled samples and on bad input.

Every bad-input test damages one file of a ``tmp_path`` copy of the bundled samples and checks
that exactly that file is refused, with its reason code and its path relative to the top folder,
while every other record is still discovered and loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import datakit
from datakit.errors import Rejected
from datakit.record import LoadedRecord
from datakit.registry import get_source
from datakit.sources.base import Rejection, SourceReader

SAMPLES = Path(datakit.__file__).parent / "sample_sources"
FACT_KEYS = {"label", "label_set", "body_part", "lesion_mask", "lesion_expected"}


@dataclass
class Outcome:
    loaded: dict[str, LoadedRecord]
    refused: list[tuple[str, str, str]]  # (reason, path, message), discovery and load together


def run(reader: SourceReader) -> Outcome:
    loaded: dict[str, LoadedRecord] = {}
    refused: list[tuple[str, str, str]] = []
    for item in reader.discover():
        if isinstance(item, Rejection):
            refused.append((item.reason, item.path, f"{item.reason}: {item.path} {item.detail}"))
            continue
        try:
            loaded[item.record_id] = reader.load(item)
        except Rejected as e:
            refused.append((e.reason, e.path or "", str(e)))
    return Outcome(loaded, refused)


def reader_for(name: str, base: Path = SAMPLES, **options) -> SourceReader:
    cls = get_source(name)
    return cls(base / cls.top_folder, **options)


@pytest.fixture
def samples(sources_copy: Path) -> Path:
    return sources_copy


def assert_refused_one(out: Outcome, reason: str, path: str, n_loaded: int) -> None:
    assert [(r, p) for r, p, _ in out.refused] == [(reason, path)]
    assert path in out.refused[0][2]  # the message names the file
    assert len(out.loaded) == n_loaded


# ---------------------------------------------------------------- the bundled samples load cleanly
def test_busi_samples() -> None:
    reader = reader_for("busi")
    out = run(reader)
    assert out.refused == []
    labels = [r.facts["label"] for r in out.loaded.values()]
    assert {lab: labels.count(lab) for lab in set(labels)} == {
        "benign": 5,
        "malignant": 5,
        "normal": 5,
    }
    assert list(out.loaded)[:5] == [
        f"benign/benign ({n})" for n in (3, 7, 12, 25, 40)
    ]  # natural order
    for rec in out.loaded.values():
        assert set(rec.facts) == FACT_KEYS
        assert rec.facts["label_set"] == ("benign", "malignant", "normal")
        assert rec.facts["lesion_mask"] == "lesion" and rec.facts["body_part"] == "breast"
        lesion = rec.masks["lesion"]
        assert lesion.dtype == bool and lesion.shape == (rec.media[0].height, rec.media[0].width)
        assert lesion.any() == rec.facts["lesion_expected"] == (rec.facts["label"] != "normal")
        assert rec.media[0].data == rec.record.images[0].read_bytes()  # stored as read
        for rel, digest in rec.file_sha256.items():
            assert hashlib.sha256((reader.root / rel).read_bytes()).hexdigest() == digest


def test_busi_multi_mask_is_merged_into_separate_components() -> None:
    reader = reader_for("busi")
    rec = next(r for r in reader.discover() if r.record_id == "benign/benign (25)")
    assert [p.name for p in rec.masks] == ["benign (25)_mask.png", "benign (25)_mask_1.png"]
    lesion = reader.load(rec).masks["lesion"]
    parts = [np.asarray(Image.open(p).convert("L")) > 127 for p in rec.masks]
    assert np.array_equal(lesion, parts[0] | parts[1])
    _, n_components = ndimage.label(lesion)
    assert n_components == 2


_DISCOVERY_ORDER = """
import json, sys
from pathlib import Path
from datakit.registry import get_source
from datakit.sources.base import Rejection
cls = get_source(sys.argv[1])
reader = cls(Path(sys.argv[2]) / cls.top_folder)
print(json.dumps([[item.uid, item.path, item.reason] if isinstance(item, Rejection)
                  else [item.uid, [str(p) for p in item.images], [str(p) for p in item.masks]]
                  for item in reader.discover()]))
"""


@pytest.mark.parametrize("name", ["busi", "abdomen_us", "aul"])
def test_discovery_order_is_the_same_in_every_process(name: str, sources_copy: Path) -> None:
    """Two interpreters with different string-hash seeds list the records in one order, so an
    order taken from a set or dict of strings (which follows ``hash()``) cannot pass. A planted
    image without a mask makes the reader's rejections part of the order too."""
    shutil.copy(next((sources_copy / "Dataset_BUSI_with_GT" / "benign").glob("*).png")),
                sources_copy / "Dataset_BUSI_with_GT" / "benign" / "benign (999).png")
    orders = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(Path(datakit.__file__).parents[1])}
        res = subprocess.run([sys.executable, "-c", _DISCOVERY_ORDER, name, str(sources_copy)],
                             env=env, capture_output=True, text=True, check=True)
        orders.append(json.loads(res.stdout))
    assert len(orders[0]) >= 5
    assert orders[0] == orders[1]


def test_abdomen_us_samples() -> None:
    out = run(reader_for("abdomen_us"))
    # the release has images without annotation: accounted for, never silently dropped
    assert [(r, p) for r, p, _ in out.refused] == [
        ("image_without_mask", "abdominal_US/AUS/images/train/aus_0003.png")
    ]
    assert sorted(out.loaded) == [
        "AUS/test/aus_0101",
        "AUS/train/aus_0001",
        "AUS/train/aus_0002",
        "RUS/test/rus_0101",
        "RUS/train/rus_0001",
    ]
    organs = {
        "liver",
        "kidney",
        "pancreas",
        "vessels",
        "adrenals",
        "gallbladder",
        "bones",
        "spleen",
    }
    for rec in out.loaded.values():
        # the colour code annotates every organ: absent ones are known absent (organ_presence "no")
        assert set(rec.facts) == FACT_KEYS | {"organs_annotated"}
        assert set(rec.facts["organs_annotated"]) == organs
        assert rec.facts["label"] is None and rec.facts["label_set"] == ()
        assert rec.facts["lesion_mask"] is None and rec.facts["lesion_expected"] is None
        assert rec.masks and set(rec.masks) <= organs
        assert all(m.any() for m in rec.masks.values())
    assert set(out.loaded["AUS/train/aus_0002"].masks) == {
        "liver",
        "gallbladder",
        "pancreas",
    }  # RGBA mask
    assert out.loaded["RUS/train/rus_0001"].media[0].ext == "jpg"


def test_abdomen_us_single_level_layout(samples: Path) -> None:
    top = samples / "abdominal_US"
    for sub in (top / "abdominal_US").iterdir():
        sub.rename(top / sub.name)
    (top / "abdominal_US").rmdir()
    out = run(reader_for("abdomen_us", samples))
    assert len(out.loaded) == 5
    assert [p for _, p, _ in out.refused] == ["AUS/images/train/aus_0003.png"]


def test_aul_samples() -> None:
    out = run(reader_for("aul"))
    assert out.refused == []
    assert list(out.loaded) == [
        "Benign/1",
        "Benign/2",
        "Malignant/1",
        "Malignant/3",
        "Normal/2",
        "Normal/5",
    ]
    for rec in out.loaded.values():
        assert set(rec.facts) == FACT_KEYS
        assert set(rec.masks) == {"liver", "mass"} and rec.facts["lesion_mask"] == "mass"
        assert (
            rec.masks["mass"].any()
            == rec.facts["lesion_expected"]
            == (rec.facts["label"] != "normal")
        )
        assert rec.masks["liver"].shape == (rec.media[0].height, rec.media[0].width)
        assert len(rec.file_sha256) == (2 if rec.facts["label"] == "normal" else 3)


# ---------------------------------------------------------------------------------- bad input
BUSI = "Dataset_BUSI_with_GT"


def test_corrupt_png(samples: Path) -> None:
    path = samples / BUSI / "benign" / "benign (3).png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert_refused_one(
        run(reader_for("busi", samples)), "corrupt_image", "benign/benign (3).png", 14
    )


def test_truncated_png(samples: Path) -> None:
    path = samples / BUSI / "malignant" / "malignant (12).png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused_one(
        run(reader_for("busi", samples)), "truncated_image", "malignant/malignant (12).png", 14
    )


def test_empty_file(samples: Path) -> None:
    (samples / BUSI / "normal" / "normal (7)_mask.png").write_bytes(b"")
    assert_refused_one(
        run(reader_for("busi", samples)), "empty_file", "normal/normal (7)_mask.png", 14
    )


def test_mask_size_mismatch(samples: Path) -> None:
    path = samples / BUSI / "benign" / "benign (12)_mask.png"
    Image.open(path).resize((200, 256)).save(path)
    assert_refused_one(
        run(reader_for("busi", samples)), "mask_size_mismatch", "benign/benign (12)_mask.png", 14
    )


def test_empty_mask_rejected_on_lesion_label_but_valid_on_normal(samples: Path) -> None:
    path = samples / BUSI / "malignant" / "malignant (40)_mask.png"
    Image.new("L", Image.open(path).size, 0).save(path)
    out = run(reader_for("busi", samples))
    assert_refused_one(out, "empty_mask_for_lesion_label", "malignant/malignant (40)_mask.png", 14)
    normal = out.loaded["normal/normal (40)"]
    assert not normal.masks["lesion"].any() and normal.facts["lesion_expected"] is False


def test_nonempty_mask_on_normal(samples: Path) -> None:
    path = samples / BUSI / "normal" / "normal (3)_mask.png"
    mask = np.zeros((256, 256), dtype=np.uint8)
    mask[100:120, 100:130] = 255
    Image.fromarray(mask).save(path)
    reason = "nonempty_mask_for_normal_label"
    assert_refused_one(run(reader_for("busi", samples)), reason, "normal/normal (3)_mask.png", 14)
    loaded = run(reader_for("busi", samples, reject_nonempty_normal=False)).loaded
    assert loaded["normal/normal (3)"].masks["lesion"].sum() == 20 * 30


def test_mask_without_image(samples: Path) -> None:
    (samples / BUSI / "benign" / "benign (7).png").unlink()
    assert_refused_one(
        run(reader_for("busi", samples)), "mask_without_image", "benign/benign (7)_mask.png", 14
    )


def test_image_without_mask(samples: Path) -> None:
    (samples / BUSI / "malignant" / "malignant (3)_mask.png").unlink()
    out = run(reader_for("busi", samples))
    assert_refused_one(out, "image_without_mask", "malignant/malignant (3).png", 14)


def test_unreadable_class_folder(samples: Path) -> None:
    # Tests run as root, which ignores permission bits, so chmod cannot make a folder unreadable.
    # A file where the class folder should be makes listing it fail with an OSError
    # (NotADirectoryError), the same path through the reader that EACCES takes.
    folder = samples / BUSI / "malignant"
    shutil.rmtree(folder)
    folder.write_bytes(b"not a folder")
    out = run(reader_for("busi", samples))
    assert_refused_one(out, "unreadable_dir", "malignant", 10)
    assert {r.facts["label"] for r in out.loaded.values()} == {"benign", "normal"}


def test_unreadable_class_folder_by_permissions(samples: Path) -> None:
    """A class folder the reader may not list (mode 000). Root ignores permission bits, so when
    the tests run as root the reader runs as ``nobody`` in a subprocess (setpriv)."""
    import json
    import subprocess
    import sys
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="busi-perm-"))  # outside pytest's root-only tmp
    try:
        shared.chmod(0o755)
        shutil.copytree(samples / BUSI, shared / BUSI)
        for p in shared.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        (shared / BUSI / "normal").chmod(0)
        code = (
            "import json, sys; from pathlib import Path; from datakit.sources.busi import BusiReader;"
            "from datakit.sources.base import Rejection;"
            f"items = list(BusiReader(Path({str(shared / BUSI)!r})).discover());"
            "print(json.dumps([[i.reason, i.path] for i in items if isinstance(i, Rejection)]"
            " + [len([i for i in items if not isinstance(i, Rejection)])]))"
        )
        cmd = [sys.executable, "-c", code]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        repo = Path(__file__).resolve().parents[2]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/",
                             env={**os.environ, "PYTHONPATH": str(repo)})
        assert res.returncode == 0, res.stderr
        *refused, n_loaded = json.loads(res.stdout.strip().splitlines()[-1])
        assert refused == [["unreadable_dir", "normal"]]
        assert n_loaded == 10  # benign and malignant still discovered
    finally:
        (shared / BUSI / "normal").chmod(0o755)
        shutil.rmtree(shared, ignore_errors=True)


ABD = "abdominal_US/abdominal_US"


def test_unknown_mask_colour(samples: Path) -> None:
    path = samples / ABD / "RUS" / "annotations" / "train" / "rus_0001.png"
    mask = np.asarray(Image.open(path).convert("RGB")).copy()
    mask[60:64, 60:64] = (123, 45, 67)
    Image.fromarray(mask).save(path)
    out = run(reader_for("abdomen_us", samples))
    rel = "abdominal_US/RUS/annotations/train/rus_0001.png"
    assert ("unknown_mask_colour", rel) in [(r, p) for r, p, _ in out.refused]
    assert "(123, 45, 67)" in next(m for r, _, m in out.refused if r == "unknown_mask_colour")
    assert len(out.loaded) == 4 and len(out.refused) == 2  # plus the expected unannotated image


def test_grey_mask_is_read_as_colour_code(samples: Path) -> None:
    # Some released masks are grey; stacked to RGB, 255 is bones and 0/10 are background.
    path = samples / ABD / "AUS" / "annotations" / "test" / "aus_0101.png"
    grey = np.full((128, 128), 10, dtype=np.uint8)
    grey[100:110, 30:90] = 255
    Image.fromarray(grey, "L").save(path)
    rec = run(reader_for("abdomen_us", samples)).loaded["AUS/test/aus_0101"]
    assert set(rec.masks) == {"bones"} and rec.masks["bones"].sum() == 600


def test_abdomen_us_mask_without_image(samples: Path) -> None:
    (samples / ABD / "AUS" / "images" / "test" / "aus_0101.png").unlink()
    out = run(reader_for("abdomen_us", samples))
    assert ("mask_without_image", "abdominal_US/AUS/annotations/test/aus_0101.png") in [
        (r, p) for r, p, _ in out.refused
    ]
    assert len(out.loaded) == 4


AUL = "Annotated_Ultrasound_Liver"


def test_malformed_polygon_json(samples: Path) -> None:
    (samples / AUL / "Malignant" / "segmentation" / "mass" / "3.json").write_text("[[10, 20], [30,")
    out = run(reader_for("aul", samples))
    assert_refused_one(out, "malformed_polygon", "Malignant/segmentation/mass/3.json", 5)


@pytest.mark.parametrize(
    "points, why",
    [
        ([[10, 10], [20, 10]], "at least 3"),
        ([[10, 10], [20, "x"], [5, 30]], "not [x, y]"),
        ([[10, 10], [250, 10], [20, 30]], "outside"),
        ({"points": []}, "at least 3"),
    ],
)
def test_polygon_with_bad_points(samples: Path, points, why: str) -> None:
    (samples / AUL / "Normal" / "segmentation" / "liver" / "5.json").write_text(json.dumps(points))
    out = run(reader_for("aul", samples))
    assert_refused_one(out, "malformed_polygon", "Normal/segmentation/liver/5.json", 5)
    assert why in out.refused[0][2]


def test_aul_lesion_label_without_mass_polygon(samples: Path) -> None:
    (samples / AUL / "Benign" / "segmentation" / "mass" / "2.json").unlink()
    out = run(reader_for("aul", samples))
    assert_refused_one(out, "mask_missing_for_lesion_label", "Benign/segmentation/mass/2.json", 5)


def test_aul_image_without_liver_polygon_still_loads(samples: Path) -> None:
    # Image 374 of the release has no liver polygon: the record keeps its mass, without liver.
    (samples / AUL / "Malignant" / "segmentation" / "liver" / "1.json").unlink()
    out = run(reader_for("aul", samples))
    assert out.refused == [] and set(out.loaded["Malignant/1"].masks) == {"mass"}


def test_aul_corrupt_jpeg_and_orphan_polygon(samples: Path) -> None:
    image = samples / AUL / "Normal" / "image" / "2.jpg"
    image.write_bytes(image.read_bytes()[:300])
    (samples / AUL / "Benign" / "image" / "1.jpg").unlink()
    out = run(reader_for("aul", samples))
    assert sorted((r, p) for r, p, _ in out.refused) == [
        ("mask_without_image", "Benign/segmentation/liver/1.json"),
        ("mask_without_image", "Benign/segmentation/mass/1.json"),
        ("mask_without_image", "Benign/segmentation/outline/1.json"),
        ("truncated_image", "Normal/image/2.jpg"),
    ]
    assert sorted(out.loaded) == ["Benign/2", "Malignant/1", "Malignant/3", "Normal/5"]
