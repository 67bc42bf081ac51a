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
cd "$(dirname "$0")/.."
if compgen -G ".whl/megatron_core-*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
python3 -c "import torch, megatron.core; assert torch.cuda.is_available(), 'no GPU visible'; \
print('torch', torch.__version__, 'megatron-core', megatron.core.__version__, torch.cuda.get_device_name())"
exec python3 scripts/gpu_check_generate.py "$@"
