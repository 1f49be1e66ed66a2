"""Pseudo-labels for self-training: the model's masks on unlabelled real photos, refined and filtered.

Why: composites of cut-outs on wallpapers taught the demo model what it knows, but real photographs differ in
ways a composite cannot fake (light, depth of field, the subject standing *in* the scene). Self-training puts
real photographs into training: the model labels them, a classical segmentation snaps the labels to the
image's edges, and only the labels the model is sure of are kept.

For each photo: the model's probability map (with its test-time mirror averaging); pixels above ``--sure`` (eroded)
seed the subject and pixels below ``1 - --sure`` (eroded) seed the background; a random walker on the photo
(scikit-image; it solves only for the unseeded pixels, a thin band, so it is fast) decides the band by colour.
A photo is kept when its label is confident: the subject covers 2 % to ``--max_subject`` of the frame, the
uncertain band is small next to the subject, and the random walker agrees with the model (IoU). ``--exclude``
drops photos a person rejected on the contact sheet (OUT/sheet.png, written for that check: photo, label
outline in green where kept, red where not) and photos of scenes rather than objects.
    usage: python train/make_pseudo_labels.py --photos runs/gcompris --out runs/pseudo-gcompris
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

MAX_SIDE = 400


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def refine(photo: Image.Image, probability: np.ndarray, sure: float) -> tuple[np.ndarray, dict]:
    """Random walker seeded by the model's sure pixels; returns a bool mask and its confidence figures."""
    from scipy import ndimage
    from skimage.segmentation import random_walker

    radius = max(1, round(min(photo.size) / 160))
    subject = ndimage.binary_erosion(probability > sure, _disk(radius))
    background = ndimage.binary_erosion(probability < 1 - sure, _disk(radius))
    model_mask = probability > 0.5
    figures = {"subject": float(model_mask.mean()),
               "band": float((~subject & ~background).sum() / max(1, model_mask.sum()))}
    if not subject.any() or not background.any():
        figures["iou"] = 0.0
        return model_mask, figures
    labels = np.zeros(probability.shape, np.int32)
    labels[subject] = 1
    labels[background] = 2
    data = np.asarray(photo, dtype=np.float64) / 255
    with warnings.catch_warnings():  # at tol 1e-3 a few probabilities stray outside [0, 1]; only the labels count
        warnings.filterwarnings("ignore", message="The probability range is outside")
        walked = random_walker(data, labels, beta=250, mode="cg_j", tol=1e-3, channel_axis=-1) == 1
    union = (walked | model_mask).sum()
    figures["iou"] = float((walked & model_mask).sum() / max(1, union))
    return walked, figures


def confident(figures: dict, min_iou: float, max_band: float, max_subject: float = 0.8) -> bool:
    return 0.02 <= figures["subject"] <= max_subject and figures["band"] <= max_band and figures["iou"] >= min_iou


def sheet(rows: list[tuple[str, Image.Image, np.ndarray, bool]], path: Path, tile: int = 160, columns: int = 8) -> None:
    """Each photo with its label's outline (green: kept, red: rejected) and its name, to check by eye."""
    from scipy import ndimage

    canvas = Image.new("RGB", (columns * tile, -(-len(rows) // columns) * (tile + 12)), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (name, photo, mask, kept) in enumerate(rows):
        view = np.asarray(photo).copy()
        edge = mask ^ ndimage.binary_erosion(mask, _disk(max(1, round(min(photo.size) / 120))))
        view[edge] = (0, 255, 0) if kept else (255, 0, 0)
        small = Image.fromarray(view)
        small.thumbnail((tile, tile))
        x, y = (index % columns) * tile, (index // columns) * (tile + 12)
        canvas.paste(small, (x, y))
        draw.text((x + 2, y + tile), name, fill="black")
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled demo model)")
    parser.add_argument("--sure", type=float, default=0.9, help="probability that seeds the subject")
    parser.add_argument("--min_iou", type=float, default=0.9, help="least agreement of random walker and model")
    parser.add_argument("--max_band", type=float, default=0.6,
                        help="most unseeded pixels, as a share of the subject's")
    parser.add_argument("--max_subject", type=float, default=0.8,
                        help="largest share of the frame the subject may cover (an object, not a scene)")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="PATTERN",
                        help="photo names (stems, or shell patterns such as 'explore_monuments-*') to leave out: "
                             "rejected by eye on the contact sheet, or not of an object")
    args = parser.parse_args(argv)

    import torch

    from u2net_hub import DEMO_MODEL, U2Net, predict

    torch.set_num_threads(2)
    model = U2Net.from_pretrained(args.model or DEMO_MODEL).eval()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not photos:
        print(f"error: no photos in {args.photos}", file=sys.stderr)
        return 2
    for sub in ("images", "masks"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    rows, record = [], {}
    for path in tqdm(photos, desc="pseudo-labels", unit="photo"):
        photo = Image.open(path).convert("RGB")
        photo.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        probability = predict(model, photo, sides=False).probability
        mask, figures = refine(photo, probability, args.sure)
        excluded = any(fnmatch.fnmatchcase(path.stem, pattern) for pattern in args.exclude)
        kept = confident(figures, args.min_iou, args.max_band, args.max_subject) and not excluded
        record[path.stem] = {**figures, "kept": kept}
        rows.append((path.stem, photo, mask, kept))
        if kept:
            photo.save(args.out / "images" / f"{path.stem}.jpg", quality=95)
            soft = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
            soft.save(args.out / "masks" / f"{path.stem}.png")
    sheet(rows, args.out / "sheet.png")
    (args.out / "labels.json").write_text(json.dumps(record, indent=1))
    print(f"{sum(r['kept'] for r in record.values())} of {len(record)} photos kept in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
