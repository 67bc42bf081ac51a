"""Torchrun worker: InternViT (megatron-core, each `--tp` in turn) on a transformers InternVL
checkpoint.

Reads a transformers `InternVLForConditionalGeneration` folder, maps its tensors to `FlemingVLM`
(`convert.mcore_mapping`, ViT heads padded to `--padded-heads`), copies each rank's shard in,
and saves what the vision side makes of `--pixels`: the ViT's patch features (CLS dropped) and
the projected image features. The test computes transformers' own and compares.
"""

from __future__ import annotations

import argparse
import json

import torch
from megatron.core import parallel_state

from megatron_fleming.convert.hf_checkpoint import read_hf_checkpoint
from megatron_fleming.convert.mcore_checkpoint import fill_from_full
from megatron_fleming.convert.mcore_mapping import hf_to_mcore
from megatron_fleming.convert.tensors import MappedSource
from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.parallel import build_model_chunks, initialize_parallel, shutdown_parallel, unwrap


def vision_outputs(ck, cfg: VLMConfig, tp: int, pixels: torch.Tensor) -> dict:
    """Patch and image features of the checkpoint's vision side at this TP (inside its groups)."""
    par = ParallelConfig(tensor_parallel=tp)
    initialize_parallel(par, seed=5)
    model = unwrap(build_model_chunks(cfg, par)[0]).eval()
    fill_from_full(model, MappedSource(ck.tensors, hf_to_mcore(cfg)))
    with torch.no_grad():
        out = {"patches": model.vision_model(pixels), "features": model.image_features(pixels),
               "local_heads": model.vision_model.config.num_attention_heads // tp}
    parallel_state.destroy_model_parallel()  # the next TP reuses the process group
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--hf", required=True)
    parser.add_argument("--pixels", required=True)
    parser.add_argument("--layouts", nargs="+", default=["1:0"],
                        help="TP:allocated ViT heads (0: no padding), run in this order")
    args = parser.parse_args()
    ck = read_hf_checkpoint(args.hf)
    pixels = torch.load(args.pixels)
    results, meta = {}, {}
    for layout in args.layouts:
        tp, heads = (int(x) for x in layout.split(":"))
        cfg = VLMConfig.from_hf(ck.config, num_padded_heads=heads or None)
        results[f"tp{tp}"] = vision_outputs(ck, cfg, tp, pixels)
        meta[f"tp{tp}"] = {"heads": cfg.vision.heads, "local_heads": results[f"tp{tp}"]["local_heads"],
                           "qk_norm": cfg.vision.qk_norm, "norm": cfg.vision.norm}
    if torch.distributed.get_rank() == 0:
        torch.save(results, args.out + ".pt")
        meta["tensors"] = args.out + ".pt"
        with open(args.out, "w") as handle:
            json.dump(meta, handle)
    shutdown_parallel()


if __name__ == "__main__":
    main()
