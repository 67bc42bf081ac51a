#!/usr/bin/env bash
# bf16 vs FP8 training steps of the ~1B `small` preset on one GPU, through the real trainer
# (scripts/gpu_check_train.py): per-step losses and step times side by side, median step times
# and their ratio. FP8 needs Transformer Engine; without it the script says so and runs bf16 only.
#
# Needs the project's environment with CUDA torch (`pip install -e '.[gpu]'` for TE) and builds
# the demo shards first if they are missing. Extra arguments go to the Python script
# (e.g. --steps 20 parallel.recompute_activations=true). With $OUT set, results are also written
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
