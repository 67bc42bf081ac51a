"""``fleming eval run`` and ``fleming eval score``.

    fleming eval run --benchmark vqa_rad,slake --data DIR (--mcore CKPT | --hf CKPT) --out DIR
        [--backend fleming|transformers] [--tp N] [--pp N] [--v2pe-delta D]
    fleming eval score --benchmark slake --data DIR --responses FILE.jsonl --out DIR

``run`` generates with our engine (``--backend fleming``, the default) on the ranks it needs:
tp x pp spawned here, or those of a torchrun / srun launch (a multiple of tp x pp: the extra
ones are data-parallel replicas); ``--backend transformers --hf DIR`` is the one-process
reference run.

``--data`` is the benchmark's released folder (for SLAKE: ``test.json`` + ``imgs/``); with several
benchmarks, a folder holding one such folder per benchmark, named as the benchmark. An open-answer
judge is used when ``--judge-model`` is given (``--judge-base-url``: the OpenAI-compatible
endpoint; without it only cached verdicts are used).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datakit.benchmarks import BENCHMARKS
from megatron_fleming.eval import BACKENDS


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s) {unknown or value!r}; known: {', '.join(BENCHMARKS)}")
    return names


def _judge(args: argparse.Namespace):
    if not args.judge_model:
        if args.judge_base_url:
            raise SystemExit("fleming eval: --judge-base-url needs --judge-model")
        return None
    from megatron_fleming.eval.judge import Judge, JudgeConfig

    if not args.judge_base_url:
        print("fleming eval: no --judge-base-url: the judge answers from its cache only")
    cache = Path(args.judge_cache) if args.judge_cache else Path(args.out) / "judge-cache"
    return Judge(JudgeConfig(base_url=args.judge_base_url, model=args.judge_model, cache_dir=cache,
                             api_key_env=args.judge_api_key_env, concurrency=args.judge_concurrency,
                             max_requests=args.judge_max_requests))


def _print(summaries: dict, out: Path) -> None:
    for name, s in summaries.items():
        shown = ", ".join(f"{k}={v:.2f}" for k, v in s["headline"].items())
        print(f"{name}: {s['n_items']} items, {shown}")
    print(f"wrote {out}/summary.json, {out}/table3.md, {out}/table3.png and per-benchmark items.jsonl")


def _config(args: argparse.Namespace):
    from megatron_fleming.eval.backends import GenerationConfig

    return GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device=args.device,
                            dtype=args.dtype, max_tiles=args.max_tiles, tensor_parallel=args.tp,
                            pipeline_parallel=args.pp, v2pe_delta=args.v2pe_delta,
                            transformer_impl=args.transformer_impl)


def _run(args: argparse.Namespace, backend, config, write: bool) -> dict:
    from megatron_fleming.eval.runner import run

    judge = _judge(args) if write else None
    info = {"checkpoint": str(args.hf or args.mcore), "generation": {
        "max_new_tokens": config.max_new_tokens, "batch_size": config.batch_size, "dtype": config.dtype,
        "max_tiles": config.max_tiles, "greedy": True}}
    try:
        return run(args.benchmark, Path(args.data), backend, Path(args.out), split=args.split, judge=judge,
                   limit=args.limit, run_info=info, write=write)
    finally:
        if judge is not None:
            judge.close()


def run_rank(args: argparse.Namespace, config) -> dict:
    """Every rank of a fleming-backend run: load this rank's stage, generate; rank 0 writes."""
    import torch

    from megatron_fleming.eval.backends import load_fleming, parallel_config
    from megatron_fleming.model.parallel import initialize_parallel, shutdown_parallel

    initialize_parallel(parallel_config(config))
    try:
        backend = load_fleming(hf=args.hf, mcore=args.mcore, config=config)
        return _run(args, backend, config, write=torch.distributed.get_rank() == 0)
    finally:
        shutdown_parallel()


def _cmd_run(args: argparse.Namespace) -> int:
    from megatron_fleming.eval.backends import TransformersBackend, check_backend, parallel_config

    if args.judge_base_url and not args.judge_model:
        raise SystemExit("fleming eval: --judge-base-url needs --judge-model")
    try:
        config = _config(args)
        check_backend(args.backend, hf=args.hf, mcore=args.mcore, config=config)
        if args.backend == "fleming":
            parallel_config(config)  # device, dtype and layers validated before any rank starts
    except ValueError as e:
        raise SystemExit(f"fleming eval run: {e}") from None
    if args.backend == "transformers":
        summaries = _run(args, TransformersBackend(args.hf, config), config, write=True)
    else:
        from megatron_fleming.convert.launch import is_rank_zero, run_on_ranks
        from megatron_fleming.generate.cli import world_size

        summaries = run_on_ranks("megatron_fleming.eval.cli:run_rank", world_size(config.model_parallel), args, config)
        if not is_rank_zero():
            return 0
    _print(summaries, Path(args.out))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from megatron_fleming.eval.runner import score_responses

    if len(args.benchmark) != 1:
        raise SystemExit("fleming eval score: name one benchmark (a responses file answers one benchmark)")
    judge = _judge(args)
    try:
        summary = score_responses(args.benchmark[0], Path(args.data), Path(args.responses), Path(args.out),
                                  split=args.split, judge=judge)
    finally:
        if judge is not None:
            judge.close()
    _print({args.benchmark[0]: summary}, Path(args.out))
    if summary["missing_responses"]:
        print(f"note: {summary['missing_responses']} items had no response and scored as empty answers")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", type=_names, required=True, help=f"comma-separated: {', '.join(BENCHMARKS)}")
    p.add_argument("--data", type=Path, required=True, help="the benchmark's released folder (see above)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", default="test", help="the benchmark split to score (default test)")
    g = p.add_argument_group("LLM judge of open answers (MedEvalKit's <judge>0/1</judge>)")
    g.add_argument("--judge-model", help="model name; enables the judge")
    g.add_argument("--judge-base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    g.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    g.add_argument("--judge-cache", help="content-addressed verdict cache folder (default: <--out>/judge-cache; "
                   "point several runs at one folder to share verdicts)")
    g.add_argument("--judge-concurrency", type=int, default=8)
    g.add_argument("--judge-max-requests", type=int, help="request budget (retries included)")


def add_eval_parser(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser("eval", help="evaluate on the paper's benchmarks (MedEvalKit's rules)",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ev.add_subparsers(dest="eval_command", required=True)

    r = sub.add_parser("run", help="generate with a model and score")
    _common(r)
    ck = r.add_mutually_exclusive_group(required=True)
    ck.add_argument("--hf", type=Path, help="Hugging Face InternVL folder (fleming: either layout, converted in "
                    "memory; transformers: transformers' layout)")
    ck.add_argument("--mcore", type=Path, help="Megatron checkpoint: converted folder, training run or iter_* "
                    "folder (--backend fleming)")
    r.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0],
                   help="fleming: our generation engine (default); transformers: the reference run on --hf")
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--max-new-tokens", type=int, default=1024)
    r.add_argument("--max-tiles", type=int, default=12, help="dynamic tiling cap per image (InternVL's max_num)")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    r.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto")
    r.add_argument("--limit", type=int, help="only the first N items of each benchmark (smoke runs)")
    e = r.add_argument_group("fleming backend")
    e.add_argument("--tp", type=int, default=1, help="tensor-parallel size")
    e.add_argument("--pp", type=int, default=1, help="pipeline-parallel size")
    e.add_argument("--v2pe-delta", type=float, default=None,
                   help="visual position step (default: the checkpoint's; 1 for --hf)")
    e.add_argument("--transformer-impl", choices=("local", "transformer_engine"), default="local")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("score", help="score another model's responses ({\"id\", \"response\"} JSON Lines)")
    _common(s)
    s.add_argument("--responses", type=Path, required=True, help="JSON Lines {\"id\": qid, \"response\": text}")
    s.set_defaults(func=_cmd_score)

