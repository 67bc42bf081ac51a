"""Items per second of ``fleming eval run``, per generation backend, on a tiny random InternVL.

Every benchmark's synthetic sample folder (``datakit.benchmarks.samples``: 26 items, images,
an 11-slice CT volume, a 3-frame clip) is evaluated end to end with each backend; timed in the
same run, per backend:
  * generate only: ``backend.generate`` on requests built beforehand (the model's share),
  * eval run: ``runner.run`` (read, decode media, prompt, generate, score, write outputs).
Prints items/s and eval run / generate-only (1.0 = the harness costs nothing beyond the model).
The fleming engine joins ``BACKENDS`` once it is wired (``megatron_fleming.eval.backends``); the
ratio between backends then compares the engines on the same requests.
Usage: python bench/bench_eval.py [--max-new-tokens 16] [--batch-size 8] [--repeat 2]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable

from datakit.benchmarks import BENCHMARKS, read_benchmark
from datakit.benchmarks.media import load_media
from datakit.benchmarks.samples import write_samples
from megatron_fleming.eval.backends import Backend, GenerationConfig, TransformersBackend
from megatron_fleming.eval.encoding import GenerationRequest
from megatron_fleming.eval.prompts import build_prompt
from megatron_fleming.eval.runner import run
from megatron_fleming.eval.tiny_model import write_tiny_internvl

#: name -> factory(checkpoint folder, config). The lead adds "fleming" here with the engine.
BACKENDS: dict[str, Callable[[Path, GenerationConfig], Backend]] = {
    "transformers": lambda ckpt, cfg: TransformersBackend(ckpt, cfg),
}


def requests_of(data: Path) -> list[GenerationRequest]:
    out = []
    for name in BENCHMARKS:
        for item in read_benchmark(name, data / name).items:
            images = tuple(im for _, im in load_media(item))
            out.append(GenerationRequest(item.qid, build_prompt(item, len(images)), images,
                                         item.media_kind in ("volume", "video")))
    return out


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_samples(root / "data")
        ckpt = write_tiny_internvl(root / "model", seed=0)
        requests = requests_of(root / "data")
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device="cpu")
        print(f"{len(requests)} items, {len(BENCHMARKS)} benchmarks, max_new_tokens={args.max_new_tokens}, "
              f"batch {args.batch_size}, best of {args.repeat}")
        for name, factory in BACKENDS.items():
            backend = factory(ckpt, cfg)
            gen = best_of(args.repeat, lambda: backend.generate(requests))
            full = best_of(args.repeat, lambda: run(BENCHMARKS, root / "data", backend, root / f"out-{name}",
                                                    batch_size=args.batch_size))
            n = len(requests)
            print(f"  {name:13s} generate only {n / gen:7.2f} items/s | eval run {n / full:7.2f} items/s | "
                  f"eval run / generate-only time {full / gen:5.2f}")


if __name__ == "__main__":
    main()
