"""Generation on one GPU: the KV cache with Transformer Engine and with local layers, fp32 and bf16.

What the CPU tests cannot show: megatron's static inference path through Transformer Engine's
attention (causal at prefill, `no_mask` at decode, our right-padded batches) and bf16. One random
model of `--preset` (weights shared through a dist-checkpoint, so every variant holds the same
values) generates greedily for requests of different prompt lengths with images:

- `kv_max_diff`: each decode step's logits (KV cache) vs the plain forward over the finished
  prefix, per variant (local fp32, TE fp32, TE bf16); fp32 should be ~1e-5, bf16 ~1e-1;
- `tokens_equal_local_fp32`: greedy tokens of each variant vs local fp32;
- speed (`--speed-preset`, TE bf16 or local if TE is missing): new tokens/s with the KV cache vs
  recomputing the sequence per token, `--new-tokens` x `--batch`.

`--device cpu` runs the local variants only (a smoke run of this script). Results are printed and
written to $OUT/gpu_check_generate.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from megatron_fleming.convert.mcore_checkpoint import load_checkpoint, save_checkpoint
from megatron_fleming.generate import GenerationEngine, PreparedRequest, SamplingParams
from megatron_fleming.model.config import ParallelConfig
from megatron_fleming.model.parallel import build_model_chunks, initialize_parallel, unwrap
from megatron_fleming.model.presets import load_preset


def have_te() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def prepared_requests(cfg, batch: int, tiles: list[int], text: int, new: int) -> list[PreparedRequest]:
    gen = torch.Generator().manual_seed(0)
    ctx, vocab, size = cfg.image_context_token_id, cfg.language.vocab_size, cfg.vision.image_size
    out = []
    for i in range(batch):
        n = tiles[i % len(tiles)]
        words = torch.randint(ctx + 1, vocab, (text + 5 * i,), generator=gen).tolist()
        ids = words[:4] + [ctx] * (n * cfg.tokens_per_tile) + words[4:]
        pixels = torch.randn(n, 3, size, size, generator=gen)
        out.append(PreparedRequest(id=f"r{i}", input_ids=ids, pixel_values=pixels, seed=i,
                                   sampling=SamplingParams(max_new_tokens=new, ignore_eos=True)))
    return out


def build(cfg, par: ParallelConfig, checkpoint: Path):
    model = build_model_chunks(cfg, par)[0].eval()
    load_checkpoint(unwrap(model), checkpoint)
    return model


@torch.no_grad()
def kv_check(model, prepared: list[PreparedRequest]) -> tuple[dict[str, list[int]], float]:
    """Greedy tokens, and max |KV-cache step logits - plain forward logits|."""
    engine = GenerationEngine(model, None, end_ids=(), batch_size=len(prepared), keep_logits=True)
    results = engine.run(prepared)
    inner = unwrap(model)
    worst = 0.0
    for p, r in zip(prepared, results):
        device = next(inner.parameters()).device
        ids = torch.tensor([p.input_ids + r.token_ids[:-1]], device=device)
        pixels = p.pixel_values.to(device, next(inner.vision_model.parameters()).dtype)
        logits = inner(ids, pixels, runtime_gather_output=True)[0].float().cpu()
        n = len(p.input_ids)
        worst = max(worst, float((r.logits - logits[n - 1:n - 1 + len(r.token_ids)]).abs().max()))
    return {r.id: r.token_ids for r in results}, worst


def tokens_per_second(model, prepared: list[PreparedRequest], cache: bool, repeats: int) -> float:
    engine = GenerationEngine(model, None, end_ids=(), batch_size=len(prepared), use_kv_cache=cache)
    engine.run(prepared)  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        engine.run(prepared)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sum(p.sampling.max_new_tokens for p in prepared) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--speed-preset", default="small")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    te = args.device == "cuda" and have_te()
    local = ParallelConfig(device=args.device)
    initialize_parallel(local, seed=0)
    variants = {"local fp32": local}
    if te:
        variants["te fp32"] = ParallelConfig(device="cuda", transformer_impl="transformer_engine")
        variants["te bf16"] = ParallelConfig(device="cuda", transformer_impl="transformer_engine",
                                             dtype="bf16")
    report: dict = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                    "transformer_engine": te, "kv_max_diff": {}, "tokens_equal_local_fp32": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_preset(args.preset, v2pe_delta=0.25)
        save_checkpoint(unwrap(build_model_chunks(cfg, local)[0]), Path(tmp) / "check")
        prepared = prepared_requests(cfg, 4, [1, 3, 2, 4], 12, 24)
        reference = None
        for name, par in variants.items():
            tokens, diff = kv_check(build(cfg, par, Path(tmp) / "check"), prepared)
            reference = reference or tokens
            report["kv_max_diff"][name] = diff
            report["tokens_equal_local_fp32"][name] = sum(
                tokens[k] == reference[k] for k in tokens) / len(tokens)
        speed_cfg = load_preset(args.speed_preset)
        speed_par = variants["te bf16"] if te else ParallelConfig(
            device=args.device, dtype="bf16" if args.device == "cuda" else "fp32")
        model = build_model_chunks(speed_cfg, speed_par)[0].eval()
        speed = prepared_requests(speed_cfg, args.batch, [1], 48, args.new_tokens)
        kv = tokens_per_second(model, speed, True, args.repeats)
        full = tokens_per_second(model, speed, False, 1)
        report["speed"] = {"preset": args.speed_preset, "batch": args.batch,
                           "new_tokens": args.new_tokens, "prompt_tokens": len(speed[0].input_ids),
                           "kv_cache_tokens_per_s": kv, "recompute_tokens_per_s": full,
                           "kv_vs_recompute": kv / full}
    print(json.dumps(report, indent=2))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check_generate.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
