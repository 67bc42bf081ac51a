"""Optional DALI path for tiles: decode + resize through an NVIDIA DALI pipeline.

Selected by ``TaskEncoderConfig.decoder = "dali"``. DALI (``pip install nvidia-dali-cuda120``) is
imported only when the first pipeline is built, inside the process that runs it (a dataloader
worker), so the task encoder stays picklable and fork-safe and nothing heavy happens at import.
``device="cpu"`` runs everywhere (and is what the tests check); ``device="mixed"`` decodes on the
GPU (nvJPEG) and is for ``num_workers=0`` loaders on a GPU machine.

Per image the pipeline produces the grid resize ``(S*columns, S*rows)`` and the thumbnail
``(S, S)``, both bicubic with antialiasing, as uint8 CHW (the model normalises on its device);
the tiles are then cut from the grid image in torch, row-major, as the PIL path does. DALI's
bicubic is not PIL's to the bit: the test states the tolerance it holds to.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from megatron_fleming.data.decode import CorruptImageError
from megatron_fleming.data.tiling import TilePlan

INSTALL_HINT = ("DALI is not installed: `pip install nvidia-dali-cuda120` (it runs CPU pipelines "
                "too), or set decoder='pil'")


def import_dali() -> Any:
    """The `nvidia.dali` module, or an ImportError that says how to get it."""
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn  # noqa: F401
        import nvidia.dali.types  # noqa: F401
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return dali


class DaliTileDecoder:
    """Same contract as `PilTileDecoder`: (encoded media, plans) -> [tiles, 3, S, S] uint8."""

    def __init__(self, image_size: int, *, device: str = "cpu", num_threads: int = 1,
                 max_images: int = 64) -> None:
        if device not in ("cpu", "mixed"):
            raise ValueError(f"DALI device {device!r}; use 'cpu' or 'mixed' (GPU decode)")
        self.image_size = image_size
        self.device = device
        self.num_threads = num_threads
        self.max_images = max_images
        self._pipe = None  # built on first use, in the process that uses it

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pipe": None}  # a DALI pipeline does not pickle

    def _build(self) -> Any:
        dali = import_dali()
        fn, types = dali.fn, dali.types
        size = self.image_size

        @dali.pipeline_def(batch_size=self.max_images, num_threads=self.num_threads,
                           device_id=0 if self.device == "mixed" else None,
                           prefetch_queue_depth=1)  # fed and run once per call: nothing to prefetch
        def tiles_pipeline():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
            grid_w = fn.external_source(name="grid_w", dtype=types.FLOAT, ndim=0)
            grid_h = fn.external_source(name="grid_h", dtype=types.FLOAT, ndim=0)
            image = fn.decoders.image(encoded, device=self.device, output_type=types.RGB)
            outputs = []
            for w, h in ((grid_w, grid_h), (size, size)):
                resized = fn.resize(image, resize_x=w, resize_y=h, interp_type=types.INTERP_CUBIC,
                                    antialias=True, dtype=types.UINT8)
                outputs.append(fn.transpose(resized, perm=[2, 0, 1]))  # HWC -> CHW
            return tuple(outputs)

        pipe = tiles_pipeline()
        pipe.build()
        return pipe

    def _run(self, media: Sequence[bytes], plans: Sequence[TilePlan]) -> tuple[list, list]:
        if self._pipe is None:
            self._pipe = self._build()
        pipe = self._pipe
        pipe.feed_input("encoded", [np.frombuffer(m, dtype=np.uint8) for m in media])
        pipe.feed_input("grid_w", [np.float32(self.image_size * p.columns) for p in plans])
        pipe.feed_input("grid_h", [np.float32(self.image_size * p.rows) for p in plans])
        try:
            grids, thumbs = pipe.run()
        except RuntimeError as e:
            self._pipe = None  # a failed DALI iteration leaves the pipeline unusable
            raise CorruptImageError(f"DALI could not decode the sample's images: {e}") from e
        if self.device == "mixed":
            grids, thumbs = grids.as_cpu(), thumbs.as_cpu()
        return ([torch.from_numpy(np.array(grids[i])) for i in range(len(media))],
                [torch.from_numpy(np.array(thumbs[i])) for i in range(len(media))])

    def __call__(self, media: Sequence, plans: Sequence[TilePlan]) -> torch.Tensor:
        s = self.image_size
        if not media:
            return torch.empty((0, 3, s, s), dtype=torch.uint8)
        if not all(isinstance(m, (bytes, bytearray, memoryview)) for m in media):
            raise TypeError("the DALI decoder needs encoded image bytes; leave the task "
                            "encoder's energon decoder unset (decoder=None)")
        tiles: list[torch.Tensor] = []
        for start in range(0, len(media), self.max_images):
            chunk = slice(start, start + self.max_images)
            grids, thumbs = self._run(media[chunk], plans[chunk])
            for plan, grid, thumb in zip(plans[chunk], grids, thumbs):
                if grid.shape[1:] != (s * plan.rows, s * plan.columns):
                    raise RuntimeError(f"DALI returned {tuple(grid.shape)} for a "
                                       f"{plan.columns}x{plan.rows} grid of {s}-px tiles")
                tiles += [grid[:, r * s:(r + 1) * s, c * s:(c + 1) * s]
                          for r in range(plan.rows) for c in range(plan.columns)]
                if plan.thumbnail:
                    tiles.append(thumb)
        return torch.stack(tiles).contiguous()
