"""Generation speed on CPU: the engine with its KV cache vs recomputing the whole sequence per
token, and vs transformers' `generate`, on the same random InternVL model, in the same run.

A random transformers `InternVLForConditionalGeneration` (tiny ViT; the language model's shapes
from the arguments) is saved with a tiny BPE tokenizer, then loaded by `generate.load_hf` (the
in-memory conversion `fleming generate --hf` uses) into `FlemingVLM` on a 1-rank gloo group with
the CPU shim. Each row generates `--new-tokens` greedy tokens (end ids ignored) for `--batch`
copies of one prompt (an image of `--tiles` tiles and `--text-tokens` text tokens) and reports
new tokens per second (median of `--repeats`) and the ratios the issue asks for. One thread.
The engine rows include the CPU shim's per-call overhead (a TorchFunctionMode on every torch op).
Usage: python bench/bench_generate.py [--hidden 256] [--layers 4] [--new-tokens 256] [--batch 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def save_model(folder: Path, args) -> int:
    """Random model + tokenizer in `folder`; returns the <IMG_CONTEXT> id."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig, Qwen2Config

    from megatron_fleming.data.tokenizer import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer(["a benchmark of generation speed, user assistant"] * 4, 300)
    heads = max(args.hidden // 64, 2)
    vision = InternVLVisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, image_size=56, patch_size=14,
                                  attention_bias=True, norm_type="layer_norm")
    text = Qwen2Config(hidden_size=args.hidden, num_hidden_layers=args.layers,
                       num_attention_heads=heads, num_key_value_heads=max(heads // 4, 1),
                       intermediate_size=args.hidden * 3, vocab_size=args.vocab,
                       max_position_embeddings=4096, rope_theta=1e6, tie_word_embeddings=False)
    cfg = InternVLConfig(vision_config=vision, text_config=text, image_seq_length=4,
                         image_token_id=tokenizer.image_context_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    InternVLForConditionalGeneration(cfg).save_pretrained(folder)
    tokenizer.save(folder)
    return tokenizer.image_context_id


def prompt_ids(image_id: int, tiles: int, text_tokens: int, tokens_per_tile: int) -> list[int]:
    gen = torch.Generator().manual_seed(1)
    text = torch.randint(image_id + 1, 300, (text_tokens,), generator=gen).tolist()
    half = text_tokens // 2
    return text[:half] + [image_id] * (tiles * tokens_per_tile) + text[half:]


def timed(run, repeats: int) -> tuple[float, object]:
    run()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--tiles", type=int, default=64,
                        help="image tiles, 4 tokens each (64: the 256 tokens of one 448-px tile)")
    parser.add_argument("--text-tokens", type=int, default=48)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    os.environ.setdefault("MASTER_PORT", "29598")
    folder = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    image_id = save_model(folder, args)
    ids = prompt_ids(image_id, args.tiles, args.text_tokens, 4)
    pixels = torch.randn(args.tiles, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    n = args.new_tokens

    from transformers import InternVLForConditionalGeneration

    hf = InternVLForConditionalGeneration.from_pretrained(folder).eval()
    batch_ids = torch.tensor([ids] * args.batch)

    def hf_generate():
        with torch.no_grad():
            out = hf.generate(input_ids=batch_ids, attention_mask=torch.ones_like(batch_ids),
                              pixel_values=pixels.repeat(args.batch, 1, 1, 1), do_sample=False,
                              max_new_tokens=n, min_new_tokens=n, suppress_tokens=[image_id],
                              pad_token_id=0)
        return out[0, len(ids):].tolist()

    rows = {"transformers generate (KV cache)": timed(hf_generate, args.repeats)}

    from megatron_fleming.generate import GenerationEngine, PreparedRequest, RequestEncoder, SamplingParams, load_hf
    from megatron_fleming.model.config import ParallelConfig
    from megatron_fleming.model.parallel import initialize_parallel

    par = ParallelConfig(device="cpu")
    initialize_parallel(par, seed=0)
    loaded = load_hf(folder, par)
    encoder = RequestEncoder(loaded.cfg, loaded.tokenizer)
    greedy = SamplingParams(max_new_tokens=n, ignore_eos=True)
    prepared = [PreparedRequest(id=f"r{i}", input_ids=ids, pixel_values=pixels, sampling=greedy,
                                seed=0) for i in range(args.batch)]
    for name, cache in (("engine, KV cache", True), ("engine, full recompute per token", False)):
        engine = GenerationEngine(loaded.model, encoder, end_ids=(), batch_size=args.batch,
                                  use_kv_cache=cache)
        rows[name] = timed(lambda e=engine: e.run(prepared)[0].token_ids, args.repeats)

    new_tokens = n * args.batch
    print(f"language hidden={args.hidden} layers={args.layers} vocab={args.vocab}; prompt "
          f"{len(ids)} tokens ({args.tiles} tiles); {n} new tokens x batch {args.batch}; "
          f"threads=1, median of {args.repeats}")
    rate = {name: new_tokens / seconds for name, (seconds, _) in rows.items()}
    for name, (seconds, _) in rows.items():
        print(f"  {name:36s} {seconds:8.2f} s  {rate[name]:8.1f} new tokens/s")
    kv = rate["engine, KV cache"]
    print(f"  KV cache vs full recompute: x{kv / rate['engine, full recompute per token']:.2f}")
    print(f"  KV cache vs transformers generate: x{kv / rate['transformers generate (KV cache)']:.2f}")
    same = rows["engine, KV cache"][1] == rows["transformers generate (KV cache)"][1]
    print(f"  greedy tokens equal to transformers: {same}; recompute equal to KV cache: "
          f"{rows['engine, KV cache'][1] == rows['engine, full recompute per token'][1]}")


if __name__ == "__main__":
    main()
