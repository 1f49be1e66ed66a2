#!/usr/bin/env bash
# The fine-tune of the released tiny model (train/finetune_released_tiny.sh) on a lent GPU machine: thousands of
# steps where the 2-core CPU gives a few hundred a session. Its 16 cores render the training data from the
# carried photos and cut-outs, the released model labels the real photos on the GPU, then one bf16 run trains
# under a wall-clock bound. The final weights (or the newest checkpoint's), two earlier checkpoints' weights and
# the logs come back in ${OUT:-gpu-results}/; the evaluation is done on the CPU afterwards
# (runs/<run>/ -> `u2net evaluate`, as step 4 of finetune_released_tiny.sh does).
#
# From the repository root, with the device tool (about 60 MiB travels; the limit is 64):
#   carry: runs/photos/train runs/cutouts/train runs/cutouts/cartoon runs/gcompris runs/teacher-wheel .whl
#   command: train/device_finetune.sh
# .whl/ holds the wheels of what the machine's python3 lacks: datasets 5.2.0, dill 0.4.1, multiprocess 0.70.19
# (`pip download --no-deps --only-binary=:all: --python-version 3.12 ...`, see the device tool's notes).
#   STEPS=3000 BATCH=16 LR=2e-5   the fine-tune (finetune_released_tiny.sh's meaning)
#   TRAIN_SECONDS=330             the wall-clock bound of the training (the newest checkpoint is kept)
#   DISTILL=1 SCHEDULE=constant_with_warmup LR=1e-4   distil the released model on the real photos on the fly
#                                 instead of labelling them once (session 19: it holds the photos at higher rates)
#   MIX="runs/ft-synthetic-gpu:1" SYNTHETIC=runs/ft-synthetic-gpu SYNTHETIC_COUNT=20000   with DISTILL=1: the
#                                 synthetic scenes as the only labelled data (session 20: the synthetic split rose
#                                 0.915 -> 0.936 in 160 CPU steps with the photos held at 0.86), many of them
set -uo pipefail
cd "$(dirname "$0")/.."
source train/device_setup.sh   # $out, $log, $PY, the environment and the wheels
"$PY" -c "import torch, pyarrow, datasets, accelerate, onnx, u2net_hub; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'pyarrow', pyarrow.__version__, 'datasets', datasets.__version__)" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
# the carried folders stand for the fetches (no network there); the held-out photos and cut-outs stay behind
for folder in runs/photos runs/cutouts runs/gcompris; do
  [ -d "$folder" ] || { echo "error: $folder was not carried" | tee -a "$log"; exit 1; }
  touch "$folder/.done"
done
RUN_DIR=${RUN_DIR:-runs/ft-gpu}
start=$(date +%s)
STEPS=${STEPS:-3000} BATCH=${BATCH:-16} LR=${LR:-2e-5} PRECISION=bf16 WORKERS=$(nproc) RUN_DIR="$RUN_DIR" \
  TRAIN_ONLY=1 timeout "${TRAIN_SECONDS:-330}" train/finetune_released_tiny.sh > runs/device-finetune.log 2>&1
status=$?
echo "exit status $status after $(( $(date +%s) - start )) s (124: the wall-clock bound)" | tee -a "$log"
tr '\r' '\n' < runs/device-finetune.log | grep -v '^$' | tail -8 | tee -a "$log"
# the weights: the final ones if the run finished, else the newest checkpoint's, and two earlier checkpoints'
checkpoints=$(ls -d "$RUN_DIR"/checkpoint-* 2>/dev/null | sort -V | tail -3)
[ -f "$RUN_DIR/model.safetensors" ] && cp "$RUN_DIR/model.safetensors" "$out/final.safetensors"
for checkpoint in $checkpoints; do
  cp "$checkpoint/model.safetensors" "$out/$(basename "$checkpoint").safetensors"
done
cp "$RUN_DIR/train_log.jsonl" "$out/" 2>/dev/null
tar -czf "$out/logs.tar.gz" runs/*.log 2>/dev/null
ls -la "$out" | tee -a "$log"
