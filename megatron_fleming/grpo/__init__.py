"""Stage 4: GRPO in the trainer, with in-process rollouts on the training weights.

Modules: `config` (typed, validated; the paper's values and named defaults), `prompts` (the GRPO
set through energon and the training task encoder), `rollout` (N samples per prompt from the
generation engine, seeded per sample), `rewards` (format + accuracy through the evaluation's
answer parser and LLM judge), `advantages` (group-normalised, zero-variance groups skipped),
`batches` (rollouts -> packed training rows), `loss` (clipped ratio, k3 KL, aggregation),
`objective` (the loss inside megatron's schedules), `reference` (the frozen initial weights,
swapped in), `consistency` (rollout-vs-trainer log-prob drift), `train_module` (one iteration;
the `train.protocol.StageModule` the shared `train.trainer.Trainer` drives), `run` and `cli`
(``fleming grpo``), `toy_task` (a verifiable letter task for tests and benchmarks).
See docs/grpo.md.
"""
