"""Lock files and ``compare_with_lock`` on a small hand-made release: an untouched build matches
its lock, and every kind of drift (a changed byte, a missing or extra shard, a lost or new sample,
changed metadata) is reported by name, while energon's derived index files are ignored."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from datakit.release import compare_with_lock, make_lock, release_checksums, release_files, sample_keys, write_lock
from datakit.shard_writer import AtomicTarWriter


def shard(path: Path, keys: list[str]) -> None:
    with AtomicTarWriter(path) as w:
        for k in keys:
            w.add_sample(k, [("json", json.dumps({"key": k}).encode()), ("0.png", k.encode() * 40)])


@pytest.fixture
def release(tmp_path: Path) -> Path:
    out = tmp_path / "release"
    shard(out / "train" / "shard-000000.tar", ["b-2", "a-1"])
    shard(out / "train" / "shard-000001.tar", ["c-3"])
    shard(out / "val" / "shard-000000.tar", ["d-4"])
    (out / ".nv-meta").mkdir()
    (out / ".nv-meta" / "dataset.yaml").write_text("__module__: megatron.energon\n")
    (out / ".nv-meta" / "split.yaml").write_text("split_parts: {}\n")
    (out / ".nv-meta" / "index.sqlite").write_bytes(b"derived")  # energon's, left out
    (out / "train" / "shard-000000.tar.idx").write_bytes(b"derived")
    return out


def locked(release: Path) -> Path:
    lock = release.parent / "locks" / "demo.lock"
    write_lock(lock, make_lock(release, "demo", 7))
    return lock


def test_lock_pins_files_and_sample_keys(release: Path) -> None:
    assert release_files(release) == ["train/shard-000000.tar", "train/shard-000001.tar", "val/shard-000000.tar",
                                      ".nv-meta/dataset.yaml", ".nv-meta/split.yaml"]
    sums, total = release_checksums(release)
    for rel, sha in sums.items():
        assert sha == hashlib.sha256((release / rel).read_bytes()).hexdigest()
    assert total == hashlib.sha256("".join(f"{s}  {r}\n" for r, s in sums.items()).encode()).hexdigest()
    assert sample_keys(release) == {"train": ["a-1", "b-2", "c-3"], "val": ["d-4"]}
    lock = locked(release)
    doc = json.loads(lock.read_text())
    assert doc == {"recipe": "demo", "seed": 7, "release_sha256": total, "files": sums,
                   "samples": {"train": ["a-1", "b-2", "c-3"], "val": ["d-4"]}, "decontam": []}
    assert lock.read_text().endswith("}\n")
    assert compare_with_lock(release, lock) == []


def test_derived_index_files_do_not_matter(release: Path) -> None:
    lock = locked(release)
    (release / ".nv-meta" / "index.sqlite").write_bytes(b"rebuilt by another energon")
    (release / "train" / "shard-000000.tar.idx").unlink()
    assert compare_with_lock(release, lock) == []


def test_a_changed_byte_is_named(release: Path) -> None:
    lock = locked(release)
    tar = release / "val" / "shard-000000.tar"
    data = bytearray(tar.read_bytes())
    data[600] ^= 0x01
    tar.write_bytes(bytes(data))
    problems = compare_with_lock(release, lock)
    assert problems[0].startswith("checksum differs: val/shard-000000.tar (lock ")
    assert problems[-1].startswith("release checksum differs")
    assert len(problems) == 2


def test_missing_and_extra_shards_and_samples(release: Path) -> None:
    lock = locked(release)
    (release / "train" / "shard-000001.tar").unlink()
    shard(release / "val" / "shard-000001.tar", ["e-5"])
    problems = compare_with_lock(release, lock)
    assert "missing file train/shard-000001.tar" in problems
    assert "unexpected file val/shard-000001.tar" in problems
    assert "train: sample missing: c-3" in problems
    assert "val: unexpected sample: e-5" in problems
    assert problems[-1].startswith("release checksum differs") and len(problems) == 5


def test_changed_metadata_and_a_missing_build(release: Path, tmp_path: Path) -> None:
    lock = locked(release)
    (release / ".nv-meta" / "split.yaml").write_text("split_parts: {train: []}\n")
    problems = compare_with_lock(release, lock)
    assert problems[0].startswith("checksum differs: .nv-meta/split.yaml") and len(problems) == 2
    assert compare_with_lock(tmp_path / "nowhere", lock) == [f"build folder {tmp_path / 'nowhere'} does not exist"]
    shutil.rmtree(release / ".nv-meta")
    assert release_files(release)[-1] == "val/shard-000000.tar"


def test_many_lost_samples_are_listed_twenty_at_most(release: Path) -> None:
    shard(release / "train" / "shard-000002.tar", [f"z-{i:02d}" for i in range(30)])
    lock = locked(release)
    (release / "train" / "shard-000002.tar").unlink()
    missing = [p for p in compare_with_lock(release, lock) if "sample missing" in p]
    assert missing == [f"train: sample missing: z-{i:02d}" for i in range(20)]


def test_lock_file_format_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "r.lock"
    write_lock(path, {"samples": {"train": ["病灶-1"]}, "recipe": "r"})
    write_lock(path, {"samples": {"train": ["病灶-1"]}, "recipe": "r"})  # an existing folder is fine
    assert path.read_bytes().decode("utf-8") == '{\n "recipe": "r",\n "samples": {\n  "train": [\n   "病灶-1"\n  ]\n }\n}\n'


def test_messages_and_whole_splits(release: Path) -> None:
    lock = locked(release)
    before = json.loads(lock.read_text())
    tar = release / "train" / "shard-000001.tar"
    data = bytearray(tar.read_bytes())
    data[600] ^= 0x01
    tar.write_bytes(bytes(data))
    shutil.rmtree(release / "val")  # a split gone entirely
    shard(release / "test" / "shard-000000.tar", [f"t-{i:02d}" for i in range(25)])  # a split the lock lacks
    after = make_lock(release, "demo", 7)
    problems = compare_with_lock(release, lock)
    rel = "train/shard-000001.tar"
    assert f"checksum differs: {rel} (lock {before['files'][rel][:12]}, build {after['files'][rel][:12]})" in problems
    assert "missing file val/shard-000000.tar" in problems and "val: sample missing: d-4" in problems
    assert [p for p in problems if p.startswith("test: unexpected sample")] == \
        [f"test: unexpected sample: t-{i:02d}" for i in range(20)]
    assert problems[-1] == (f"release checksum differs (lock {before['release_sha256'][:12]}, "
                            f"build {after['release_sha256'][:12]})")
