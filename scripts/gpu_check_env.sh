# Sourced by scripts/gpu_check_*.sh: the environment of every GPU check on the lent device machine
# (Python 3.12 with CUDA torch, no megatron-core or energon, no network). Wheels carried in
# `.whl/` (downloaded here for Python 3.12, see scripts/gpu_check_model.sh) are installed into
# /tmp/site; the repo is put on the path; `print_gpu_stack` fails early when no GPU is visible.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore

print_gpu_stack() {
  "${1:-python3}" -c "import torch, megatron.core; assert torch.cuda.is_available(), 'no GPU visible'; \
print('torch', torch.__version__, 'megatron-core', megatron.core.__version__, torch.cuda.get_device_name())"
}
