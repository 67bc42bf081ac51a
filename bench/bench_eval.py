"""Items per second of ``fleming eval run``, per generation backend, on a tiny random InternVL.

Every benchmark's synthetic sample folder (``datakit.benchmarks.samples``: 26 items, images,
an 11-slice CT volume, a 3-frame clip) is evaluated end to end with each backend; timed in the
same run, per backend:
  * generate only: ``backend.generate`` on requests built beforehand (the model's share),
  * eval run: ``runner.run`` (read, decode media, prompt, generate, score, write outputs).
Prints items/s and eval run / generate-only (1.0 = the harness costs nothing beyond the model),
then fleming / transformers items/s (both encode through the same ``RequestEncoder``, so the ratio
compares the engines on the same tokens and tiles).

The fleming engine runs megatron-core on CPU through ``megatron_fleming.cpu_shim``, a
process-wide ``TorchFunctionMode`` that sees every torch call; it is installed when the fleming
backend starts, so the transformers backend is timed before it, and once more after it
("transformers+shim": the shim's own cost, which a GPU run does not pay).
Times are this process's CPU time by default (one torch thread): on a machine shared with other
work, elapsed time mostly measures the waits. Every backend's responses are checked equal to
the transformers backend's.
Usage: python bench/bench_eval.py [--max-new-tokens 16] [--batch-size 8] [--repeat 2] [--threads 1]
       [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from datakit.benchmarks import BENCHMARKS, read_benchmark
from datakit.benchmarks.media import load_media
from datakit.benchmarks.samples import write_samples
import torch

from megatron_fleming.convert.launch import free_port
from megatron_fleming.eval.backends import Backend, GenerationConfig, TransformersBackend, load_fleming, parallel_config
from megatron_fleming.eval.prompts import build_prompt
from megatron_fleming.eval.runner import run
from megatron_fleming.eval.tiny_model import write_tiny_internvl
from megatron_fleming.generate.requests import Request


def fleming(ckpt: Path, cfg: GenerationConfig) -> Backend:
    """Our engine in this process: one rank (TP = PP = 1) on the Hugging Face folder."""
    from megatron_fleming.model.parallel import initialize_parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0",
                      WORLD_SIZE="1")
    initialize_parallel(parallel_config(cfg))
    return load_fleming(hf=ckpt, mcore=None, config=cfg)


#: name -> factory(checkpoint folder, config), timed in this order (fleming installs the CPU shim).
BACKENDS: dict[str, Callable[[Path, GenerationConfig], Backend]] = {
    "transformers": lambda ckpt, cfg: TransformersBackend(ckpt, cfg),
    "fleming": fleming,
    "transformers+shim": lambda ckpt, cfg: TransformersBackend(ckpt, cfg),
}


def requests_of(data: Path) -> list[Request]:
    out = []
    for name in BENCHMARKS:
        for item in read_benchmark(name, data / name).items:
            images = tuple(im for _, im in load_media(item))
            frames = item.media_kind in ("volume", "video")
            out.append(Request(id=item.qid, prompt=build_prompt(item, len(images)), images=images,
                               modality=item.media_kind if frames else None))
    return out


CLOCK = time.process_time  # --clock


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this process's CPU time (steady on a shared, loaded machine; use with "
                         "--threads 1); wall: elapsed time")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    logging.disable(logging.INFO)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_samples(root / "data")
        ckpt = write_tiny_internvl(root / "model", seed=0)
        requests = requests_of(root / "data")
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device="cpu")
        print(f"{len(requests)} items, {len(BENCHMARKS)} benchmarks, max_new_tokens={args.max_new_tokens}, "
              f"batch {args.batch_size}, {args.threads} thread(s), {args.clock} time, best of {args.repeat}")
        rates: dict[str, tuple[float, float]] = {}
        answers: dict[str, list[str]] = {}
        for name, factory in BACKENDS.items():
            backend = factory(ckpt, cfg)
            answers[name] = backend.generate(requests)  # also a warm-up
            gen = best_of(args.repeat, lambda: backend.generate(requests))
            full = best_of(args.repeat, lambda: run(BENCHMARKS, root / "data", backend, root / f"out-{name}"))
            n = len(requests)
            rates[name] = n / gen, n / full
            print(f"  {name:17s} generate only {n / gen:7.2f} items/s | eval run {n / full:7.2f} items/s | "
                  f"eval run / generate-only time {full / gen:5.2f}")
        print(f"  responses equal to transformers': "
              f"{ {name: texts == answers['transformers'] for name, texts in answers.items()} }")
        for base in ("transformers", "transformers+shim"):
            print(f"  fleming / {base:17s} items/s: generate only x{rates['fleming'][0] / rates[base][0]:.2f}, "
                  f"eval run x{rates['fleming'][1] / rates[base][1]:.2f}")


if __name__ == "__main__":
    main()
