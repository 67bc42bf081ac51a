"""Video -> frames: the real Fleming-VL clip gives 6 frames at 1 fps in order (checked against
frames decoded independently), the cap, both decoders, the clip form, and broken clips as
manifest rows while the other clips are emitted."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
from PIL import Image

from datakit.build import build
from datakit.errors import Rejected
from datakit.recipe import load_recipe
from datakit.sources.base import Rejection
from datakit.sources.medvideocap import MedVideoCapReader
from datakit.video import FrameOptions, decode_frames, decode_with_pyav, demo_frame_indices, read_video

CLIP_NAME = "surgery_endoscopy_monitor.mp4"


@pytest.fixture(scope="module")
def clip(sample_sources) -> Path:
    return sample_sources / "MedVideoCap-55K" / "videos" / CLIP_NAME


@pytest.fixture(scope="module")
def all_frames(clip) -> list[np.ndarray]:
    """Every frame of the clip, decoded here with PyAV independently of datakit."""
    with av.open(str(clip)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]


def demo_get_frame_indices(fps: float, max_frame: int, num_segments: int) -> list[int]:
    """The demo's ``get_frame_indices`` with ``bound=None``, written out here as the oracle."""
    start_idx = max(0, round(-100000 * fps))
    end_idx = min(round(100000 * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    return [int(start_idx + seg_size / 2 + np.round(seg_size * i)) for i in range(num_segments)]


@pytest.mark.parametrize("count,fps", [(48, 8.0), (241, 30.0), (300, 29.97), (80, 10.0), (13, 4.0)])
def test_frame_indices_follow_the_demo(count, fps):
    assert demo_frame_indices(count, fps, 1000) == demo_get_frame_indices(fps, count - 1, int(count / fps))


def test_real_clip_gives_six_frames_at_one_per_second_in_order(clip, all_frames):
    video = read_video(clip, CLIP_NAME, FrameOptions())
    decoded = video.frames
    assert (decoded.frame_count, decoded.fps, decoded.decoder) == (48, 8.0, "decord")
    assert len(video.media) == 6 and all(m.ext == "jpg" for m in video.media)
    assert [int(t) for t in decoded.times] == [0, 1, 2, 3, 4, 5]  # one frame in each second
    assert [i / 8.0 for i in decoded.indices] == list(decoded.times)
    matched = []
    for media in video.media:
        frame = np.asarray(Image.open(io.BytesIO(media.data))).astype(np.int16)
        assert frame.shape == (480, 720, 3)
        matched.append(int(np.argmin([np.abs(frame - f).mean() for f in all_frames])))
    assert matched == list(decoded.indices)
    assert matched == sorted(matched) and len(set(matched)) == 6


def test_cap_spreads_max_frames_over_the_clip(clip):
    decoded = read_video(clip, CLIP_NAME, FrameOptions(max_frames=4)).frames
    assert len(decoded.indices) == 4
    quarters = [int(t / 1.5) for t in decoded.times]  # 6 s in four 1.5 s quarters
    assert quarters == [0, 1, 2, 3]


def test_pyav_fallback_decodes_the_same_frames(clip):
    data = clip.read_bytes()
    first, fallback = decode_frames(data, CLIP_NAME), decode_with_pyav(data, CLIP_NAME)
    assert fallback.decoder == "pyav" and fallback.indices == first.indices and fallback.times == first.times
    assert np.array_equal(fallback.frames, first.frames)


def test_frames_are_byte_deterministic_and_png_is_lossless(clip):
    a = read_video(clip, CLIP_NAME, FrameOptions())
    b = read_video(clip, CLIP_NAME, FrameOptions())
    assert [m.data for m in a.media] == [m.data for m in b.media]
    png = read_video(clip, CLIP_NAME, FrameOptions(frame_format="png", max_frames=2))
    assert all(m.ext == "png" for m in png.media)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.media[0].data))), png.frames.frames[0])


def test_clip_form_stores_the_file_unchanged(clip):
    video = read_video(clip, CLIP_NAME, FrameOptions(store="clip"))
    assert len(video.media) == 1 and video.media[0].ext == "mp4" and video.media[0].data == clip.read_bytes()
    assert (video.media[0].width, video.media[0].height) == (720, 480)


def faststart_copy(src: Path, dst: Path) -> None:
    """The clip remuxed with its index first, so a cut file still opens and ends early."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        stream = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                o.mux(packet)


def test_broken_clips_are_rejected_with_reasons(tmp_path, clip):
    data = clip.read_bytes()
    with pytest.raises(Rejected) as e:
        decode_frames(data[: len(data) // 2], "cut.mp4")  # index (moov) at the end: cannot open
    assert e.value.reason == "video_unreadable" and "decord" in e.value.detail and "pyav" in e.value.detail
    faststart_copy(clip, tmp_path / "fast.mp4")
    fast = (tmp_path / "fast.mp4").read_bytes()
    assert decode_frames(fast, "fast.mp4").indices == (3, 11, 19, 27, 34, 42)
    with pytest.raises(Rejected) as e:
        decode_frames(fast[: len(fast) // 2], "fast_cut.mp4")
    assert e.value.reason == "video_truncated" and "of 48" in e.value.detail
    with pytest.raises(Rejected) as e:
        decode_frames(b"", "empty.mp4")
    assert e.value.reason == "empty_file"


def test_truncated_and_empty_clips_are_manifest_rows_and_nothing_else_is_lost(tmp_path, sample_sources, clip):
    src = tmp_path / "src"
    top = src / "MedVideoCap-55K"
    shutil.copytree(sample_sources / "MedVideoCap-55K", top)
    data = clip.read_bytes()
    (top / "videos" / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    faststart_copy(clip, tmp_path / "fast.mp4")
    fast = (tmp_path / "fast.mp4").read_bytes()
    (top / "videos" / "fast_cut.mp4").write_bytes(fast[: len(fast) // 2])
    (top / "videos" / "empty.mp4").write_bytes(b"")
    with (top / "captions.jsonl").open("a", encoding="utf-8") as fh:
        for vid in ("cut", "fast_cut", "empty"):
            fh.write(json.dumps({"id": vid, "brief_caption": "A clip.", "detailed_caption": "A clip."}) + "\n")
    result = build(load_recipe("video"), src, tmp_path / "out")
    manifest = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    records = manifest.filter(pl.col("kind") == "record")
    status = {row["path"]: (row["status"], row["reason"]) for row in records.iter_rows(named=True)}
    assert status == {
        "videos/cut.mp4": ("rejected", "video_unreadable"),
        "videos/fast_cut.mp4": ("rejected", "video_truncated"),
        "videos/empty.mp4": ("rejected", "empty_file"),
        f"videos/{CLIP_NAME}": ("emitted", ""),
        "videos/synthetic_ultrasound_sweep.mp4": ("emitted", ""),
        "videos/synthetic_lumen_flythrough.mp4": ("emitted", ""),
    }
    acc = result.summary["accounting"]
    assert acc["records"]["inputs"] == 6 and acc["samples"]["emitted"] == 6  # 3 clips x (summary, caption)


def test_caption_rows_are_refused_with_file_and_line(tmp_path, sample_sources):
    top = tmp_path / "MedVideoCap-55K"
    shutil.copytree(sample_sources / "MedVideoCap-55K", top)
    lines = (top / "captions.jsonl").read_bytes().splitlines()
    lines += [
        b'{"id": "surgery_endoscopy_monitor", "brief_caption": "again"}',  # 4 duplicate id
        b"{not json",  # 5
        b'{"id": "no_text", "brief_caption": " ", "detailed_caption": ""}',  # 6
        b'{"id": "absent", "brief_caption": "A clip."}',  # 7 no videos/absent.mp4
        b'{"brief_caption": "No id."}',  # 8
        b'{"id": "bytes", "brief_caption": "caf\xe9"}',  # 9 latin-1, not UTF-8
    ]
    (top / "captions.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    shutil.copyfile(top / "videos" / CLIP_NAME, top / "videos" / "orphan.mp4")
    found = list(MedVideoCapReader(top).discover())
    refused = {j.path: j.reason for j in found if isinstance(j, Rejection)}
    assert refused == {
        "captions.jsonl:4": "duplicate_id",
        "captions.jsonl:5": "bad_json",
        "captions.jsonl:6": "missing_caption",
        "captions.jsonl:7": "missing_video_file",
        "captions.jsonl:8": "missing_id",
        "captions.jsonl:9": "non_utf8",
        "videos/orphan.mp4": "video_without_caption",
    }
    kept = [r for r in found if not isinstance(r, Rejection)]
    assert [r.record_id for r in kept] == ["surgery_endoscopy_monitor", "synthetic_ultrasound_sweep",
                                           "synthetic_lumen_flythrough"]
    assert kept[0].text.startswith("The clip opens") and kept[0].meta["brief_caption"].startswith("In a dimly")
