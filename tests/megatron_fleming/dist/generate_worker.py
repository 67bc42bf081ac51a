"""Torchrun worker (TP ranks): the generation engine on a Hugging Face InternVL folder.

Writes what the generation tests judge (the test holds transformers' reference itself):
- `greedy`: greedy tokens per case, all cases in one batch of different prompt lengths;
- `recompute_greedy`: the same without the KV cache (whole sequence every step);
- `kv_max_diff[delta]`: max |logits of each decode step with the KV cache - logits of the plain
  training forward over the finished prefix| (the forward computes its own V2PE positions);
  `delta_effect`: how far the step logits at the fractional delta are from those at delta 1;
- `stopped`: greedy with an end id the model emits at step 3 (tokens, finish reason, text);
- `mcore_greedy`: greedy after saving the model as a converted Megatron checkpoint (what
  `fleming convert hf-to-mcore` writes) and loading it back with `load_mcore`; `run_greedy`:
  the same from a training-run folder (config.yaml, tracker, iter_* checkpoint, tokenizer/);
- `sampled*`: seeded sampling at T = 0.9 run twice, in another batch order / size, and with
  another seed; `logprob_max_diff`: engine log-probs vs `sequence_logprobs` of the same tokens;
  `t1_vs_training_loss`: `sequence_logprobs` at T = 1 vs the training forward's loss path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from megatron_fleming.generate import (
    GenerationEngine,
    Request,
    RequestEncoder,
    SamplingParams,
    load_hf,
    sequence_logprobs,
)
from megatron_fleming.model.config import ParallelConfig
from megatron_fleming.model.parallel import initialize_parallel, shutdown_parallel, unwrap

IGNORE = -100
REPO = Path(__file__).resolve().parents[3]


def requests(cases: list[dict], sampling: SamplingParams | None = None) -> list[Request]:
    return [Request(id=c["id"], prompt=c["prompt"], images=tuple(Path(p) for p in c["images"]),
                    modality=c.get("modality"), sampling=sampling) for c in cases]


def engine(loaded, max_new: int, **kwargs) -> GenerationEngine:
    encoder = RequestEncoder(loaded.cfg, loaded.tokenizer, max_tiles=6, system_prompt=None,
                             sampling=SamplingParams(max_new_tokens=max_new, ignore_eos=True),
                             seed=kwargs.pop("seed", 0))
    return GenerationEngine(loaded.model, encoder, end_ids=loaded.end_ids, **kwargs)


def full_sequence(prepared, result) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, L + n] ids of prompt + generated tokens and next-token labels on the generated ones."""
    ids = torch.tensor([prepared.input_ids + result.token_ids[:-1]])
    labels = torch.full_like(ids, IGNORE)
    start = len(prepared.input_ids) - 1
    labels[0, start:] = torch.tensor(result.token_ids)
    return ids, labels


@torch.no_grad()
def kv_max_diff(loaded, cases: list[dict], max_new: int) -> tuple[float, torch.Tensor | None]:
    """Each decode step's cached logits vs the plain forward over the same prefix; and the first
    step's logits of the first case (on the sampling rank)."""
    eng = engine(loaded, max_new, batch_size=len(cases), keep_logits=True)
    prepared = [eng.encoder.prepare(r) for r in requests(cases)]
    results = eng.run(prepared)
    model = unwrap(loaded.model).eval()
    worst = torch.zeros(())
    for p, r in zip(prepared, results):
        ids, _ = full_sequence(p, r)
        logits = model(ids, p.pixel_values, runtime_gather_output=True)[0]
        n = len(p.input_ids)
        recomputed = logits[n - 1:n - 1 + len(r.token_ids)].float()
        if r.logits is not None:  # the sampling rank (tensor-parallel rank 0)
            worst = torch.maximum(worst, (r.logits - recomputed).abs().max())
    torch.distributed.all_reduce(worst, op=torch.distributed.ReduceOp.MAX)
    first = results[0].logits
    return float(worst), None if first is None else first[0]


def save_converted(loaded, hf: Path, folder: Path, tp: int) -> None:
    """The Megatron checkpoint `fleming convert hf-to-mcore` writes, from the in-memory model."""
    from megatron_fleming.convert.hf_checkpoint import read_hf_checkpoint
    from megatron_fleming.convert.mcore_checkpoint import (
        ConversionRecord,
        copy_assets,
        save_checkpoint,
    )

    save_checkpoint(unwrap(loaded.model), folder)
    if torch.distributed.get_rank() == 0:
        ck = read_hf_checkpoint(hf)
        copy_assets(ck.assets, folder)
        ConversionRecord(hf_layout=ck.layout.value, hf_config=ck.raw_config,
                         vlm_config=loaded.cfg.to_dict(), tensor_parallel=tp, pipeline_parallel=1,
                         dtype="fp32").write(folder)
    torch.distributed.barrier()


def save_training_run(loaded, run: Path) -> None:
    """A run folder as `fleming train` leaves it (model part of the checkpoint only)."""
    from megatron_fleming.convert.mcore_checkpoint import save_checkpoint
    from megatron_fleming.train.checkpoint import TRACKER, iteration_dir
    from megatron_fleming.train.config import load_config

    save_checkpoint(unwrap(loaded.model), iteration_dir(run, 3))
    if torch.distributed.get_rank() == 0:
        model = yaml.safe_dump(loaded.cfg.to_dict(), default_flow_style=True, width=10**6).strip()
        cfg = load_config(REPO / "megatron_fleming" / "configs" / "tiny_cpu.yaml",
                          [f"model.overrides={model}", f"checkpoint.dir={run}"])
        cfg.save(run / "config.yaml")
        loaded.tokenizer.save(run / "tokenizer")
        (run / TRACKER).write_text("3\n")
    torch.distributed.barrier()


def greedy_tokens(loaded, cases: list[dict], max_new: int, **kwargs) -> dict[str, list[int]]:
    eng = engine(loaded, max_new, batch_size=len(cases), **kwargs)
    return {r.id: r.token_ids for r in eng.generate(requests(cases))}


def kv_checks(loaded, args, par, cases: list[dict], out: dict) -> None:
    whole, whole_first = kv_max_diff(loaded, cases, args.max_new)
    fractional = load_hf(args.hf, par, v2pe_delta=args.fractional_delta)
    assert unwrap(fractional.model).cfg.v2pe_delta == args.fractional_delta
    part, part_first = kv_max_diff(fractional, cases, args.max_new)
    out["kv_max_diff"] = {"1.0": whole, str(args.fractional_delta): part}
    if whole_first is not None:
        out["delta_effect"] = float((whole_first - part_first).abs().max())


def stop_check(loaded, cases: list[dict], max_new: int, out: dict) -> None:
    stop_at = out["greedy"][cases[0]["id"]][2]
    encoder = engine(loaded, max_new).encoder
    stopping = GenerationEngine(loaded.model, encoder, end_ids=[stop_at], batch_size=1)
    result = stopping.generate(requests(cases[:1], SamplingParams(max_new_tokens=max_new)))[0]
    out["stopped"] = {"tokens": result.token_ids, "finish": result.finish_reason,
                      "text": result.text,
                      "want_text": loaded.tokenizer.decode(result.token_ids[:-1])}


def logprob_diffs(loaded, prepared, results) -> tuple[float, float]:
    """max |engine log-probs - sequence_logprobs at T = 0.9|, and max |sequence_logprobs at T = 1
    + the training forward's per-token loss|."""
    diff, loss_diff = 0.0, 0.0
    for p, r in zip(prepared, results):
        ids, labels = full_sequence(p, r)
        lp = sequence_logprobs(loaded.model, ids, p.pixel_values, labels, temperature=0.9)
        diff = max(diff, float((lp[0, len(p.input_ids) - 1:] - torch.tensor(r.logprobs)).abs().max()))
        t1 = sequence_logprobs(loaded.model, ids, p.pixel_values, labels, temperature=1.0)
        with torch.no_grad():
            loss = unwrap(loaded.model)(ids, p.pixel_values, labels=labels)
        loss_diff = max(loss_diff, float((t1 + loss).abs().max()))
    return diff, loss_diff


def sampling_checks(loaded, cases: list[dict], max_new: int, out: dict) -> None:
    hot = SamplingParams(temperature=0.9, max_new_tokens=max_new, ignore_eos=True)
    runs = [("a", cases, len(cases), 0), ("b", cases, len(cases), 0),
            ("reordered", cases[::-1], 2, 0), ("other_seed", cases, len(cases), 1)]
    out["sampled"] = {}
    for name, order, batch_size, seed in runs:
        eng = engine(loaded, max_new, batch_size=batch_size, seed=seed)
        prepared = [eng.encoder.prepare(r) for r in requests(order, hot)]
        results = eng.run(prepared)
        out["sampled"][name] = {r.id: {"tokens": r.token_ids, "logprobs": r.logprobs}
                                for r in results}
        if name == "a":
            out["logprob_max_diff"], out["t1_vs_training_loss"] = logprob_diffs(
                loaded, prepared, results)


def checkpoint_round_trips(loaded, args, par, cases: list[dict], out: dict) -> None:
    from megatron_fleming.generate import load_mcore

    folder = Path(args.out).with_suffix(".mcore")
    save_converted(loaded, args.hf, folder, args.tp)
    reloaded = load_mcore(folder, par)
    out["mcore_end_ids"] = list(reloaded.end_ids)
    out["mcore_greedy"] = greedy_tokens(reloaded, cases, args.max_new)
    run = Path(args.out).with_suffix(".run")
    save_training_run(loaded, run)
    out["run_greedy"] = greedy_tokens(load_mcore(run, par), cases, args.max_new)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--hf", type=Path, required=True)
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--max-new", type=int, default=8)
    parser.add_argument("--fractional-delta", type=float, default=0.25)
    parser.add_argument("--checkpoints", action="store_true",
                        help="also save and reload as a converted checkpoint and a training run")
    args = parser.parse_args()
    cases = json.loads(args.cases.read_text())
    par = ParallelConfig(tensor_parallel=args.tp)
    initialize_parallel(par, seed=3)
    loaded = load_hf(args.hf, par)
    out: dict = {"end_ids": list(loaded.end_ids), "vocab_size": loaded.cfg.language.vocab_size,
                 "padded_vocab_size": loaded.cfg.language.padded_vocab_size,
                 "greedy": greedy_tokens(loaded, cases, args.max_new),
                 "recompute_greedy": greedy_tokens(loaded, cases, args.max_new, use_kv_cache=False)}
    kv_checks(loaded, args, par, cases, out)
    stop_check(loaded, cases, args.max_new, out)
    sampling_checks(loaded, cases, args.max_new, out)
    if args.checkpoints:
        checkpoint_round_trips(loaded, args, par, cases, out)
    if torch.distributed.get_rank() == 0:
        Path(args.out).write_text(json.dumps(out))
    shutdown_parallel()


if __name__ == "__main__":
    main()
