#!/usr/bin/env bash
# One GPU, the ~1B `small` preset (scripts/gpu_check_model.py): asserts Transformer Engine modules
# in use and packed (THD) per-token losses equal to the masked (one row per conversation) ones
# within the stated bf16 tolerance, then prints step time, tokens/s and MFU. Exit 1 on failure.
#
# For the lent device machine (Python 3.12, CUDA torch, no megatron-core): carry the wheel.
# Once, here, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
#     -d .whl megatron-core==0.16.1
# then run this script with `.whl` carried; it installs the wheel into /tmp/site first.
# Extra arguments go to the Python script (e.g. --seq 8192 --tiles 12 --recompute).
# Results are printed and, when $OUT is set, written to $OUT/gpu_check_model.json.
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
exec python3 -m torch.distributed.run --nproc-per-node 1 --master-port 29500 \
  scripts/gpu_check_model.py "$@"
