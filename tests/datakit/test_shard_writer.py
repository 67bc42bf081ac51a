"""The deterministic tar writer against Python's own tarfile reader, over random members
(hypothesis): every name, size and byte comes back, every header field is the fixed one, the
recorded offsets point at the data, and the same members give the same bytes."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.shard_writer import (
    BLOCK,
    MAX_NAME,
    AtomicTarWriter,
    iter_samples,
    read_member,
    remove_stale_temporaries,
    ustar_header,
)

KEYS = st.text(alphabet="abcdefghij0123456789-_", min_size=1, max_size=20)
PARTS = st.sampled_from(["json", "0.png", "1.png", "txt", "mask.png"])
SAMPLES = st.dictionaries(KEYS, st.dictionaries(PARTS, st.binary(max_size=1300), min_size=1, max_size=3),
                          min_size=1, max_size=5)


def write(path: Path, samples: dict[str, dict[str, bytes]]) -> AtomicTarWriter:
    with AtomicTarWriter(path) as w:
        for key, parts in samples.items():
            w.add_sample(key, parts.items())
    return w


@settings(max_examples=30)
@given(samples=SAMPLES)
def test_members_round_trip_through_tarfile(tmp_path_factory, samples) -> None:
    folder = tmp_path_factory.mktemp("tar")
    path = folder / "shard-000000.tar"
    writer = write(path, samples)
    data = path.read_bytes()
    assert len(data) % BLOCK == 0 and data.endswith(bytes(2 * BLOCK))
    expected = [(f"{k}.{p}", v) for k, parts in samples.items() for p, v in parts.items()]
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [name for name, _ in expected]
        for m, (name, content) in zip(members, expected):
            assert m.isfile() and m.size == len(content) and tar.extractfile(m).read() == content
            assert (m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) == (0o644, 0, 0, 0, "", "")
            assert writer.offsets[name] == (m.offset_data, len(content))
            assert read_member(path, *writer.offsets[name]) == content
    assert [(k, parts) for k, parts in iter_samples(path)] == [
        (k, {p: v for p, v in parts.items()}) for k, parts in samples.items()]
    again = folder / "again.tar"
    write(again, samples)
    assert again.read_bytes() == data
    assert sorted(p.name for p in folder.iterdir()) == ["again.tar", "shard-000000.tar"]  # no temporaries


def test_header_is_fixed_and_checksummed() -> None:
    h = ustar_header("k.json", 1234)
    assert len(h) == BLOCK and h[:6] == b"k.json" and h[124:136] == b"00000002322\0"
    assert h[257:263] == b"ustar\0" and h[156:157] == b"0"
    stored = int(h[148:154], 8)
    assert stored == sum(h[:148]) + 8 * ord(" ") + sum(h[156:])
    assert ustar_header("x" * MAX_NAME, 0)[:MAX_NAME] == b"x" * MAX_NAME
    with pytest.raises(ValueError, match="longer than 100"):
        ustar_header("x" * (MAX_NAME + 1), 0)
    with pytest.raises(ValueError, match="too large"):
        ustar_header("big", 8**11)
    assert ustar_header("big", 8**11 - 1)[124:136] == b"77777777777\0"


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "train" / "shard-000000.tar"
    with pytest.raises(RuntimeError):
        with AtomicTarWriter(path) as w:
            w.add("a.json", b"{}")
            raise RuntimeError("killed")
    assert not path.exists() and list(path.parent.iterdir()) == []
    write(path, {"a": {"json": b"{}"}})
    assert read_member(path, BLOCK, 2) == b"{}"
    with pytest.raises(OSError, match="short read"):
        read_member(path, path.stat().st_size - 4, 10)


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    for name in ("shard-000000.tar.tmp-11", "shard-000001.tar.tmp-12", "shard-000000.tar"):
        (tmp_path / "train" / name).write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 2
    assert [p.name for p in (tmp_path / "train").iterdir()] == ["shard-000000.tar"]
    assert remove_stale_temporaries(tmp_path / "missing") == 0


def test_archive_size_is_members_plus_two_zero_blocks(tmp_path: Path) -> None:
    samples = {"k1": {"json": b"x" * 700, "0.png": b""}, "k2": {"json": b"y" * 512}}
    path = tmp_path / "a" / "b" / "shard.tar"  # folders are created
    write(path, samples)
    members = [v for parts in samples.values() for v in parts.values()]
    assert path.stat().st_size == sum(BLOCK + -(-len(v) // BLOCK) * BLOCK for v in members) + 2 * BLOCK


def test_iter_samples_reads_foreign_tars_with_folders(tmp_path: Path) -> None:
    """A tar written by another tool: folder entries are skipped (not the end), members in
    sub-folders are keyed by their file name."""
    import io

    path = tmp_path / "foreign.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("d", None), ("d/e/a.json", b"1"), ("d/e/a.txt", b"2"), ("d", None), ("b.json", b"3")):
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert list(iter_samples(path)) == [("a", {"json": b"1", "txt": b"2"}), ("b", {"json": b"3"})]
