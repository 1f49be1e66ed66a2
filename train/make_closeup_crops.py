"""Close-up crops of labelled photos: the subject fills the frame or runs out of it.

Why: salient-object photos include close-ups (a cat's face, a head and shoulders) where the subject is most of
the frame, and a model fine-tuned on photos of whole subjects learns to mark a small centred thing instead
(issue 16: the cat close-up of the real-photo set). Cropping around each photo's mask, tighter than the
subject, turns a photo of a whole subject into real close-ups. The crops are photos, not masks: label them again
(the teacher, ``u2net predict``), because the mask of a crop is not always the crop of the mask.

    python train/make_closeup_crops.py --data runs/teacher/gcompris-train --out runs/closeups/images --per_photo 2
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def subject_box(mask: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the mask's pixels above threshold, or None when there are too few."""
    ys, xs = np.nonzero(mask >= threshold * 255)
    if len(xs) < 0.01 * mask.size:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def closeup_box(box: tuple[int, int, int, int], size: tuple[int, int], rng: random.Random) -> tuple[int, int, int, int]:
    """A square crop whose side is 55-105 % of the subject's longer side, around a jittered centre, in the image."""
    left, top, right, bottom = box
    width, height = size
    side = max(right - left, bottom - top) * rng.uniform(0.55, 1.05)
    side = int(min(max(side, 32), width, height))
    cx = (left + right) / 2 + rng.uniform(-0.15, 0.15) * side
    cy = (top + bottom) / 2 + rng.uniform(-0.25, 0.1) * side  # faces and heads sit high in the subject
    x0 = int(min(max(cx - side / 2, 0), width - side))
    y0 = int(min(max(cy - side / 2, 0), height - side))
    return x0, y0, x0 + side, y0 + side


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder with images/ and masks/ (same stems)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write the crops to (JPEG)")
    parser.add_argument("--per_photo", type=int, default=2)
    parser.add_argument("--min_side", type=int, default=160, help="skip crops smaller than this (pixels)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    masks = {p.stem: p for p in (args.data / "masks").glob("*.png")}
    images = sorted(p for p in (args.data / "images").iterdir() if p.stem in masks)
    if not images:
        sys.exit(f"error: no image of {args.data}/images has a mask in {args.data}/masks")
    args.out.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    for path in images:
        rng = random.Random(f"{args.seed}-{path.stem}")
        image = Image.open(path).convert("RGB")
        mask = np.asarray(Image.open(masks[path.stem]).convert("L").resize(image.size, Image.BILINEAR))
        box = subject_box(mask)
        if box is None:
            skipped += 1
            continue
        for index in range(args.per_photo):
            crop = closeup_box(box, image.size, rng)
            if crop[2] - crop[0] < args.min_side:
                skipped += 1
                continue
            image.crop(crop).save(args.out / f"{path.stem}-closeup{index}.jpg", quality=92)
            written += 1
    print(f"wrote {written} close-ups to {args.out} ({skipped} skipped: no subject or too small)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
