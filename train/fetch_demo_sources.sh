#!/usr/bin/env bash
# Fetches what the demo model's fine-tunes and scores start from, each once (a .done file marks it complete):
# the released tiny model (train/fetch_teacher.py), the Debian wallpaper photos (train/fetch_photos.sh), Tux
# Paint's object cut-outs (train/fetch_cutouts.sh), GCompris' photos and their hand-labelled split
# (train/label_photos.py: validation/ holds the 25 held-out photos). Settings from the environment: PY, TEACHER, PHOTOS,
# CUTOUTS, GCOMPRIS, LABELLED (defaults: runs/...). Called by train/finetune_released_tiny.sh and
# train/score_demo_model.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TEACHER=${TEACHER:-runs/teacher-u2netp}
PHOTOS=${PHOTOS:-runs/photos}
CUTOUTS=${CUTOUTS:-runs/cutouts}
GCOMPRIS=${GCOMPRIS:-runs/gcompris}
LABELLED=${LABELLED:-runs/gcompris-labelled}
[ -f "$TEACHER/model.safetensors" ] || "$PY" train/fetch_teacher.py --out "$TEACHER"
[ -f "$PHOTOS/.done" ] || { train/fetch_photos.sh "$PHOTOS" && touch "$PHOTOS/.done"; }
[ -f "$CUTOUTS/.done" ] || { train/fetch_cutouts.sh "$CUTOUTS" && touch "$CUTOUTS/.done"; }
[ -f "$GCOMPRIS/.done" ] || { "$PY" train/fetch_gcompris_photos.py --out "$GCOMPRIS" && touch "$GCOMPRIS/.done"; }
[ -f "$LABELLED/.done" ] || {
  "$PY" train/label_photos.py --photos "$GCOMPRIS" --labels train/labels --out "$LABELLED" --validation_every 6 \
    && touch "$LABELLED/.done"; }
