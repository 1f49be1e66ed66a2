#!/usr/bin/env bash
# Stage 2 of the demo model (train/make_demo_checkpoint.sh) on a lent GPU machine: 16 cores render the data,
# then two runs that differ only in their learning rate share one H200. Measured 2026-12-04: each got ~205
# images/s at batch 32, together about what one run alone gets (409 images/s in docs/performance.md), so two
# runs buy a second learning rate, not more images; 340 s took each to step ~1,960 of 3,000. Last, the
# folder benchmark on the GPU (benchmarks/folder_gpu.py). Both runs, their logs and the benchmark come back
# in ${OUT:-gpu-results}/ as four files; the evaluation and packaging are done on the CPU afterwards.
# It needs runs/photos and runs/cutouts (train/fetch_photos.sh, train/fetch_cutouts.sh: no network there)
# and, for the machine's own python3, the wheels in .whl/ of the packages it lacks (datasets and its needs).
#   TRAIN_SECONDS=340  the wall-clock bound of each run (the newest checkpoint is kept if it is reached)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out" runs
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PY=${PY:-python3} PYTHONPATH="$PWD"
if [ -z "${NO_WHEELS:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD" || exit 1
fi
log="$out/device.log"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; } | tee "$log"
"$PY" -c "import torch, datasets, accelerate, u2net_hub; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'datasets', datasets.__version__, 'accelerate', accelerate.__version__)" 2>&1 | tee -a "$log" || exit 1
export STAGE1_DIR=u2net_hub/checkpoints/u2net-tiny-synthetic
start=$(date +%s)
WORKERS=$(nproc) DATA_ONLY=1 train/make_demo_checkpoint.sh > runs/data.log 2>&1 || { tail -40 runs/data.log; exit 1; }
echo "data built in $(( $(date +%s) - start )) s" | tee -a "$log"
nohup "$PY" benchmarks/photos.py runs/gpu-photos --count 64 > runs/photos.log 2>&1 &
for lr in 1e-3 3e-4; do
  WORKERS=6 STAGE2_LR=$lr RUN_DIR=runs/stage2-lr$lr TRAIN_ONLY=1 timeout "${TRAIN_SECONDS:-340}" \
    train/make_demo_checkpoint.sh > runs/train-lr$lr.log 2>&1 &
done
wait
echo "trained by $(( $(date +%s) - start )) s" | tee -a "$log"
for lr in 1e-3 3e-4; do
  run=runs/stage2-lr$lr
  tail -5 runs/train-lr$lr.log | tr '\r' '\n' | tail -4 | tee -a "$log"
  checkpoints=$(ls -d "$run"/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -2)
  tar -cf "$out/stage2-lr$lr.tar" -C runs "stage2-lr$lr/config.json" $(cd runs && ls "stage2-lr$lr"/*.safetensors "stage2-lr$lr"/*.json* 2>/dev/null) \
    $(for c in $checkpoints; do echo "${c#runs/}/model.safetensors ${c#runs/}/trainer_state.json"; done) 2>>"$log"
done
timeout 120 "$PY" benchmarks/folder_gpu.py --photos runs/gpu-photos --count 64 --json runs/folder_gpu.json 2>&1 | tee -a "$log"
tar -czf "$out/logs.tar.gz" runs/*.log runs/folder_gpu.json 2>/dev/null
ls -la "$out"
