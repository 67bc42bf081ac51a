#!/usr/bin/env bash
# Shared body of every scripts/slurm/train_*.sbatch and grpo_*.sbatch: one training task per GPU (or CPU rank)
# through srun, rendezvous from Slurm's variables, SIGTERM forwarding, requeue after a
# checkpointed stop, auto-resume (the trainer resumes from checkpoint.dir by itself).
#
#   train_launch.sh CONFIG [section.key=value ...]
#
# Environment (all optional):
#   DATA             energon dataset / metadataset for --data (else the config's data.path)
#   FLEMING_ROOT     repository root (default: the submit directory)
#   FLEMING_PYTHON   interpreter (default: $FLEMING_ROOT/.venv/bin/python)
#   FLEMING_DEVICE   cuda (default) or cpu (gloo; the tiny CPU job)
#   FLEMING_COMMAND  the fleming subcommand: train (default, stages 1-3) or grpo (stage 4)
#   FLEMING_ENV_FILE a file sourced before launch, for site settings (NCCL_IB_HCA,
#                    NCCL_SOCKET_IFNAME, module loads ...)
#   FLEMING_ON_FINISH a command run (bash -c) once training finished, never after an early stop
#                    that requeues the job (`fleming pipeline` writes its completion marker so)
#
# Preemption: `#SBATCH --signal=B:TERM@120` sends SIGTERM to this shell 120 s before the time
# limit; the trap passes it to every training task (through scancel: srun would turn it into a
# kill). The trainer checkpoints at the next step boundary, writes the stop marker and exits 0;
# this script then requeues the job, which resumes from that checkpoint. By hand: `scancel
# --signal=TERM JOBID` (the tasks) or `scancel --batch --signal=TERM JOBID` (this shell) do the
# same; a plain `scancel` ends the job.
set -uo pipefail

config=${1:?usage: train_launch.sh CONFIG [section.key=value ...]}
shift
root=${FLEMING_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
python=${FLEMING_PYTHON:-$root/.venv/bin/python}
device=${FLEMING_DEVICE:-cuda}
command=${FLEMING_COMMAND:-train}
cd "$root" || exit 1
if [ -n "${FLEMING_ENV_FILE:-}" ]; then
  # shellcheck disable=SC1090
  source "$FLEMING_ENV_FILE"
fi

# Rendezvous: rank 0 (the first task, on the first node) hosts the TCP store.
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# Outside the ephemeral range; a requeued run (same job id) gets a fresh port.
MASTER_PORT=${MASTER_PORT:-$((20000 + (SLURM_JOB_ID * 7 + ${SLURM_RESTART_COUNT:-0}) % 10000))}
WORLD_SIZE=$SLURM_NTASKS
export MASTER_ADDR MASTER_PORT WORLD_SIZE

if [ "$device" = cuda ]; then
  export CUDA_DEVICE_MAX_CONNECTIONS=1        # megatron: TP/SP communication overlaps in order
  export TORCH_NCCL_ASYNC_ERROR_HANDLING=1    # a dead rank fails the job instead of hanging it
  export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
  export NVTE_FWD_LAYERNORM_SM_MARGIN=${NVTE_FWD_LAYERNORM_SM_MARGIN:-16}  # leave SMs for comm
  export NVTE_BWD_LAYERNORM_SM_MARGIN=${NVTE_BWD_LAYERNORM_SM_MARGIN:-16}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
else
  export CUDA_VISIBLE_DEVICES=""
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi

marker="$root/.fleming-stop-$SLURM_JOB_ID"
rm -f "$marker"
args=(--config "$config" --stop-marker "$marker")
if [ -n "${DATA:-}" ]; then args+=(--data "$DATA"); fi

echo "launch: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) $WORLD_SIZE tasks on" \
     "$SLURM_JOB_NODELIST, rendezvous $MASTER_ADDR:$MASTER_PORT, fleming $command --config $config"
# Each task derives its ranks from Slurm; no torchrun, so SIGTERM reaches the trainer directly.
srun --kill-on-bad-exit=1 --export=ALL bash -c \
  'RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID exec "$0" -m megatron_fleming.cli "$@"' \
  "$python" "$command" "${args[@]}" "$@" &
srun_pid=$!
# srun answers a SIGTERM of its own by killing the tasks (SIGKILL), so the signal goes to the
# tasks through Slurm instead: `scancel --signal` without --batch reaches every job step's tasks.
trap 'echo "launch: SIGTERM, forwarding it to the training tasks"; scancel --signal=TERM "$SLURM_JOB_ID"' TERM

status=0
while true; do
  wait "$srun_pid"
  status=$?
  # wait returns > 128 when the trap interrupted it; srun itself is still running then.
  if [ "$status" -gt 128 ] && kill -0 "$srun_pid" 2>/dev/null; then continue; fi
  break
done
trap - TERM

if [ "$status" -eq 0 ] && [ -f "$marker" ]; then
  echo "launch: training stopped early at iteration $(cat "$marker"); requeueing job $SLURM_JOB_ID"
  rm -f "$marker"
  scontrol requeue "$SLURM_JOB_ID"
elif [ "$status" -eq 0 ] && [ -n "${FLEMING_ON_FINISH:-}" ]; then
  bash -c "$FLEMING_ON_FINISH" || status=$?
fi
exit "$status"
