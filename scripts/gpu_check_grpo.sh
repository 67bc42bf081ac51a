#!/usr/bin/env bash
# GRPO on one GPU (bench/bench_grpo.py with the ~1B `small` preset, bf16, Transformer Engine
# layers when TE is installed): the time split rollout / reward / reference / check / update,
# rollout and update tokens/s for N = 2, 4, 8, and the rollout-vs-trainer log-prob drift in bf16
# (max |delta| and the error ratio the run would stop on). Random weights on the toy letter task;
# the reward is a pattern random text meets about half the time, so every iteration updates.
#
# On the lent device machine (python3 with CUDA torch, pillow, pyyaml): carry a `.whl` folder with
# the wheels this needs for Python 3.12 (megatron-core==0.16.1, megatron-energon==7.4.1 and its
# dependencies, tokenizers, openai; see scripts/gpu_check_model.sh for the download command); they
# are installed into /tmp/site. Extra arguments go to the bench (e.g. --response-len 512
# --prompts 8). With $OUT set, results are also written to $OUT/gpu_check_grpo.json.
# Takes a few minutes on one H100/H200.
set -euo pipefail
source "$(dirname "$0")/gpu_check_env.sh"
print_gpu_stack
impl=local
if python3 -c "import transformer_engine" 2>/dev/null; then impl=transformer_engine; fi
json=()
if [ -n "${OUT:-}" ]; then json=(--json "$OUT/gpu_check_grpo.json"); fi
exec python3 bench/bench_grpo.py --preset small --device cuda --dtype bf16 --impl "$impl" \
  --response-len 256 --prompts 8 "${json[@]}" "$@"
