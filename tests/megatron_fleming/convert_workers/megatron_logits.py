"""torchrun worker: load a converted Megatron checkpoint at the given TP/PP and save its logits.

The test computes transformers' logits itself and compares; this worker only produces the
Megatron side (real megatron-core on gloo through the CPU shim). Only rank 0 prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from megatron_fleming.convert.mcore_checkpoint import ConversionRecord, load_checkpoint
from megatron_fleming.convert.verify import VerificationBatch, holds_logits, megatron_logits
from megatron_fleming.model.config import ParallelConfig
from megatron_fleming.model.parallel import build_model_chunks, initialize_parallel, shutdown_parallel, unwrap


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mcore", type=Path, required=True)
    parser.add_argument("--batch", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--pp", type=int, default=1)
    args = parser.parse_args()

    cfg = ConversionRecord.read(args.mcore).vlm
    par = ParallelConfig(tensor_parallel=args.tp, pipeline_parallel=args.pp, device="cpu", dtype="fp32")
    initialize_parallel(par)
    try:
        model = unwrap(build_model_chunks(cfg, par)[0])
        load_checkpoint(model, args.mcore)
        model.eval()
        batch = VerificationBatch(**torch.load(args.batch))
        logits = megatron_logits(model, batch, "cpu")
        if holds_logits():
            torch.save({"logits": logits, "v2pe_delta": cfg.v2pe_delta}, args.out)
        torch.distributed.barrier()
        if torch.distributed.get_rank() == 0:
            print(f"megatron logits at TP={args.tp} PP={args.pp} -> {args.out}")
    finally:
        shutdown_parallel()


if __name__ == "__main__":
    main()
