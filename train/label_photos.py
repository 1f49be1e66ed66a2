"""Hand-drawn outlines of real photos, snapped to the photo's edges: images/ + masks/ for training.

Why: the demo model learnt saliency from composites and its own confident masks, and both left it weak on real
photographs; what it lacks is real photos labelled by someone who looked at them. An outline drawn by eye (a
polygon per subject, holes where the background shows through) is quick to write but only as precise as the
eye; a random walker then moves the edge to the photo's own edge within a thin band around the outline (sure
subject inside the band, sure background outside it), so the mask follows fur and handles the outline missed.

Labels are JSON files in one folder (several labellers can each write their own), mapping a photo's name (its
file name without the extension) to either

    {"subject": [[[x, y], ...], ...], "holes": [[[x, y], ...]], "band": 0.025, "note": "a red hammer"}

with points in fractions of the width and height (0,0 top left), or {"skip": "why"} for a photo with no
single salient subject. With --validation_every N, one photo in N (chosen by a hash of its name, so the split
does not move when labels are added) goes to OUT/validation/ instead of OUT/train/ (each with images/ and
masks/), to be measured on and never trained on. Each built photo gets OUT/check/NAME.png: the photo beside the mask overlay (the
background darkened, the outline drawn in green), for checking by eye.
    usage: python train/label_photos.py --photos runs/gcompris --labels train/labels --out runs/gcompris-labelled
           python train/label_photos.py --photos runs/gcompris --grid categorization-000   # a photo with a 0.1 grid
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_real_validation import overlay, soft_edge, walk  # noqa: E402  (the validation set's walker)

MAX_SIDE = 400
DEFAULT_BAND = 0.025  # half-width of the band the edge may move in, as a fraction of the longer side


def load_labels(source: Path) -> dict[str, dict]:
    """All labels of a JSON file, or of a folder's JSON files; a photo labelled twice is an error."""
    labels: dict[str, dict] = {}
    for path in [source] if source.is_file() else sorted(source.glob("*.json")):
        for name, label in json.loads(path.read_text()).items():
            if name in labels:
                raise SystemExit(f"error: {name} is labelled twice (second time in {path})")
            if "skip" not in label and not label.get("subject"):
                raise SystemExit(f"error: {name} in {path} has neither 'subject' polygons nor 'skip'")
            labels[name] = label
    return labels


def find_photo(photos: Path, name: str) -> Path:
    matches = [p for p in photos.glob(name + ".*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}]
    if not matches:
        raise SystemExit(f"error: no photo named {name} in {photos}")
    return matches[0]


def load_photo(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def _pixels(polygon: list, size: tuple[int, int]) -> list[tuple[float, float]]:
    w, h = size
    return [(x * (w - 1), y * (h - 1)) for x, y in polygon]


def _fill(size: tuple[int, int], polygons: list) -> np.ndarray:
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 3:
            draw.polygon(_pixels(polygon, size), fill=255)
    return np.asarray(canvas) > 0


def outline_mask(size: tuple[int, int], label: dict) -> np.ndarray:
    """The outline as drawn: the subject polygons less the holes."""
    return _fill(size, label["subject"]) & ~_fill(size, label.get("holes", []))


def snap(image: Image.Image, outline: np.ndarray, band: float) -> np.ndarray:
    """Random walker in a band around the outline; returns a uint8 mask with a one-pixel soft edge."""
    from scipy import ndimage

    radius = max(2, round(band * max(image.size)))
    structure = ndimage.generate_binary_structure(2, 1)
    sure_subject = ndimage.binary_erosion(outline, structure, iterations=radius)
    sure_background = ~ndimage.binary_dilation(outline, structure, iterations=radius)
    if not sure_subject.any():  # a subject thinner than the band: the outline less its edge pixels is the seed
        sure_subject = outline & ~ndimage.binary_dilation(~outline, structure, iterations=1)
    labels = np.zeros(outline.shape, np.int32)
    labels[sure_background] = 2
    labels[sure_subject] = 1
    if not (labels == 1).any() or not (labels == 2).any():  # nothing to walk between: the outline as drawn
        return soft_edge(outline)
    return walk(image, labels)


def check_sheet(image: Image.Image, mask: np.ndarray, label: dict) -> Image.Image:
    """The photo and, beside it, the subject kept with the background darkened and the outline in green."""
    over = Image.fromarray(np.clip(overlay(image, mask), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(over)
    w, h = image.size
    for polygon in label["subject"] + label.get("holes", []):
        points = _pixels(polygon, image.size)
        draw.line(points + points[:1], fill=(0, 255, 0), width=1)
    sheet = Image.new("RGB", (2 * w + 4, h), "white")
    sheet.paste(image, (0, 0))
    sheet.paste(over, (w + 4, 0))
    return sheet


def grid(image: Image.Image) -> Image.Image:
    """The photo, doubled in size, with a labelled line every 0.1 of the width and height, to read positions."""
    big = image.resize((image.width * 2, image.height * 2), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(big)
    w, h = big.size
    for i in range(1, 10):
        f = i / 10
        draw.line([(f * (w - 1), 0), (f * (w - 1), h)], fill=(255, 255, 0), width=1)
        draw.line([(0, f * (h - 1)), (w, f * (h - 1))], fill=(255, 255, 0), width=1)
        draw.text((f * (w - 1) + 2, 2), f"{f:.1f}", fill=(255, 0, 0))
        draw.text((2, f * (h - 1) + 2), f"{f:.1f}", fill=(255, 0, 0))
    return big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--labels", type=Path, default=Path("train/labels"), help="a label JSON file or a folder of them")
    parser.add_argument("--out", type=Path, default=Path("runs/gcompris-labelled"))
    parser.add_argument("--only", nargs="*", help="names to (re)build; default all labelled photos")
    parser.add_argument("--validation_every", type=int, default=0, metavar="N",
                        help="hold out one photo in N (by a hash of its name) in OUT/validation/; 0: none, "
                             "and images/ and masks/ go straight into OUT")
    parser.add_argument("--grid", nargs="*", metavar="NAME",
                        help="only write OUT/grid/NAME.png (the photo with a coordinate grid) for these photos")
    args = parser.parse_args()
    if args.grid:
        (args.out / "grid").mkdir(parents=True, exist_ok=True)
        for name in args.grid:
            grid(load_photo(find_photo(args.photos, name))).save(args.out / "grid" / f"{name}.png")
            print(f"wrote {args.out / 'grid' / (name + '.png')}")
        return
    labels = load_labels(args.labels)
    (args.out / "check").mkdir(parents=True, exist_ok=True)

    def pool(name: str) -> Path:
        if args.validation_every <= 0:
            return args.out
        digest = int(hashlib.md5(name.encode()).hexdigest(), 16)
        return args.out / ("validation" if digest % args.validation_every == 0 else "train")

    names = args.only or sorted(labels)
    missing = [n for n in names if n not in labels]
    if missing:
        sys.exit(f"error: no label for {', '.join(missing)}")
    built = skipped = 0
    for name in names:
        label, folder = labels[name], pool(name)
        if "skip" in label:
            skipped += 1
            for sub in ("images", "masks"):
                (folder / sub / f"{name}.png").unlink(missing_ok=True)
            continue
        image = load_photo(find_photo(args.photos, name))
        mask = snap(image, outline_mask(image.size, label), float(label.get("band", DEFAULT_BAND)))
        for sub in ("images", "masks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        image.save(folder / "images" / f"{name}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")
        check_sheet(image, mask, label).save(args.out / "check" / f"{name}.png")
        built += 1
        print(f"{name}: {image.size[0]}x{image.size[1]}, subject {mask.mean() / 255:.1%} of the frame")
    print(f"built {built} masks, skipped {skipped} photos, in {args.out}")


if __name__ == "__main__":
    main()
