#!/usr/bin/env bash
# Real object cut-outs with exact alpha, for the composites of the demo model: the stamps of Tux Paint
# (Debian's tuxpaint-stamps-default: photographs of animals, food, plants, vehicles and household objects, cut out
# by hand, as RGBA PNG), downloaded and unpacked in a cache, never installed. Glyphs (symbols/) and the
# pre-mirrored copies (*_mirror, *_flip) are left out. Written as RGBA PNG of at most 384 px into
#   OUT/train/       photographic stamps used for training
#   OUT/validation/  one in ten photographic stamps (by a hash of its path), never used in training
#   OUT/cartoon/     the drawn stamps (cartoon/ folders), used for a small share of the training objects
# None comes from the U-2-Net repository.
#   usage: train/fetch_cutouts.sh [OUT_DIR]     (default runs/cutouts; needs apt-get and dpkg)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/cutouts}
CACHE=${CACHE:-runs/photo-debs}
mkdir -p "$CACHE" "$OUT"
if [ ! -f "$CACHE/.stamps-unpacked" ]; then
  (cd "$CACHE" && apt-get download tuxpaint-stamps-default)
  dpkg -x "$CACHE"/tuxpaint-stamps-default_*.deb "$CACHE/root"
  touch "$CACHE/.stamps-unpacked"
fi
"$PY" - "$CACHE/root/usr/share/tuxpaint/stamps" "$OUT" <<'PYTHON'
import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

root, out = Path(sys.argv[1]), Path(sys.argv[2])
counts = {"train": 0, "validation": 0, "cartoon": 0, "rejected": 0}
for pool in counts:
    if pool != "rejected":
        (out / pool).mkdir(parents=True, exist_ok=True)
for path in sorted(root.rglob("*.png")):
    rel = path.relative_to(root)
    if rel.parts[0] == "symbols" or path.stem.endswith(("_mirror", "_flip")):
        continue
    image = Image.open(path)
    if "A" not in image.getbands() and "transparency" not in image.info:
        counts["rejected"] += 1
        continue
    image = image.convert("RGBA")
    image.thumbnail((384, 384), Image.Resampling.LANCZOS)
    alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255
    border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    # A cut-out: covers 3..95 % of its box, and most of its frame is transparent (not a framed picture).
    if not (0.03 < alpha.mean() < 0.95) or (border > 0.5).mean() > 0.5 or min(image.size) < 24:
        counts["rejected"] += 1
        continue
    if "cartoon" in rel.parts:
        pool = "cartoon"
    else:
        pool = "validation" if int(hashlib.md5(str(rel).encode()).hexdigest(), 16) % 10 == 0 else "train"
    name = "-".join(rel.with_suffix("").parts)
    image.save(out / pool / f"{name}.png")
    counts[pool] += 1
print(", ".join(f"{k}: {v}" for k, v in counts.items()), f"(in {out})")
PYTHON
