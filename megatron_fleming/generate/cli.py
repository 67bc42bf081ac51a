"""``fleming generate`` (a JSONL file of requests) and ``fleming chat`` (interactive).

    fleming generate (--hf DIR | --mcore DIR) --input REQUESTS.jsonl --output ANSWERS.jsonl
        [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S]
        [--max-tiles N] [--v2pe-delta D] [--ignore-eos] [--tp N] [--pp N] [--batch-size B]
    fleming chat (--hf DIR | --mcore DIR) [--image PATH ...] [--modality video] [same flags]

`generate` runs on tp x pp ranks (x data-parallel replicas under torchrun, each taking every
dp-th request): the ranks of a torchrun / srun launch, or spawned here on this machine when
started as one process. Request and answer formats: `generate.requests`. A request that cannot
be run (unreadable image, wrong number of image tokens) is answered with an error line and the
exit status is 1; every other request is still answered. `chat` runs in this one process
(tp = pp = 1): one user turn per line on stdin, each answer on stdout, the conversation kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from megatron_fleming.generate.sampling import SamplingParams

CHUNK_BATCHES = 16  # batches of requests whose tiles are decoded and held at once


@dataclass(frozen=True)
class GenerateJob:
    """Everything a rank needs to load the model and answer the requests."""

    input: Path
    output: Path
    hf: Path | None = None
    mcore: Path | None = None
    sampling: SamplingParams = SamplingParams()
    seed: int = 0
    max_tiles: int = 12
    v2pe_delta: float | None = None
    system_prompt: str | None = None
    use_default_system_prompt: bool = True
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    batch_size: int = 8
    device: str = "cpu"
    dtype: str = "fp32"
    transformer_impl: str = "local"

    def __post_init__(self) -> None:
        if (self.hf is None) == (self.mcore is None):
            raise ValueError("give exactly one of --hf and --mcore")


def _parallel_config(job: GenerateJob):
    from megatron_fleming.model.config import ParallelConfig

    return ParallelConfig(tensor_parallel=job.tensor_parallel,
                          pipeline_parallel=job.pipeline_parallel, device=job.device,
                          dtype=job.dtype, transformer_impl=job.transformer_impl)


def load(job: GenerateJob):
    from megatron_fleming.generate.loading import load_hf, load_mcore

    par = _parallel_config(job)
    if job.hf is not None:
        return load_hf(job.hf, par, job.v2pe_delta)
    return load_mcore(job.mcore, par, job.v2pe_delta)


def _encoder(job: GenerateJob, loaded):
    from megatron_fleming.data.prompt import INTERNVL3_SYSTEM_PROMPT
    from megatron_fleming.generate.inputs import RequestEncoder

    system = INTERNVL3_SYSTEM_PROMPT if job.use_default_system_prompt else job.system_prompt
    return RequestEncoder(loaded.cfg, loaded.tokenizer, max_tiles=job.max_tiles,
                          system_prompt=system, sampling=job.sampling, seed=job.seed)


def write_answers(path: Path, answers: list[dict]) -> None:
    """One JSON line per request, in input order; written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for answer in answers:
            out.write(json.dumps(answer, ensure_ascii=False) + "\n")
    tmp.replace(path)


def generate_rank(job: GenerateJob) -> dict:
    """What every rank runs; global rank 0 writes the answers and returns the summary."""
    import torch
    from megatron.core import parallel_state

    from megatron_fleming.generate.engine import GenerationEngine
    from megatron_fleming.generate.requests import RequestError, read_requests
    from megatron_fleming.model.parallel import initialize_parallel, shutdown_parallel

    initialize_parallel(_parallel_config(job), seed=job.seed)
    try:
        loaded = load(job)
        encoder = _encoder(job, loaded)
        engine = GenerationEngine(loaded.model, encoder, end_ids=loaded.end_ids,
                                  batch_size=job.batch_size, v2pe_delta=job.v2pe_delta)
        items = list(read_requests(job.input, job.sampling))  # cheap: no image read yet
        answers: list[dict | None] = [
            {"id": item.request_id, "error": str(item)} if isinstance(item, RequestError) else None
            for item in items]
        valid = [(slot, item) for slot, item in enumerate(items) if answers[slot] is None]
        dp, dp_rank = (parallel_state.get_data_parallel_world_size(),
                       parallel_state.get_data_parallel_rank())
        mine = valid[dp_rank::dp]
        done: dict[int, dict] = {}
        seconds = 0.0
        # Tiles are decoded a chunk at a time, so memory does not grow with the request file.
        chunk = job.batch_size * CHUNK_BATCHES
        for first in range(0, len(mine), chunk):
            prepared = []
            for slot, request in mine[first:first + chunk]:
                try:
                    prepared.append((slot, encoder.prepare(request)))
                except RequestError as e:
                    done[slot] = {"id": e.request_id, "error": str(e)}
            start = time.perf_counter()
            results = engine.run([p for _, p in prepared])
            seconds += time.perf_counter() - start
            done.update({slot: r.to_json() for (slot, _), r in zip(prepared, results)})
        rank = torch.distributed.get_rank()
        gathered = [None] * torch.distributed.get_world_size() if rank == 0 else None
        torch.distributed.gather_object(done, gathered, dst=0)
        if rank != 0:
            return {}
        for part in gathered:
            for slot, answer in part.items():
                answers[slot] = answer
        write_answers(job.output, answers)
        return {"answers": len(answers), "errors": sum("error" in a for a in answers),
                "new_tokens": sum(len(a.get("token_ids", ())) for a in answers),
                "seconds": seconds, "end_ids": list(loaded.end_ids), "source": loaded.source}
    finally:
        shutdown_parallel()


def _world_size(job: GenerateJob) -> int:
    model_parallel = job.tensor_parallel * job.pipeline_parallel
    launched = int(os.environ.get("WORLD_SIZE", "0")) if "MASTER_ADDR" in os.environ else 0
    if launched:
        if launched % model_parallel:
            raise SystemExit(f"WORLD_SIZE={launched} is not a multiple of --tp x --pp = "
                             f"{model_parallel}")
        return launched
    return model_parallel


def _job(args: argparse.Namespace, **extra) -> GenerateJob:
    from megatron_fleming.convert.launch import resolve_device

    device = resolve_device(args.device)
    dtype = args.dtype if args.dtype != "auto" else ("bf16" if device == "cuda" else "fp32")
    sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                              max_new_tokens=args.max_new_tokens, ignore_eos=args.ignore_eos)
    return GenerateJob(
        hf=args.hf, mcore=args.mcore, sampling=sampling, seed=args.seed,
        max_tiles=args.max_tiles, v2pe_delta=args.v2pe_delta, system_prompt=args.system_prompt,
        use_default_system_prompt=args.system_prompt is None and not args.no_system_prompt,
        tensor_parallel=args.tp, pipeline_parallel=args.pp, device=device, dtype=dtype,
        transformer_impl=args.transformer_impl, **extra)


def _cmd_generate(args: argparse.Namespace) -> int:
    from megatron_fleming.convert.launch import is_rank_zero, run_on_ranks

    if not args.input.is_file():
        raise SystemExit(f"--input {args.input} does not exist")
    job = _job(args, input=args.input, output=args.output, batch_size=args.batch_size)
    summary = run_on_ranks("megatron_fleming.generate.cli:generate_rank", _world_size(job), job)
    if not is_rank_zero():
        return 0
    rate = summary["new_tokens"] / max(summary["seconds"], 1e-9)
    print(f"wrote {summary['answers']} answers to {args.output} ({summary['errors']} errors); "
          f"{summary['new_tokens']} new tokens in {summary['seconds']:.1f} s ({rate:.1f} tokens/s); "
          f"end ids {summary['end_ids']}")
    return 1 if summary["errors"] else 0


def chat_rank(job: GenerateJob, images: tuple[Path, ...], modality: str | None) -> None:
    """One rank: answer stdin line by line, each turn with the whole conversation so far."""
    from megatron_fleming.generate.engine import GenerationEngine
    from megatron_fleming.generate.requests import Request
    from megatron_fleming.model.parallel import initialize_parallel, shutdown_parallel

    initialize_parallel(_parallel_config(job), seed=job.seed)
    try:
        loaded = load(job)
        engine = GenerationEngine(loaded.model, _encoder(job, loaded), end_ids=loaded.end_ids,
                                  batch_size=1, v2pe_delta=job.v2pe_delta)
        history: list[tuple[str, str]] = []
        for number, line in enumerate(sys.stdin, 1):
            question = line.strip()
            if not question:
                continue
            result = engine.generate([Request(id=f"turn{number}", prompt=question, images=images,
                                              modality=modality, history=tuple(history))])[0]
            history.append((question, result.text))
            print(result.text, flush=True)
    finally:
        shutdown_parallel()


def _cmd_chat(args: argparse.Namespace) -> int:
    from megatron_fleming.convert.launch import run_on_ranks

    if args.tp * args.pp != 1:
        raise SystemExit("fleming chat runs in one process: --tp 1 --pp 1")
    job = _job(args, input=Path(os.devnull), output=Path(os.devnull))
    run_on_ranks("megatron_fleming.generate.cli:chat_rank", 1, job, tuple(args.image),
                 args.modality)
    return 0


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf", type=Path, help="Hugging Face InternVL folder (converted in memory)")
    source.add_argument("--mcore", type=Path,
                        help="Megatron checkpoint: converted folder, training run or iter_* folder")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--seed", type=int, default=0,
                        help="run seed; each request samples from its own stream (seed, id)")
    parser.add_argument("--max-tiles", type=int, default=12,
                        help="InternVL tiling per image (1 = one tile, no thumbnail)")
    parser.add_argument("--v2pe-delta", type=float, default=None,
                        help="visual position step (default: the checkpoint's; 1 for --hf)")
    parser.add_argument("--ignore-eos", action="store_true", help="stop on --max-new-tokens only")
    parser.add_argument("--system-prompt", default=None,
                        help="system prompt (default: InternVL3's)")
    parser.add_argument("--no-system-prompt", action="store_true", help="render no system turn")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel size")
    parser.add_argument("--pp", type=int, default=1, help="pipeline-parallel size")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--transformer-impl", choices=("local", "transformer_engine"),
                        default="local")


def add_generate_parser(commands: argparse._SubParsersAction) -> None:
    gen = commands.add_parser("generate", help="answer a JSONL file of requests with a checkpoint",
                              description=__doc__.split("\n\n")[2])
    _common_arguments(gen)
    gen.add_argument("--input", type=Path, required=True, help="requests, one JSON per line")
    gen.add_argument("--output", type=Path, required=True, help="answers, one JSON per line")
    gen.add_argument("--batch-size", type=int, default=8)
    gen.set_defaults(func=_cmd_generate)


def add_chat_parser(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser("chat", help="talk to a checkpoint about images, one turn per line")
    _common_arguments(chat)
    chat.add_argument("--image", type=Path, action="append", default=[],
                      help="an image of the conversation (repeat for several, in order)")
    chat.add_argument("--modality", choices=("video", "volume"), default=None,
                      help="the images are frames / slices: one tile each")
    chat.set_defaults(func=_cmd_chat)
