"""torchrun worker: load a converted Megatron checkpoint at the given TP/PP and save its logits
(gathered over TP) and, with PP=1, its per-token losses for next-token labels and this rank's
own slice of the logits.

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
from megatron_fleming.model.vlm import IGNORE_INDEX


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
        extra = {}
        if args.pp == 1:
            labels = torch.roll(batch.input_ids, -1, dims=1)
            labels[0, -1] = IGNORE_INDEX
            with torch.no_grad():
                extra["losses"] = model(batch.input_ids, batch.pixel_values, labels=labels)
                extra["local_logits"] = model(batch.input_ids, batch.pixel_values)
            slices = [None] * args.tp
            torch.distributed.all_gather_object(slices, extra["local_logits"])
            extra["local_logits"] = slices
        if holds_logits():
            torch.save({"logits": logits, "v2pe_delta": cfg.v2pe_delta,
                        "padded_vocab_size": cfg.language.padded_vocab_size, **extra}, args.out)
        torch.distributed.barrier()
        if torch.distributed.get_rank() == 0:
            print(f"megatron logits at TP={args.tp} PP={args.pp} -> {args.out}")
    finally:
        shutdown_parallel()


if __name__ == "__main__":
    main()
