"""Video -> ordered frames (or the clip itself), in the form the trainer reads.

**What the trainer expects.** ``megatron_fleming.data.task_encoder`` reads a video sample as its
frames stored as images, ``key.0.jpg``, ``key.1.jpg``, ... in time order, one ``<image>`` per
frame, each frame one 448 px tile (modality ``video``). That is the default here
(``store="frames"``). With ``store="clip"``, which a recipe must ask for, the sample holds the
source file unchanged as ``key.0.mp4`` with a single ``<image>`` standing for the whole clip:
that form is for a trainer that samples frames itself; the current one skips such samples
(``unsupported_media``).

**Which frames.** As the released Fleming-VL demo samples them (``demo/demo.py``:
``inference_video`` passes ``num_segments = int(duration)``, one frame per second, to
``get_frame_indices`` with no time bound)::

    n     = int(frame_count / fps)           # here at least 1, at most max_frames and frame_count
    seg   = (frame_count - 1) / n
    index = int(seg / 2 + round_half_even(seg * i)),   i = 0 .. n - 1

The demo takes the duration from its caller; here it is the decoder's frame count over its
average frame rate. The 6 s, 8 fps demo clip (48 frames) gives frames 3, 11, 19, 27, 34, 42,
one in each second. A cap spreads its ``max_frames`` evenly over the clip by the same formula.

**Decoding.** decord first (the demo's reader); PyAV when decord cannot open or read a file.
A file neither can open, one that ends before its declared frames, or one with no frames is
``Rejected`` with the reason. Frames are stored JPEG (default; quality 90, 4:2:0, baseline, no
EXIF) or PNG with fixed settings, so the bytes depend only on the file and the codec versions.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from datakit.errors import Rejected
from datakit.record import Media

CLIP_EXTENSIONS = frozenset({"mp4", "avi", "mov", "mkv", "webm"})
FRAME_FORMATS = ("jpg", "png")
STORE_FORMS = ("frames", "clip")


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameOptions:
    """How a clip becomes media; readers build it from their recipe options."""

    max_frames: int = 32
    frame_format: str = "jpg"
    jpeg_quality: int = 90
    png_compress_level: int = 1
    store: str = "frames"

    def __post_init__(self) -> None:
        if not isinstance(self.max_frames, int) or self.max_frames < 1:
            raise ValueError(f"max_frames must be a positive integer, got {self.max_frames!r}")
        if self.frame_format not in FRAME_FORMATS:
            raise ValueError(f"frame_format must be one of {FRAME_FORMATS}, got {self.frame_format!r}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be 1..95, got {self.jpeg_quality!r}")
        if self.png_compress_level not in range(10):
            raise ValueError(f"png_compress_level must be 0..9, got {self.png_compress_level!r}")
        if self.store not in STORE_FORMS:
            raise ValueError(f"store must be one of {STORE_FORMS}, got {self.store!r}")

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> "FrameOptions":
        names = ("max_frames", "frame_format", "jpeg_quality", "png_compress_level", "store")
        return cls(**{k: opts[k] for k in names if k in opts})


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedFrames:
    """The sampled frames of one clip, RGB uint8 (n, H, W, 3), and where they sit in it."""

    frames: np.ndarray
    indices: tuple[int, ...]
    times: tuple[float, ...]  # presentation time of each frame, seconds
    frame_count: int
    fps: float
    decoder: str  # "decord" or "pyav"


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoMedia:
    """What a reader keeps of a clip: its media, the file's sha256, and the sampling facts."""

    media: list[Media]
    sha256: str
    frames: DecodedFrames


def demo_frame_indices(frame_count: int, fps: float, max_frames: int) -> list[int]:
    """Frame indices at one per second, as the demo's ``get_frame_indices`` computes them
    (never more frames than the clip has, so a sub-1-fps clip repeats none)."""
    n = min(max(int(frame_count / fps), 1), max_frames, frame_count)
    seg = float(frame_count - 1) / n
    return [int(seg / 2 + np.round(seg * i)) for i in range(n)]


def decode_with_decord(data: bytes, max_frames: int = 32) -> DecodedFrames:
    """The sampled frames by decord; its own errors propagate (``decode_frames`` catches them)."""
    import decord

    reader = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=1)
    count, fps = len(reader), float(reader.get_avg_fps())
    if count < 1 or not fps > 0:
        raise ValueError(f"{count} frames at {fps} fps")
    indices = demo_frame_indices(count, fps, max_frames)
    frames = reader.get_batch(indices).asnumpy()
    times = reader.get_frame_timestamp(indices)[:, 0]
    return DecodedFrames(frames=frames, indices=tuple(indices), times=tuple(round(float(t), 6) for t in times),
                         frame_count=count, fps=fps, decoder="decord")


def decode_with_pyav(data: bytes, path: str, max_frames: int = 32) -> DecodedFrames:
    """The sampled frames by PyAV, the fallback. The whole stream is decoded in order, so a
    file cut short is caught even when every sampled frame precedes the cut."""
    import av

    with av.open(io.BytesIO(data)) as container:
        if not container.streams.video:
            raise Rejected("video_no_stream", path, "no video stream")
        stream = container.streams.video[0]
        count = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if count < 1 or not fps > 0:
            raise Rejected("video_no_frames", path, f"{count} frames at {fps} fps")
        wanted = demo_frame_indices(count, fps, max_frames)
        container.seek(0)
        kept: dict[int, tuple[np.ndarray, float]] = {}
        decoded = 0
        try:
            for frame in container.decode(stream):
                if decoded in wanted:
                    kept[decoded] = (frame.to_ndarray(format="rgb24"), float(frame.time or 0.0))
                decoded += 1
        except av.error.FFmpegError as e:
            raise Rejected("video_truncated", path, f"decoding stopped after {decoded} of {count} frames: {e}") from e
    if decoded < count:
        raise Rejected("video_truncated", path, f"{decoded} of {count} declared frames decoded")
    return DecodedFrames(frames=np.stack([kept[i][0] for i in wanted]), indices=tuple(wanted),
                         times=tuple(round(kept[i][1], 6) for i in wanted), frame_count=count, fps=fps,
                         decoder="pyav")


def decode_frames(data: bytes, path: str, max_frames: int = 32) -> DecodedFrames:
    """The sampled frames of an encoded clip: decord, then PyAV where decord fails."""
    if not data:
        raise Rejected("empty_file", path)
    import av
    import decord

    try:
        return decode_with_decord(data, max_frames)
    except (decord.DECORDError, RuntimeError, ValueError) as first:  # open errors are RuntimeError
        decord_error = f"{type(first).__name__}: {str(first).strip()[:200]}"
    try:
        return decode_with_pyav(data, path, max_frames)
    except av.error.FFmpegError as e:  # the container itself cannot be parsed
        raise Rejected("video_unreadable", path, f"decord: {decord_error}; pyav: {type(e).__name__}: {e}") from e


def encode_frame(frame: np.ndarray, opts: FrameOptions) -> Media:
    buf = io.BytesIO()
    image = Image.fromarray(frame, mode="RGB")
    if opts.frame_format == "jpg":
        image.save(buf, format="JPEG", quality=opts.jpeg_quality, subsampling=2, optimize=False, progressive=False)
    else:
        image.save(buf, format="PNG", compress_level=opts.png_compress_level, optimize=False)
    return Media(data=buf.getvalue(), ext=opts.frame_format, width=frame.shape[1], height=frame.shape[0])


def read_video(path: Path, rel: str, opts: FrameOptions) -> VideoMedia:
    """Read, validate and sample one clip; its media are the frames, or the file itself."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Rejected("unreadable_file", rel, e.strerror or str(e)) from e
    decoded = decode_frames(data, rel, opts.max_frames)
    if opts.store == "clip":
        ext = path.suffix.lower().lstrip(".")
        if ext not in CLIP_EXTENSIONS:
            raise Rejected("video_unsupported_container", rel, f".{ext} is not one of {sorted(CLIP_EXTENSIONS)}")
        height, width = decoded.frames.shape[1:3]
        media = [Media(data=data, ext=ext, width=width, height=height)]
    else:
        media = [encode_frame(f, opts) for f in decoded.frames]
    return VideoMedia(media=media, sha256=hashlib.sha256(data).hexdigest(), frames=decoded)
