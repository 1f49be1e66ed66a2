#!/usr/bin/env bash
# Reproduces the bundled demo checkpoint (u2net_hub/checkpoints/u2net-tiny-synthetic) in four stages and two weight mixes:
#   stage 1: the tiny U²-Net trained from scratch on the built-in synthetic scenes (4,000 steps at 160 px; the
#            bundled model until 2026-12-03, commit ce7e2be);
#   stage 2: stage 1 fine-tuned at 320 px on composites of real object cut-outs (Tux Paint's photographic stamps,
#            train/fetch_cutouts.sh) and drawn people on real photographs (Debian wallpaper photos,
#            train/fetch_photos.sh), made by train/make_cutout_composites.py and mixed with plain synthetic
#            scenes (the bundled model of 2026-12-04, commit 8271ef6);
#   stage 3: stage 2 fine-tuned on fresh composites (another seed) that add close-ups (a subject larger than the
#            frame) and sharp distractors at the frame's edges (STAGE3_CLOSEUPS, STAGE3_DISTRACTORS);
#   stage 3's mix: the mean of stage 2's and stage 3's weights, the fused map sharpened (train/mix_weights.py;
#            the bundled model of commit 47bded2);
#   stage 4: two short runs (seeds 0 and 1) from stage 3's mix on fresh composites where a share of the scenes
#            keep a sharp backdrop with unmasked objects behind a large subject (STAGE4_BUSY), on the CPU;
#   shipped: the mean of stage 3's mix and the two stage-4 runs' mean, the fused map sharpened again;
# then scores the result on the held-out synthetic split, the real-photo validation set
# (train/make_real_validation.py) and held-out cut-out composites with `u2net evaluate`, and ships it with its
# figures in the model card.
# Every training stage is resumable: rerun the script (or the same command) and it continues from the newest
# checkpoint of its run folder.
#   STAGE1_DIR=... / STAGE2_DIR=...   a finished run folder to start the next stage from instead of training
#                    it here: stage 2 of 2026-12-04 started from the stage-1 model of ce7e2be, stage 3 from the
#                    stage-2 model of 8271ef6 (git show <commit>:u2net_hub/checkpoints/u2net-tiny-synthetic/...)
#   STAGE3_MIX=...   a model folder to start stage 4 from instead of mixing stages 2 and 3 here: stage 4 of
#                    2026-12-05 started from the bundled model of 47bded2
#   TRAIN_ONLY=1     stop after training (no evaluation, no packaging)
#   DATA_ONLY=1      stop after building the data (to train several runs on it at once)
#   PACKAGE=0        evaluate but do not replace the bundled checkpoint
#   STAGE3_WEIGHT=0.5, TEMPERATURE=0.5   the shipped weights (train/mix_weights.py): the share of stage 3's in
#                    the mean with stage 2's, and the temperature folded into the fused map
#   WORKERS=N        processes rendering the composites and DataLoader workers (default 2)
#   STAGE2_LR, STAGE2_STEPS, STAGE2_BATCH, STAGE2_RUN_DIR, NUM_COMPOSITES, NUM_SYNTHETIC: stage 2's learning
#                    rate, steps, batch, run folder and data; STAGE3_LR, STAGE3_STEPS, STAGE3_COMPOSITES,
#                    STAGE3_SYNTHETIC, STAGE3_CLOSEUPS, STAGE3_DISTRACTORS and RUN_DIR (stage 3's run folder)
#                    the same for stage 3
#   STAGE4_LR, STAGE4_STEPS, STAGE4_BATCH, STAGE4_COMPOSITES, STAGE4_SYNTHETIC, STAGE4_BUSY, STAGE4_SEEDS,
#                    STAGE4_RUN_DIR (seed 0's run folder; seed N's gets -sN), STAGE4_WEIGHT, STAGE4_TEMPERATURE:
#                    stage 4's runs, data and mix (STAGE4_RUN_DIR holds the shipped weights and their figures)
# Stages 2 and 3 run at the paper's 320/288 px with batch 32: ~2 s a step on the two-core CPU (stage 1 ~1.2 s a
# step of 8 at 144 px), so they were trained on lent H200s: stage 2 by train/device_stage2.sh of commit
# 8271ef6, stage 3 by train/device_stage3.sh. Stage 4 is short enough for the CPU: batch 16 at ~6.5 s a step,
# ~55 min a run on 2 cores of an Intel Xeon with AMX (2026-12-05).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STAGE1_STEPS=${STAGE1_STEPS:-4000}
STAGE2_STEPS=${STAGE2_STEPS:-3000}
STAGE2_LR=${STAGE2_LR:-1e-3}
STAGE2_BATCH=${STAGE2_BATCH:-32}
WORKERS=${WORKERS:-2}
NUM_COMPOSITES=${NUM_COMPOSITES:-24000}   # stage 2's data: composites of the cut-outs, and
NUM_SYNTHETIC=${NUM_SYNTHETIC:-8000}      # plain synthetic scenes (a quarter, to keep the synthetic quality)
STAGE2_RUN_DIR=${STAGE2_RUN_DIR:-runs/demo-tiny-cutouts-320}
STAGE3_LR=${STAGE3_LR:-5e-4}
STAGE3_STEPS=${STAGE3_STEPS:-2000}
STAGE3_COMPOSITES=${STAGE3_COMPOSITES:-16000}
STAGE3_SYNTHETIC=${STAGE3_SYNTHETIC:-4000}
STAGE3_CLOSEUPS=${STAGE3_CLOSEUPS:-0.15}
STAGE3_DISTRACTORS=${STAGE3_DISTRACTORS:-0.35}
RUN_DIR=${RUN_DIR:-runs/demo-tiny-stage3-320}
STAGE4_LR=${STAGE4_LR:-2e-4}
STAGE4_STEPS=${STAGE4_STEPS:-500}
STAGE4_BATCH=${STAGE4_BATCH:-16}
STAGE4_COMPOSITES=${STAGE4_COMPOSITES:-8000}
STAGE4_SYNTHETIC=${STAGE4_SYNTHETIC:-2000}
STAGE4_BUSY=${STAGE4_BUSY:-0.2}
STAGE4_SEEDS=${STAGE4_SEEDS:-0 1}
STAGE4_RUN_DIR=${STAGE4_RUN_DIR:-runs/demo-tiny-stage4-b$STAGE4_BUSY}
SIZE=160        # stage 1 and the held-out synthetic split
SIZE2=320       # stage 2, the cut-out composites and their validation split
HELDOUT_SEED=20261125
HELDOUT_DIR=${HELDOUT_DIR:-runs/heldout-synthetic-$HELDOUT_SEED}
PHOTOS=${PHOTOS:-runs/photos}
COMPOSITES=${COMPOSITES:-runs/cutout-composites-$SIZE2}
COMPOSITES3=${COMPOSITES3:-runs/cutout-composites-$SIZE2-seed2-c${STAGE3_CLOSEUPS}-d$STAGE3_DISTRACTORS}
COMPOSITES4=${COMPOSITES4:-runs/cutout-composites-$SIZE2-seed3-b$STAGE4_BUSY}
CUTOUTS=${CUTOUTS:-runs/cutouts}
CUTOUT_VALIDATION=${CUTOUT_VALIDATION:-runs/cutout-validation-$SIZE2}
REAL_DIR=${REAL_DIR:-runs/real-validation}
export HF_HUB_OFFLINE=1
# accelerate launch without --cpu sets OMP_NUM_THREADS=1: on a CPU that halves the speed, so give it every core
LAUNCH=("$PY" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no
        --dynamo_backend no --num_cpu_threads_per_process "$(nproc)" train/train.py)

# -- stage 1: synthetic scenes only, from scratch (not needed when a later stage starts from given weights)
if [ -z "${STAGE1_DIR:-}" ] && [ -z "${STAGE2_DIR:-}" ] && [ -z "${STAGE3_MIX:-}" ]; then
  STAGE1_DIR=runs/demo-tiny-synthetic
  "${LAUNCH[@]}" \
    --variant tiny \
    --synthetic_num_images 60000 --synthetic_seed 0 \
    --synthetic_validation_seed 1 --synthetic_validation_num_images 200 \
    --resolution $SIZE --crop_size 144 \
    --train_batch_size 8 --learning_rate 1e-3 --lr_scheduler cosine --lr_warmup_steps 200 \
    --max_train_steps "$STAGE1_STEPS" \
    --mixed_precision bf16 --dataloader_num_workers 2 --seed 0 \
    --checkpointing_steps 250 --checkpoints_total_limit 3 --validation_steps 500 \
    --output_dir "$STAGE1_DIR" --resume_from_checkpoint latest
fi

# -- data of stage 2: real photographs and real object cut-outs (downloaded Debian packages), composites of
#    the cut-outs on the photos, plain synthetic scenes
[ -f "$PHOTOS/.done" ] || { train/fetch_photos.sh "$PHOTOS" && touch "$PHOTOS/.done"; }
[ -f "$CUTOUTS/.done" ] || { train/fetch_cutouts.sh "$CUTOUTS" && touch "$CUTOUTS/.done"; }
# Backgrounds full of real objects (flowers, cups, boats) would teach "a real object is background".
NOT_BACKGROUNDS="FreshFlower TwoWings ColorfulCups EveningGlow"
[ -n "${STAGE2_DIR:-}${STAGE3_MIX:-}" ] || [ -f "$COMPOSITES/.done" ] || {
  "$PY" train/make_cutout_composites.py --photos "$PHOTOS/train" --cutouts "$CUTOUTS/train" \
    --cartoons "$CUTOUTS/cartoon" --out "$COMPOSITES" --num_composites "$NUM_COMPOSITES" --num_synthetic "$NUM_SYNTHETIC" --size $SIZE2 \
    --figures 0.15 --seed 0 --workers "$WORKERS" --exclude_backgrounds $NOT_BACKGROUNDS && touch "$COMPOSITES/.done"; }
# the composite validation split: the cut-outs held out by train/fetch_cutouts.sh, another seed
[ -f "$CUTOUT_VALIDATION/.done" ] || {
  "$PY" train/make_cutout_composites.py --photos "$PHOTOS/train" --cutouts "$CUTOUTS/validation" \
    --out "$CUTOUT_VALIDATION" --num_composites 300 --num_synthetic 0 --size $SIZE2 --seed 1 --figures 0 \
    --workers "$WORKERS" --exclude_backgrounds $NOT_BACKGROUNDS && touch "$CUTOUT_VALIDATION/.done"; }
# stage 3's: fresh composites (seed 2; seed 1 is the validation split's) with close-ups and sharp distractors
[ -n "${STAGE3_MIX:-}" ] || [ -f "$COMPOSITES3/.done" ] || {
  "$PY" train/make_cutout_composites.py --photos "$PHOTOS/train" --cutouts "$CUTOUTS/train" \
    --cartoons "$CUTOUTS/cartoon" --out "$COMPOSITES3" --num_composites "$STAGE3_COMPOSITES" \
    --num_synthetic "$STAGE3_SYNTHETIC" --size $SIZE2 --figures 0.15 --closeups "$STAGE3_CLOSEUPS" \
    --distractors "$STAGE3_DISTRACTORS" --seed 2 --workers "$WORKERS" --exclude_backgrounds $NOT_BACKGROUNDS \
    && touch "$COMPOSITES3/.done"; }
# stage 4's: another seed, stage 3's close-ups and distractors, and busy scenes (a sharp backdrop with unmasked
# objects behind a large subject: the model marked whole backdrops on real photos)
[ -f "$COMPOSITES4/.done" ] || {
  "$PY" train/make_cutout_composites.py --photos "$PHOTOS/train" --cutouts "$CUTOUTS/train" \
    --cartoons "$CUTOUTS/cartoon" --out "$COMPOSITES4" --num_composites "$STAGE4_COMPOSITES" \
    --num_synthetic "$STAGE4_SYNTHETIC" --size $SIZE2 --figures 0.15 --closeups "$STAGE3_CLOSEUPS" \
    --distractors "$STAGE3_DISTRACTORS" --busy "$STAGE4_BUSY" --seed 3 --workers "$WORKERS" \
    --exclude_backgrounds $NOT_BACKGROUNDS && touch "$COMPOSITES4/.done"; }
[ "${DATA_ONLY:-0}" = 1 ] && exit 0

# -- stage 2: fine-tune stage 1 on them at 320/288 px (200 images held out for the validation during training).
#    Two earlier recipes fine-tuned on composites of *synthetic* shapes on real photos and lost real-photo
#    quality (docs/demo-model-journal.md, sessions 4 and 5); real cut-outs are what changed.
if [ -z "${STAGE2_DIR:-}" ] && [ -z "${STAGE3_MIX:-}" ]; then
STAGE2_DIR=$STAGE2_RUN_DIR
"${LAUNCH[@]}" \
  --init_from "$STAGE1_DIR" --train_data_dir "$COMPOSITES" --validation_split 200 --data_check none \
  --resolution $SIZE2 --crop_size 288 \
  --train_batch_size "$STAGE2_BATCH" --learning_rate "$STAGE2_LR" --lr_scheduler cosine --lr_warmup_steps 200 \
  --max_train_steps "$STAGE2_STEPS" \
  --mixed_precision bf16 --dataloader_num_workers "$WORKERS" --seed 0 \
  --checkpointing_steps 250 --checkpoints_total_limit 4 --validation_steps 1250 \
  --output_dir "$STAGE2_DIR" --resume_from_checkpoint latest
fi

# -- stage 3: stage 2 fine-tuned on the fresh composites, at a lower peak rate
if [ -z "${STAGE3_MIX:-}" ]; then
"${LAUNCH[@]}" \
  --init_from "$STAGE2_DIR" --train_data_dir "$COMPOSITES3" --validation_split 200 --data_check none \
  --resolution $SIZE2 --crop_size 288 \
  --train_batch_size "$STAGE2_BATCH" --learning_rate "$STAGE3_LR" --lr_scheduler cosine --lr_warmup_steps 100 \
  --max_train_steps "$STAGE3_STEPS" \
  --mixed_precision bf16 --dataloader_num_workers "$WORKERS" --seed 0 \
  --checkpointing_steps 250 --checkpoints_total_limit 4 --validation_steps 1000 \
  --output_dir "$RUN_DIR" --resume_from_checkpoint latest

# -- stage 3's mix: the mean of stage 2's and stage 3's weights (each alone was worse on the real photos), with
#    the fused map sharpened (temperature 0.5, chosen on the held-out cut-out composites; docs/demo-model-journal.md,
#    session 7)
STAGE3_MIX=$RUN_DIR/shipped
"$PY" train/mix_weights.py "$STAGE2_DIR" "$RUN_DIR" --weight_b "${STAGE3_WEIGHT:-0.5}" \
  --temperature "${TEMPERATURE:-0.5}" --out "$STAGE3_MIX"
fi

# -- stage 4: short runs from stage 3's mix on the busy composites, one per seed (they differ only in the order
#    and crops of the images), at batch 16 (2 CPU cores: ~6 s a step, ~55 min a run)
STAGE4_DIRS=()
for seed in $STAGE4_SEEDS; do
  dir=$STAGE4_RUN_DIR; [ "$seed" = 0 ] || dir=$STAGE4_RUN_DIR-s$seed
  STAGE4_DIRS+=("$dir")
  "${LAUNCH[@]}" \
    --init_from "$STAGE3_MIX" --train_data_dir "$COMPOSITES4" --validation_split 200 --data_check none \
    --resolution $SIZE2 --crop_size 288 \
    --train_batch_size "$STAGE4_BATCH" --learning_rate "$STAGE4_LR" --lr_scheduler cosine --lr_warmup_steps 30 \
    --max_train_steps "$STAGE4_STEPS" \
    --mixed_precision bf16 --dataloader_num_workers "$WORKERS" --seed "$seed" \
    --checkpointing_steps 100 --checkpoints_total_limit 8 --validation_steps 1000 \
    --output_dir "$dir" --resume_from_checkpoint latest
done
[ "${TRAIN_ONLY:-0}" = 1 ] && exit 0

# -- the shipped weights: stage 3's mix averaged with stage 4 (the mean of its runs when there are two), the
#    fused map sharpened once more (each stage-4 run alone was worse than stage 3's mix on the real photos' MAE;
#    docs/demo-model.md)
STAGE4=${STAGE4_DIRS[0]}
if [ "${#STAGE4_DIRS[@]}" = 2 ]; then
  STAGE4=$STAGE4_RUN_DIR/soup
  "$PY" train/mix_weights.py "${STAGE4_DIRS[0]}" "${STAGE4_DIRS[1]}" --weight_b 0.5 --temperature 1 --out "$STAGE4"
elif [ "${#STAGE4_DIRS[@]}" != 1 ]; then
  echo "STAGE4_SEEDS: one or two seeds, got '$STAGE4_SEEDS'" >&2; exit 2
fi
SHIPPED=$STAGE4_RUN_DIR/shipped
# flip_average: predict averages each image's logits with its mirror image's (session 11: better on the real
# photos, the cut-out composites and the synthetic scenes alike; docs/demo-model.md)
"$PY" train/mix_weights.py "$STAGE3_MIX" "$STAGE4" --weight_b "${STAGE4_WEIGHT:-0.5}" \
  --temperature "${STAGE4_TEMPERATURE:-0.5}" --flip_average --out "$SHIPPED"

# -- the held-out synthetic split: fresh scenes from a seed never used in training (training 0, validation 1,
#    composite objects 7).
"$PY" train/make_synthetic_split.py --out "$HELDOUT_DIR" --seed "$HELDOUT_SEED" --count 300 --size 160
"$PY" train/make_real_validation.py --photos "$PHOTOS/validation" --out "$REAL_DIR"

# -- score it the way users will
"$PY" -m u2net_hub.cli evaluate --model "$SHIPPED" --dataset "$HELDOUT_DIR" --no-fast --output "$STAGE4_RUN_DIR/heldout_metrics.json"
"$PY" -m u2net_hub.cli evaluate --model "$SHIPPED" --dataset "$REAL_DIR" --no-fast --output "$STAGE4_RUN_DIR/real_metrics.json"
"$PY" -m u2net_hub.cli evaluate --model "$SHIPPED" --dataset "$CUTOUT_VALIDATION" --no-fast --output "$STAGE4_RUN_DIR/cutout_metrics.json"
[ "${PACKAGE:-1}" = 1 ] || exit 0

# -- ship it inside the package with the figures in its card
"$PY" train/package_demo_checkpoint.py --run_dir "$STAGE4_RUN_DIR" --weights_dir "$SHIPPED" \
  --metrics_json "$STAGE4_RUN_DIR/heldout_metrics.json" --real_metrics_json "$STAGE4_RUN_DIR/real_metrics.json" \
  --cutout_metrics_json "$STAGE4_RUN_DIR/cutout_metrics.json" --batch_size "$STAGE4_BATCH" \
  --heldout "a held-out synthetic split (300 scenes at 160x160, seed $HELDOUT_SEED, never used in training)" \
  --hardware "${HARDWARE:-stage 1: CPU only, 2 cores with AVX-512 bf16; stages 2 and 3: one NVIDIA H200 (two runs sharing it); stage 4: CPU only, 2 cores of an Intel Xeon (AMX)}" \
  --stage2_data "$NUM_COMPOSITES composites at ${SIZE2}x$SIZE2 of real object cut-outs (379 photographic stamps of \
Debian's tuxpaint-stamps-default, 108 drawn ones for 15% of the objects; train/fetch_cutouts.sh) and of drawn people \
(15% of the subjects) on crops of 41 real photographs and textures from Debian wallpaper packages \
(train/fetch_photos.sh), made by train/make_cutout_composites.py, with $NUM_SYNTHETIC plain synthetic scenes (200 held \
out for validation during training)" \
  --stage3_data "$STAGE3_COMPOSITES fresh composites made the same way (seed 2) with close-ups (one subject larger than \
the frame; a share of $STAGE3_CLOSEUPS) and 1-3 sharp objects at the frame's edges that are not salient (a share of \
$STAGE3_DISTRACTORS), with $STAGE3_SYNTHETIC plain synthetic scenes" \
  --stage4_data "$STAGE4_COMPOSITES fresh composites (seed 3) like stage 3's, where a share of $STAGE4_BUSY of the \
scenes keep a sharp backdrop with 2-4 unmasked objects behind a large subject, with $STAGE4_SYNTHETIC plain synthetic \
scenes; one run per seed (seeds $STAGE4_SEEDS)" --stage4_runs "$(echo $STAGE4_SEEDS | wc -w)" \
  --mix "stage 3's mix (the mean of stage 2's weights and stage 3's, ${STAGE3_WEIGHT:-0.5} of stage 3, the fused \
logit divided by ${TEMPERATURE:-0.5}) averaged with the mean of the stage-4 runs (${STAGE4_WEIGHT:-0.5} of stage 4), the \
fused logit divided by ${STAGE4_TEMPERATURE:-0.5} again (train/mix_weights.py); at test time each image's logits are \
averaged with its mirror image's (flip_average)" \
  --command "train/make_demo_checkpoint.sh   # stage 1: train.py --variant tiny --max_train_steps $STAGE1_STEPS; stage 2: train.py --init_from STAGE1 --train_data_dir $COMPOSITES --resolution $SIZE2 --crop_size 288 --train_batch_size $STAGE2_BATCH --learning_rate $STAGE2_LR --max_train_steps $STAGE2_STEPS ...; stage 3 (train/device_stage3.sh on a GPU): train.py --init_from STAGE2 --train_data_dir $COMPOSITES3 --learning_rate $STAGE3_LR --max_train_steps $STAGE3_STEPS ...; train/mix_weights.py STAGE2 STAGE3 --weight_b ${STAGE3_WEIGHT:-0.5} --temperature ${TEMPERATURE:-0.5}; stage 4 (seeds $STAGE4_SEEDS): train.py --init_from STAGE3_MIX --train_data_dir $COMPOSITES4 --train_batch_size $STAGE4_BATCH --learning_rate $STAGE4_LR --max_train_steps $STAGE4_STEPS ...; train/mix_weights.py STAGE3_MIX STAGE4 --weight_b ${STAGE4_WEIGHT:-0.5} --temperature ${STAGE4_TEMPERATURE:-0.5} --flip_average"
