"""An item's media as the images a model sees, through datakit's own decoders.

* image files: decoded by ``datakit.media.decode_image`` (the training read path), EXIF
  orientation applied, converted to RGB;
* a ``.npy`` volume: ``datakit.volume`` validates it and renders the slices the Fleming-VL demo
  feeds (11 evenly spaced, per-slice min-max, grey to RGB) — the same pixels training slices
  have, so decontamination compares like with like;
* a video clip: ``datakit.video`` samples one frame per second (the demo's rule, capped at
  ``max_frames``), decord first, PyAV as the fallback.

Each image comes with a label (``file``, ``file#slice=K`` or ``file#frame=K``) relative to the
benchmark folder, the form decontamination registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from datakit.benchmarks.items import BenchItem
from datakit.errors import Rejected
from datakit.media import decode_image
from datakit.video import FrameOptions, decode_frames
from datakit.volume import SliceOptions, as_volume, check_shape, read_bytes, read_npy, slice_indices, to_uint8


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """How volumes and clips become images; the defaults are the Fleming-VL demo's."""

    slices: SliceOptions = SliceOptions()
    frames: FrameOptions = FrameOptions(max_frames=32)


def _label(item: BenchItem, path: Path) -> str:
    if item.root is not None:
        try:
            return path.relative_to(item.root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def _image_file(path: Path, label: str) -> Image.Image:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Rejected("unreadable_file", label, e.strerror or str(e)) from e
    im = decode_image(data, label)
    return ImageOps.exif_transpose(im).convert("RGB")


def load_media(item: BenchItem, opts: MediaOptions = MediaOptions()) -> list[tuple[str, Image.Image]]:
    """(label, RGB image) for every image the model sees for ``item``, in prompt order.
    A file that cannot be read raises ``Rejected`` naming it."""
    out: list[tuple[str, Image.Image]] = []
    for path in item.media:
        label = _label(item, path)
        if item.media_kind == "image":
            out.append((label, _image_file(path, label)))
        elif item.media_kind == "volume":
            arr, _ = read_npy(path, label)
            vol = as_volume(arr, label, opts.slices.expected_shape)
            for k in slice_indices(vol.shape[0], opts.slices.num_slices):
                grey = to_uint8(vol[k], opts.slices.window)
                out.append((f"{label}#slice={k}", Image.fromarray(grey, "L").convert("RGB")))
        else:
            decoded = decode_frames(read_bytes(path, label), label, opts.frames.max_frames)
            for k, frame in zip(decoded.indices, decoded.frames):
                out.append((f"{label}#frame={k}", Image.fromarray(frame, "RGB")))
    return out


def count_images(item: BenchItem, opts: MediaOptions = MediaOptions()) -> int:
    """How many images ``load_media`` gives for ``item``, reading only headers where it can
    (the prompt of a scored response names one ``<image>`` per image)."""
    if item.media_kind == "image":
        return len(item.media)
    if item.media_kind == "volume":
        import numpy as np

        total = 0
        for path in item.media:
            label = _label(item, path)
            try:
                shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            except (OSError, ValueError) as e:
                raise Rejected("volume_unreadable", label, str(e)) from e
            depth = check_shape(shape, label, opts.slices.expected_shape)[0]
            total += len(slice_indices(depth, opts.slices.num_slices))
        return total
    return sum(len(decode_frames(read_bytes(p, _label(item, p)), _label(item, p), opts.frames.max_frames).indices)
               for p in item.media)
