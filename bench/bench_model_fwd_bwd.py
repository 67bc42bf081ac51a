"""Forward + backward of a model preset on CPU: FlemingVLM (megatron-core) vs transformers' InternVL.

Same run, same shapes, same inputs, one thread: transformers' `InternVLForConditionalGeneration`
is built from the preset's shapes (eager and SDPA attention) and timed first; then the CPU shim
is installed, megatron's parallel state is initialised on a 1-rank gloo group and `FlemingVLM`
(local megatron layers, TP=PP=1) is timed. Each row reports the median seconds per
forward+backward (loss.backward on the mean token loss) and its ratio to transformers eager.
The shim's TorchFunctionMode, which intercepts every torch call, is part of the megatron row.
Usage: python bench/bench_model_fwd_bwd.py [--preset tiny] [--batch 2] [--seq 256] [--iters 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.presets import load_preset


def transformers_config(cfg: VLMConfig, attn: str):
    from transformers import InternVLConfig, Qwen2Config
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    vision, lang = cfg.vision, cfg.language
    if vision.heads != vision.num_attention_heads:
        raise ValueError("padded vision heads have no transformers counterpart; pick another preset")
    hf = InternVLConfig(
        vision_config=InternVLVisionConfig(
            hidden_size=vision.hidden_size, num_hidden_layers=vision.num_layers,
            num_attention_heads=vision.num_attention_heads, intermediate_size=vision.ffn_hidden_size,
            image_size=vision.image_size, patch_size=vision.patch_size,
            norm_type="rms_norm" if vision.norm == "rmsnorm" else "layer_norm",
            layer_norm_eps=vision.norm_eps, attention_bias=vision.qkv_bias,
            use_qk_norm=vision.qk_norm, layer_scale_init_value=vision.layer_scale_init),
        text_config=Qwen2Config(
            hidden_size=lang.hidden_size, num_hidden_layers=lang.num_layers,
            num_attention_heads=lang.num_attention_heads, num_key_value_heads=lang.num_query_groups,
            intermediate_size=lang.ffn_hidden_size, vocab_size=lang.padded_vocab_size,
            rms_norm_eps=lang.norm_eps, max_position_embeddings=lang.max_position_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": lang.rope_theta}),
        image_token_id=cfg.image_context_token_id, downsample_ratio=cfg.projector.downsample_ratio,
        tie_word_embeddings=lang.tie_word_embeddings, vision_feature_layer=-1,
        image_seq_length=cfg.tokens_per_tile)
    hf._attn_implementation = attn
    hf.text_config._attn_implementation = attn
    hf.vision_config._attn_implementation = attn
    return hf


def make_batch(cfg: VLMConfig, batch: int, seq: int, tiles: int):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(cfg.image_context_token_id + 1, cfg.language.vocab_size, (batch, seq),
                        generator=gen)
    image_tokens = tiles * cfg.tokens_per_tile
    if image_tokens + 2 > seq:
        raise ValueError(f"--seq {seq} cannot hold {tiles} tiles of {cfg.tokens_per_tile} tokens")
    ids[:, 1:1 + image_tokens] = cfg.image_context_token_id
    labels = torch.roll(ids, -1, dims=1)
    labels[:, :1 + image_tokens] = -100
    labels[:, -1] = -100
    size = cfg.vision.image_size
    pixels = torch.randn(batch * tiles, cfg.vision.num_channels, size, size, generator=gen)
    return ids, labels, pixels


def timed(step, iters: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--tiles", type=int, default=2, help="image tiles per row")
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_preset(args.preset)
    ids, labels, pixels = make_batch(cfg, args.batch, args.seq, args.tiles)
    tokens = int((labels != -100).sum())

    from transformers import InternVLForConditionalGeneration

    rows = {}
    for attn in ("eager", "sdpa"):
        torch.manual_seed(0)
        hf = InternVLForConditionalGeneration(transformers_config(cfg, attn)).train()

        def hf_step(model=hf):
            model.zero_grad(set_to_none=True)
            logits = model(input_ids=ids, pixel_values=pixels).logits
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
            loss.backward()

        rows[f"transformers InternVL ({attn})"] = timed(hf_step, args.iters)

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29599")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    from megatron_fleming.model.parallel import build_model_chunks, initialize_parallel

    initialize_parallel(ParallelConfig(device="cpu"), seed=0)
    model = build_model_chunks(cfg, ParallelConfig(device="cpu"))[0].train()

    def megatron_step():
        model.zero_grad(set_to_none=True)
        loss = model(ids, pixels, labels=labels).sum() / tokens
        loss.backward()

    rows["FlemingVLM megatron-core (local, CPU shim)"] = timed(megatron_step, args.iters)

    base = rows["transformers InternVL (eager)"]
    print(f"preset={args.preset} batch={args.batch} seq={args.seq} tiles/row={args.tiles} "
          f"threads=1 iters={args.iters} (median s per forward+backward)")
    for name, seconds in rows.items():
        print(f"  {name:44s} {seconds * 1e3:9.1f} ms   x{seconds / base:5.2f} vs transformers eager")


if __name__ == "__main__":
    main()
