"""Training stages 1-3 of Fleming-VL on megatron-core (paper Table 2).

Modules: `config` (typed run config from YAML), `fp8` (Transformer Engine FP8 settings),
`optim` (megatron AdamW + cosine schedule with warmup), `step` (forward step, per-token loss),
`protocol` (what the loop needs from a stage; stage 4, `megatron_fleming.grpo`, implements it
too), `train_module` (model chunks, freezing, DDP, optimizer, one step), `loader` (tokenizer, task
encoder, energon savable loader), `checkpoint` (dist-checkpointing with RNG and loader state),
`preemption` (SIGTERM -> checkpoint and exit), `callbacks/` (console, metrics.jsonl,
TensorBoard), `trainer` (the loop, `launch`, `fit_stage` and `run`), `cli` (``fleming train``).
Nothing heavy is imported here.
"""
