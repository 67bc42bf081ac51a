"""Task-encoder throughput on datakit's demo shards, against energon's raw iteration, same process.

Builds the ultrasound recipe from the bundled sources (or takes ``--shards``), then times, in one
process (one dataloader worker's worth of work, ``num_workers=0``), over the same training split:
  * raw: energon's iteration of cooked samples, image bytes undecoded (the baseline);
  * raw + PIL decode: the same with energon's PIL image decoder (a second reference);
  * the Fleming task encoder, InternVL3 defaults (448 px, up to 12 tiles + thumbnail, 256
    tokens per tile), greedy packing into 8192 tokens: PIL tiles, and DALI (CPU) if installed.
Prints samples/s, tiles/s and the ratio of each row to raw. The tokenizer is a byte-level BPE
trained on the shards' text (no hub), so token counts differ from Qwen2.5's.
Usage: python bench/bench_task_encoder.py [--shards DIR] [--samples 200] [--max-tiles 12]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from megatron.energon import DefaultTaskEncoder, WorkerConfig, get_loader, get_train_dataset
from megatron.energon.flavors.webdataset.sample_decoder import SampleDecoder

from datakit.energon_format import COOKERS
from datakit.shard_writer import iter_samples
from megatron_fleming.data.task_encoder import FlemingTaskEncoder, TaskEncoderConfig
from megatron_fleming.data.tiling import TilingConfig
from megatron_fleming.data.tokenizer import train_tiny_tokenizer


class RawEncoder(DefaultTaskEncoder):
    """Cook only: what energon yields before any task encoding."""

    cookers = COOKERS
    decoder = None


class DecodingEncoder(RawEncoder):
    decoder = SampleDecoder(image_decode="pil")


def _loader(shards: Path, task_encoder, **kwargs):
    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    ds = get_train_dataset(shards, split_part="train", worker_config=wc, shuffle_buffer_size=None,
                           max_samples_per_sequence=None, task_encoder=task_encoder, **kwargs)
    return get_loader(ds)


def time_raw(shards: Path, encoder, n: int) -> tuple[float, int | None]:
    it = iter(_loader(shards, encoder, batch_size=None))
    next(it)  # warm-up: opens shards, first sample
    t = time.perf_counter()
    for _ in range(n):
        next(it)
    return time.perf_counter() - t, None  # no tiles: images stay bytes / whole PIL images


def time_task_encoder(shards: Path, encoder: FlemingTaskEncoder, n: int) -> tuple[float, int]:
    it = iter(_loader(shards, encoder, batch_size=1, packing_buffer_size=32))
    next(it)
    samples = tiles = 0
    t = time.perf_counter()
    while samples < n:
        batch = next(it)
        samples += len(batch.__key__)
        tiles += batch.pixel_values.shape[0]
    return (time.perf_counter() - t) * n / samples, tiles * n // samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=Path, help="a datakit build; default: build ultrasound now")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--max-tiles", type=int, default=12)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if shards is None:
            from datakit.build import SAMPLE_SOURCES, build
            from datakit.recipe import load_recipe

            shards = build(load_recipe("ultrasound"), SAMPLE_SOURCES, Path(tmp) / "ultrasound").out
        texts = [t["value"] for tar in sorted(shards.glob("*/*.tar")) for _, parts in iter_samples(tar)
                 for t in json.loads(parts["json"])["conversations"]]
        tok = train_tiny_tokenizer(texts, vocab_size=2000)
        n = args.samples
        cfg = TaskEncoderConfig(tiling=TilingConfig(max_tiles=args.max_tiles), max_seq_len=8192)
        rows = [("energon raw (cooked, bytes)", *time_raw(shards, RawEncoder(), n)),
                ("energon raw + PIL decode", *time_raw(shards, DecodingEncoder(), n)),
                ("task encoder, PIL tiles", *time_task_encoder(shards, FlemingTaskEncoder(tok, cfg), n))]
        try:
            import nvidia.dali  # noqa: F401
        except ImportError:
            print("DALI not installed: skipping the DALI row (pip install nvidia-dali-cuda120)")
        else:
            dali = FlemingTaskEncoder(tok, TaskEncoderConfig(tiling=cfg.tiling, max_seq_len=8192, decoder="dali"))
            rows.append(("task encoder, DALI CPU tiles", *time_task_encoder(shards, dali, n)))
    base = n / rows[0][1]
    print(f"{n} training samples per row, one process, max_tiles={args.max_tiles}")
    print(f"{'pipeline':32s} {'samples/s':>10s} {'tiles/s':>9s} {'x raw':>8s}")
    for name, seconds, tiles in rows:
        rate = n / seconds
        tile_rate = "-" if tiles is None else f"{tiles / seconds:.1f}"
        print(f"{name:32s} {rate:10.1f} {tile_rate:>9s} {rate / base:8.4f}")


if __name__ == "__main__":
    main()
