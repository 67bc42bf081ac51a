"""`fleming plan`: what a training config costs before launch, per GPU and per pipeline stage.

Parameters are counted exactly from the model layout (`megatron_fleming.model`, the same
tensors megatron builds; a test checks the count against a built model). Memory and compute are
estimates, with their assumptions stated here and in the output:

- weights in the run's dtype; gradients in fp32 (megatron DDP's ``grad_reduce_in_fp32``) for
  trainable parameters; Adam keeps two fp32 moments, plus fp32 main weights in bf16 runs, sharded
  over data parallel by the distributed optimizer.
- activations are the tensors backward keeps per token, read off each layer's shapes: norm inputs
  and outputs, QKV, attention output, the MLP's hidden (SwiGLU keeps gate and up); split over TP,
  and the hidden-sized ones too with sequence parallelism; Transformer Engine's fused attention
  keeps no s x s scores (local layers do). Full recompute keeps each layer's input and rebuilds
  one layer at a time. With 1F1B, stage i holds PP - i micro-batches in flight. Stage 0 adds the
  ViT over the micro-batch's tiles (``max_tiles_per_pack``) and the projector; the last stage
  adds the logits and fp32 cross-entropy buffers.
- compute counts matrix products (forward + backward = 3x forward; weight gradients are skipped
  for frozen components; recompute adds a forward), attention as one causal sequence of
  ``max_seq_len`` (an upper bound: packed conversations attend within themselves).
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.freeze import STAGE_TRAINABLE
from megatron_fleming.train.config import TrainConfig

GIB = 2**30
#: CUDA context, NCCL buffers, TE workspaces and allocator fragmentation, not modelled above.
RUNTIME_ALLOWANCE_GIB = 6.0


@dataclass(frozen=True)
class Split:
    """Parameters of one block: those TP splits and those every TP rank holds whole."""

    split: int = 0
    whole: int = 0

    def __add__(self, other: Split) -> Split:
        return Split(self.split + other.split, self.whole + other.whole)

    def __mul__(self, n: int) -> Split:
        return Split(self.split * n, self.whole * n)

    @property
    def total(self) -> int:
        return self.split + self.whole

    def per_gpu(self, tp: int) -> float:
        return self.split / tp + self.whole


def vision_params(cfg: VLMConfig) -> Split:
    v = cfg.vision
    width = v.heads * v.head_dim  # allocated heads, zero padding included
    norm = v.hidden_size * (2 if v.norm == "layernorm" else 1)
    layer = Split(split=3 * width * v.hidden_size + (3 * width if v.qkv_bias else 0)
                  + width * v.hidden_size + 2 * v.ffn_hidden_size * v.hidden_size
                  + v.ffn_hidden_size + (2 * width if v.qk_norm else 0),
                  whole=2 * v.hidden_size + 2 * norm + 2 * v.hidden_size)  # biases, norms, ls1/2
    embed = (v.hidden_size + v.num_channels * v.patch_size**2 * v.hidden_size + v.hidden_size
             + (v.num_patches + 1) * v.hidden_size)
    return layer * v.num_layers + Split(whole=embed)


def projector_params(cfg: VLMConfig) -> Split:
    d_in = cfg.vision.hidden_size * cfg.projector.unshuffle_factor**2
    d = cfg.language.hidden_size
    return Split(split=d * d_in + d + d * d, whole=2 * d_in + d)


def language_layer_params(cfg: VLMConfig) -> Split:
    lang = cfg.language
    qkv = (lang.num_attention_heads + 2 * lang.num_query_groups) * lang.head_dim
    h, f = lang.hidden_size, lang.ffn_hidden_size
    return Split(split=qkv * h + qkv + lang.num_attention_heads * lang.head_dim * h + 3 * f * h,
                 whole=2 * h)


def vocab_params(cfg: VLMConfig) -> Split:
    return Split(split=cfg.language.padded_vocab_size * cfg.language.hidden_size)


def language_layer_flops(cfg: VLMConfig, seq: int) -> float:
    """Forward FLOPs of one decoder layer per token, causal attention over `seq` tokens."""
    lang = cfg.language
    h, d, heads = lang.hidden_size, lang.head_dim, lang.num_attention_heads
    qkv = (heads + 2 * lang.num_query_groups) * d
    return (2 * h * qkv + 2 * heads * d * h + 2 * h * 2 * lang.ffn_hidden_size
            + 2 * lang.ffn_hidden_size * h + 2 * 2 * (seq / 2) * heads * d)


def vision_flops_per_tile(cfg: VLMConfig) -> float:
    """Forward FLOPs of the ViT and the projector for one tile."""
    v = cfg.vision
    n, dv, width = v.num_patches + 1, v.hidden_size, v.heads * v.head_dim
    layer = 2 * dv * 3 * width + 2 * width * dv + 2 * 2 * dv * v.ffn_hidden_size + 2 * 2 * n * width
    patch = 2 * v.num_channels * v.patch_size**2 * dv * v.num_patches
    k2, d = cfg.projector.unshuffle_factor**2, cfg.language.hidden_size
    return n * v.num_layers * layer + patch + cfg.tokens_per_tile * (2 * k2 * dv * d + 2 * d * d)


def sequence_lengths(cu_seqlens, input_ids, pad_id: int) -> list[int]:
    """The conversations' lengths in a batch: packed segments, or each padded row's tokens."""
    if cu_seqlens is not None:
        bounds = cu_seqlens.tolist()
        return [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    return [int(n) for n in (input_ids != pad_id).sum(dim=1).tolist()]


def conversation_flops(cfg: VLMConfig, lengths: list[int], tiles: int) -> float:
    """Model FLOPs (3x forward, what MFU counts) of conversations of these lengths with `tiles`
    tiles: each attends causally within itself, as packing makes it."""
    lang = cfg.language
    head = 2 * lang.hidden_size * lang.padded_vocab_size
    llm = sum(n * (lang.num_layers * language_layer_flops(cfg, n) + head) for n in lengths)
    return 3.0 * (llm + tiles * vision_flops_per_tile(cfg))


def language_activation_bytes(cfg: VLMConfig, tp: int, sp: bool, fused_attention: bool,
                              seq: int) -> float:
    """Bytes (bf16) one decoder layer keeps per token for backward."""
    lang = cfg.language
    h, d, heads = lang.hidden_size, lang.head_dim, lang.num_attention_heads
    qkv = (heads + 2 * lang.num_query_groups) * d
    hidden = 4 * h / (tp if sp else 1)  # two norms' inputs and outputs
    per_tp = 2 * qkv + heads * d + 3 * lang.ffn_hidden_size  # qkv, roped qkv, attn out, MLP
    scores = 0 if fused_attention else 2 * heads * seq  # local attention: scores and probs
    return 2 * (hidden + (per_tp + scores) / tp)


def vision_activation_bytes(cfg: VLMConfig, tp: int, fused_attention: bool) -> float:
    """Bytes (bf16) one ViT layer keeps per patch token (no sequence parallelism in the ViT):
    norm inputs and outputs, a layer-scaled branch, q/k/v before and after QK-norm, attention
    output, the MLP hidden before and after GELU."""
    v = cfg.vision
    width = v.heads * v.head_dim
    scores = 0 if fused_attention else 2 * v.heads * (v.num_patches + 1)
    return 2 * (5 * v.hidden_size + (7 * width + 2 * v.ffn_hidden_size + scores) / tp)


def stage_blocks(cfg: VLMConfig, par: ParallelConfig) -> list[dict[str, Split]]:
    """Each pipeline stage's parameters by component, as `build_model_chunks` builds them:
    stage 0 holds the ViT, the projector and the embedding; the last stage the final norm and
    the LM head (a copy of the tied embedding when PP > 1)."""
    layers = par.language_layers_per_stage(cfg.language.num_layers)
    pp = len(layers)
    stages = []
    for stage, count in enumerate(layers):
        blocks = {"language": language_layer_params(cfg) * count}
        if stage == 0:
            blocks.update(vision=vision_params(cfg), projector=projector_params(cfg))
            blocks["language"] += vocab_params(cfg)
        if stage == pp - 1:
            blocks["language"] += Split(whole=cfg.language.hidden_size)  # final norm
            if not (cfg.language.tie_word_embeddings and pp == 1):
                blocks["language"] += vocab_params(cfg)
        stages.append(blocks)
    return stages


def parameters_per_gpu(cfg: VLMConfig, par: ParallelConfig) -> list[float]:
    """Parameters one GPU of each pipeline stage holds."""
    tp = par.tensor_parallel
    return [sum(b.per_gpu(tp) for b in blocks.values()) for blocks in stage_blocks(cfg, par)]


@dataclass(frozen=True)
class StagePlan:
    stage: int
    language_layers: int
    holds_vision: bool
    holds_head: bool
    params_per_gpu: float
    trainable_per_gpu: float
    weights_gib: float
    grads_gib: float
    optimizer_gib: float
    activations_gib: float
    tflops_per_microbatch: float

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.grads_gib + self.optimizer_gib + self.activations_gib


@dataclass(frozen=True)
class Plan:
    name: str
    gpus: int
    data_parallel: int
    microbatches: int
    tokens_per_microbatch: int
    tiles_per_microbatch: int
    params: dict[str, int]
    trainable: tuple[str, ...]
    stages: list[StagePlan]
    gpu_memory_gib: float

    def fits(self) -> bool:
        return all(s.total_gib + RUNTIME_ALLOWANCE_GIB <= self.gpu_memory_gib for s in self.stages)

    def render(self) -> str:
        p = self.params
        lines = [
            f"plan of {self.name}: {self.gpus} GPUs = TP x PP x DP "
            f"{self.gpus // self.data_parallel // len(self.stages)} x {len(self.stages)} x "
            f"{self.data_parallel}; {self.microbatches} micro-batches per step of "
            f"{self.tokens_per_microbatch} tokens and up to {self.tiles_per_microbatch} tiles",
            f"parameters: vision {p['vision'] / 1e9:.3f}B, projector {p['projector'] / 1e9:.3f}B,"
            f" language {p['language'] / 1e9:.3f}B, total {sum(p.values()) / 1e9:.3f}B "
            f"(trainable: {', '.join(self.trainable)})",
            "stage | LLM layers | holds          | params/GPU | weights  grads  optim  activ "
            "| total GiB | TFLOP/micro-batch | share",
        ]
        busiest = max(s.tflops_per_microbatch for s in self.stages)
        for s in self.stages:
            holds = "+".join(n for n, on in (("ViT", s.holds_vision), ("embed", s.stage == 0),
                                              ("head", s.holds_head)) if on) or "-"
            lines.append(
                f"{s.stage:>5} | {s.language_layers:>10} | {holds:<14} | "
                f"{s.params_per_gpu / 1e9:>8.3f}B | {s.weights_gib:>7.1f} {s.grads_gib:>6.1f} "
                f"{s.optimizer_gib:>6.1f} {s.activations_gib:>6.1f} | {s.total_gib:>9.1f} | "
                f"{s.tflops_per_microbatch:>17.1f} | {s.tflops_per_microbatch / busiest:>5.2f}")
        pp, m = len(self.stages), self.microbatches
        lines.append(f"pipeline bubble (1F1B): {(pp - 1) / (m + pp - 1):.1%}; a step is "
                     f"{busiest * m / 1e3:.2f} PFLOP on the busiest stage's GPUs")
        verdict = "fits" if self.fits() else "DOES NOT FIT"
        lines.append(f"memory: {verdict} in {self.gpu_memory_gib:.0f} GiB per GPU with "
                     f"{RUNTIME_ALLOWANCE_GIB:.0f} GiB for the CUDA context, NCCL and "
                     "fragmentation")
        return "\n".join(lines)


def plan(cfg: TrainConfig, *, gpus: int | None = None, gpu_memory_gib: float = 80.0) -> Plan:
    vlm, par = cfg.vlm_config(), cfg.parallel
    tp, pp = par.tensor_parallel, par.pipeline_parallel
    gpus = gpus or tp * pp
    if gpus % (tp * pp):
        raise ValueError(f"--gpus {gpus} is not a multiple of TP x PP = {tp * pp}")
    dp = gpus // (tp * pp)
    microbatches = cfg.microbatches(dp)
    te = cfg.data.encoder_config(vlm)
    tokens = te.max_seq_len * cfg.train.micro_batch_size
    tiles = te.max_tiles_per_pack or tokens // vlm.tokens_per_tile
    trainable = tuple(sorted(STAGE_TRAINABLE[cfg.train.stage]))
    layers = par.language_layers_per_stage(vlm.language.num_layers)
    weight_bytes = 2 if par.dtype == "bf16" else 4
    adam_bytes = 12 if par.dtype == "bf16" else 8
    sharding = dp if cfg.optimizer.distributed else 1
    fused = par.transformer_impl == "transformer_engine"
    recompute = par.recompute_activations
    lang_train = "language" in trainable
    stages = []
    for stage, (count, blocks) in enumerate(zip(layers, stage_blocks(vlm, par))):
        first, last = stage == 0, stage == pp - 1
        per_gpu = sum(b.per_gpu(tp) for b in blocks.values())
        train_gpu = sum(b.per_gpu(tp) for n, b in blocks.items() if n in trainable)
        in_flight = min(pp - stage, microbatches)
        per_token = language_activation_bytes(vlm, tp, par.sequence_parallel, fused, tokens)
        seq_part = tp if par.sequence_parallel else 1
        # Kept per micro-batch in flight; with recompute, only layer inputs, plus one layer's
        # working set while it is recomputed (transient, once).
        layer_kept = 2 * vlm.language.hidden_size / seq_part if recompute else per_token
        kept = tokens * count * layer_kept
        transient = tokens * per_token if recompute and count else 0.0
        flops = tokens * count * language_layer_flops(vlm, tokens) / tp
        flops *= (3 if lang_train else 2) + (1 if recompute else 0)
        if first:
            kept += tokens * 2 * vlm.language.hidden_size / seq_part  # embeddings
            vit_tokens = tiles * (vlm.vision.num_patches + 1)
            vit_layer = vision_activation_bytes(vlm, tp, fused)
            vit_kept = 2 * vlm.vision.hidden_size if recompute else vit_layer
            kept += vit_tokens * vlm.vision.num_layers * vit_kept
            transient = max(transient, vit_tokens * vit_layer if recompute else 0.0)
            vision_passes = (3 if "vision" in trainable else 2) + (1 if recompute else 0)
            flops += tiles * vision_flops_per_tile(vlm) / tp * vision_passes
        act = kept * in_flight + transient
        if last:
            act += tokens * vlm.language.padded_vocab_size / tp * (2 + 4 + 4)  # logits, fp32 CE
            head = tokens * 2 * vlm.language.hidden_size * vlm.language.padded_vocab_size / tp
            flops += head * (3 if lang_train else 2)
        stages.append(StagePlan(
            stage=stage, language_layers=count, holds_vision=first, holds_head=last,
            params_per_gpu=per_gpu, trainable_per_gpu=train_gpu,
            weights_gib=per_gpu * weight_bytes / GIB, grads_gib=train_gpu * 4 / GIB,
            optimizer_gib=train_gpu * adam_bytes / sharding / GIB, activations_gib=act / GIB,
            tflops_per_microbatch=flops / 1e12))
    params = {"vision": vision_params(vlm).total, "projector": projector_params(vlm).total,
              "language": (language_layer_params(vlm) * vlm.language.num_layers).total
              + vocab_params(vlm).total * (1 if vlm.language.tie_word_embeddings else 2)
              + vlm.language.hidden_size}
    return Plan(name=cfg.name, gpus=gpus, data_parallel=dp, microbatches=microbatches,
                tokens_per_microbatch=tokens, tiles_per_microbatch=tiles, params=params,
                trainable=trainable, stages=stages, gpu_memory_gib=gpu_memory_gib)
