"""Training data: datakit's Energon shards -> batches for `FlemingVLM`.

Modules: `tiling` (InternVL dynamic tiling, uint8 tiles), `decode` (image headers,
the PIL tile path), `dali_decode` (optional DALI tile path), `tokenizer` (local or tiny BPE),
`prompt` (ChatML rendering and loss labels), `packing` (greedy packing), `batch` (typed samples,
batch layouts), `skips` (skipped samples by reason), `task_encoder` (the energon task encoder).
Nothing heavy is imported here.
"""
