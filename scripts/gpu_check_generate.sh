#!/usr/bin/env bash
# Generation on one GPU (scripts/gpu_check_generate.py): KV-cache step logits vs recomputation and
# greedy tokens for local / Transformer Engine layers in fp32 and bf16, then new tokens/s with the
# KV cache vs recomputing per token on the ~1B `small` preset (TE bf16 when TE is installed).
#
# On the lent device machine (python3 with CUDA torch, pillow, pyyaml; no megatron): carry a
# `.whl` folder with megatron-core==0.16.1 downloaded for Python 3.12 as scripts/gpu_check_model.sh
# describes; it is installed into /tmp/site. Extra arguments go to the Python script (e.g.
# --batch 16 --new-tokens 512). With $OUT set, results are also written to
# $OUT/gpu_check_generate.json. Takes a few minutes on one H100/H200.
set -euo pipefail
source "$(dirname "$0")/gpu_check_env.sh"
print_gpu_stack
exec python3 scripts/gpu_check_generate.py "$@"
