#!/usr/bin/env bash
# Stage 3 of the demo model (train/make_demo_checkpoint.sh) on a lent GPU machine: its 16 cores render two
# stage-3 datasets, then two runs share one H200 (sharing costs no images/s in all: two runs got ~205 images/s
# each at batch 32 on 2026-12-04, one alone 409), both from the bundled stage-2 model:
#   hard:  the recipe's data, fresh composites with close-ups and sharp distractors at the edges;
#   fresh: fresh composites without them, so the comparison separates the new data from more steps.
# Each run's last checkpoints, final weights and logs come back in ${OUT:-gpu-results}/ (three files); the
# evaluation and packaging are done on the CPU afterwards. (Stage 2 was trained the same way by this script's
# previous version, train/device_stage2.sh at commit 8271ef6: two learning rates instead of two datasets.)
# It needs runs/photos and runs/cutouts (train/fetch_photos.sh, train/fetch_cutouts.sh: no network there)
# and, for the machine's own python3, the wheels in .whl/ of the packages it lacks (datasets and its needs).
#   TRAIN_SECONDS=380  the wall-clock bound of each run (the newest checkpoint is kept if it is reached)
set -uo pipefail
cd "$(dirname "$0")/.."
source train/device_setup.sh   # $out, $log, $PY, the environment and the wheels
"$PY" -c "import torch, datasets, accelerate, u2net_hub; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'datasets', datasets.__version__, 'accelerate', accelerate.__version__)" 2>&1 | tee -a "$log" || exit 1
export STAGE2_DIR=u2net_hub/checkpoints/u2net-tiny-synthetic
VARIANTS=${VARIANTS:-"hard:0.15:0.35 fresh:0:0"}   # name:closeups:distractors
start=$(date +%s)
for variant in $VARIANTS; do
  IFS=: read -r name closeups distractors <<< "$variant"
  WORKERS=$(nproc) STAGE3_CLOSEUPS=$closeups STAGE3_DISTRACTORS=$distractors DATA_ONLY=1 \
    train/make_demo_checkpoint.sh > "runs/data-$name.log" 2>&1 || { tail -40 "runs/data-$name.log"; exit 1; }
done
echo "data built in $(( $(date +%s) - start )) s" | tee -a "$log"
for variant in $VARIANTS; do
  IFS=: read -r name closeups distractors <<< "$variant"
  WORKERS=6 STAGE3_CLOSEUPS=$closeups STAGE3_DISTRACTORS=$distractors RUN_DIR="runs/stage3-$name" TRAIN_ONLY=1 \
    timeout "${TRAIN_SECONDS:-380}" train/make_demo_checkpoint.sh > "runs/train-$name.log" 2>&1 &
done
wait
echo "trained by $(( $(date +%s) - start )) s" | tee -a "$log"
for variant in $VARIANTS; do
  name=${variant%%:*}
  run=stage3-$name
  tail -5 "runs/train-$name.log" | tr '\r' '\n' | tail -4 | tee -a "$log"
  checkpoints=$(cd runs && ls -d "$run"/checkpoint-* 2>/dev/null | sort -t- -k3 -n | tail -2)
  tar -cf "$out/$run.tar" -C runs $(cd runs && ls "$run"/*.safetensors "$run"/*.json* 2>/dev/null) \
    $(for c in $checkpoints; do echo "$c/model.safetensors $c/trainer_state.json"; done) 2>>"$log"
done
tar -czf "$out/logs.tar.gz" runs/*.log 2>/dev/null
ls -la "$out"
