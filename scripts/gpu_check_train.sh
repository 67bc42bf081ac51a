#!/usr/bin/env bash
# bf16 vs FP8 training of the ~1B `small` preset on one GPU, through the real trainer
# (scripts/gpu_check_train.py). Asserts (exit 1 on failure): Transformer Engine installed, both
# modes train the same steps with finite losses, FP8's final loss within 2% of bf16's; prints
# per-step losses, tokens/s and MFU side by side.
#
# Needs the project's environment with CUDA torch (`pip install -e '.[gpu]'` for TE) and builds
# the demo shards first if they are missing. Extra arguments go to the Python script
# (e.g. --band 0.03 train.conversations=800). With $OUT set, results are also written
# to $OUT/gpu_check_train.json.
#
# On the lent device machine (python3 with CUDA torch, tokenizers, pillow, pyyaml; no
# megatron): carry `shards/ultrasound` (12 MB, built here) and a `.whl` folder with
# megatron-core==0.16.1, megatron-energon==7.4.1 and energon's missing requirements
# (braceexpand, filetype, mfusepy, multi-storage-client, rapidyaml, s3fs, webdataset), downloaded
# for Python 3.12 as scripts/gpu_check_model.sh describes; they are installed into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
python=${FLEMING_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if [ ! -f shards/ultrasound/.nv-meta/dataset.yaml ]; then
  "$python" -m datakit.cli build ultrasound
fi
exec "$python" scripts/gpu_check_train.py "$@" data.path="$PWD/shards/ultrasound"
