"""Stage 4: GRPO in the trainer, with in-process rollouts on the training weights.

Modules: `advantages` (group-normalised advantages, zero-variance groups skipped), `loss` (clipped
ratio objective, k3 KL to the reference, token-mean / seq-mean-token-mean aggregation), `rewards`
(format + accuracy through the evaluation's answer parser and LLM judge).
"""
