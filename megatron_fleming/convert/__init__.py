"""Checkpoint conversion between Hugging Face InternVL and Megatron distributed checkpoints.

    HF folder (internvl | transformers layout)  --hf_layouts-->  transformers names
        --mcore_mapping-->  FlemingVLM full state dict  --mcore_checkpoint-->  dist-checkpoint

Modules: `tensors` (lazy named-tensor sources, rule tables, safetensors writer), `hf_layouts`
(the two Hugging Face layouts and the renaming between them), `hf_checkpoint` (read / write a
folder), `mcore_mapping` (transformers names <-> Megatron names and fused layouts),
`mcore_checkpoint` (TP/PP shards, dist-checkpointing, the conversion record), `launch` (ranks
under torchrun or spawned), `jobs` (the two conversions as jobs; light imports), `conversion`
(what each rank runs), `verify` (logits of both models).
"""

from megatron_fleming.convert.jobs import HFToMcore, McoreToHF, hf_to_mcore, mcore_to_hf

__all__ = ["HFToMcore", "McoreToHF", "hf_to_mcore", "mcore_to_hf"]
