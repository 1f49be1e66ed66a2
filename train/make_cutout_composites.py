"""Composites of real object cut-outs on real photographs, mixed with the built-in synthetic scenes, as a folder.

Why: composites of *synthetic* shapes on real photos did not teach the demo model what a real salient object
looks like (docs/demo-model.md: real-photo maxF fell from 0.486 to 0.402). Here the objects are real: Tux Paint's
hand-cut photographs of animals, food, plants, vehicles and household things (train/fetch_cutouts.sh), with
exact alpha, so the mask of every composite is exact. Each image puts 1-3 of them, large and near the centre
as in the photos of salient-object datasets, on a random crop of a training photograph
(train/fetch_photos.sh), with what makes a photo: defocused backgrounds, a contact shadow, light matched to the
scene, small blurred clutter that is not salient, camera gain, noise and JPEG compression. Plain synthetic
scenes are mixed in so the synthetic quality is kept.

Every output is a deterministic function of (seed, index, size) and the installed Pillow.
    usage: python train/make_cutout_composites.py --photos runs/photos/train --cutouts runs/cutouts/train \
        --out runs/cutout-composites-160 --num_composites 12000 --num_synthetic 3000 --size 160
Writes OUT/images/*.jpg and OUT/masks/*.png (a folder `--train_data_dir` and `u2net evaluate` read).
"""

from __future__ import annotations

import argparse
import math
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from tqdm.auto import tqdm

from u2net_hub.data import render_synthetic_sample

OBJECT_COUNTS, OBJECT_COUNT_P = (1, 2, 3), (0.7, 0.22, 0.08)
CARTOON_P = 0.15  # share of objects drawn from the cartoon stamps
DEFOCUS_P = 0.6
CLUTTER_P = 0.3
SHADOW_P = 0.4
LIGHT_MATCH_P = 0.6
NOISE_P = 0.4

_PHOTOS: list[Path] = []
_CUTOUTS: list[Path] = []
_CARTOONS: list[Path] = []


def _init(photos: list[Path], cutouts: list[Path], cartoons: list[Path]) -> None:
    _PHOTOS[:], _CUTOUTS[:], _CARTOONS[:] = photos, cutouts, cartoons


@lru_cache(maxsize=48)
def _photo(index: int) -> Image.Image:
    return Image.open(_PHOTOS[index]).convert("RGB")


@lru_cache(maxsize=1024)
def _stamp(path: Path) -> Image.Image:
    return Image.open(path).convert("RGBA")


def _crop(rng: np.random.Generator, photo: Image.Image, size: int, min_scale: float) -> Image.Image:
    """A random square-ish crop of `photo` (min_scale..1 of its shorter side), resized to size x size."""
    w, h = photo.size
    side = min(w, h) * rng.uniform(min_scale, 1.0)
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    cw, ch = min(w, side * aspect), min(h, side / aspect)
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    crop = photo.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch),
                        reducing_gap=2.0)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return crop


def _jitter(rng: np.random.Generator, image: Image.Image, strength: float = 0.3) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(1 - strength, 1 + strength))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(1 - strength, 1 + strength))
    return ImageEnhance.Color(image).enhance(0.0 if rng.random() < 0.04 else rng.uniform(0.6, 1.4))


def _blur(alpha: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray((np.clip(alpha, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255


def _object(rng: np.random.Generator, longest: float) -> tuple[np.ndarray, np.ndarray]:
    """A cut-out (RGB float, alpha float) flipped, maybe rotated, jittered, scaled to `longest` px."""
    pool = _CARTOONS if _CARTOONS and rng.random() < CARTOON_P else _CUTOUTS
    stamp = _stamp(pool[int(rng.integers(len(pool)))])
    box = stamp.getchannel("A").getbbox() or (0, 0, *stamp.size)
    stamp = stamp.crop(box)
    if rng.random() < 0.5:
        stamp = stamp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.3:
        stamp = stamp.rotate(rng.uniform(-20, 20), Image.Resampling.BILINEAR, expand=True)
    scale = longest / max(stamp.size)
    stamp = stamp.resize((max(2, round(stamp.width * scale)), max(2, round(stamp.height * scale))),
                         Image.Resampling.LANCZOS)
    rgb = _jitter(rng, stamp.convert("RGB"), 0.2)
    alpha = np.asarray(stamp.getchannel("A"), dtype=np.float32) / 255
    return np.asarray(rgb, dtype=np.float32) / 255, alpha


def _place(canvas_alpha: np.ndarray, alpha: np.ndarray, x: int, y: int) -> np.ndarray:
    """`alpha` pasted at (x, y) (top-left, may overhang) into a zero map the shape of `canvas_alpha`."""
    out = np.zeros_like(canvas_alpha)
    h, w = alpha.shape
    H, W = canvas_alpha.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    return out


def _paste(image: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int) -> np.ndarray:
    """(image with the object over it, the object's alpha on the canvas)."""
    a = _place(image[..., 0], alpha, x, y)
    colour = np.zeros_like(image)
    for c in range(3):
        colour[..., c] = _place(image[..., 0], rgb[..., c], x, y)
    return image * (1 - a[..., None]) + colour * a[..., None], a


def render_composite(seed: int, index: int, size: int) -> tuple[Image.Image, Image.Image]:
    """Composite `index` of set `seed`: (RGB image, L mask), size x size."""
    rng = np.random.default_rng([seed, index])
    background = _jitter(rng, _crop(rng, _photo(int(rng.integers(len(_PHOTOS)))), size, 0.15))
    defocus = rng.uniform(0.6, 4.0) * size / 160 if rng.random() < DEFOCUS_P else 0.0
    if defocus:
        background = background.filter(ImageFilter.GaussianBlur(defocus))
    image = np.asarray(background, dtype=np.float32) / 255
    # Clutter: small, faded, defocused objects that belong to the background (not salient).
    if rng.random() < CLUTTER_P:
        for _ in range(int(rng.integers(1, 3))):
            rgb, alpha = _object(rng, size * rng.uniform(0.08, 0.22))
            radius = max(defocus, 1.2 * size / 160)
            rgb = np.asarray(Image.fromarray((rgb * 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255
            rgb = rgb * 0.5 + image.mean((0, 1)) * 0.5
            alpha = _blur(alpha, radius) * rng.uniform(0.5, 0.9)
            x, y = rng.integers(-alpha.shape[1] // 2, size - alpha.shape[1] // 2, 2)
            image, _ = _paste(image, rgb, alpha, int(x), int(y))
    mask = np.zeros(image.shape[:2], np.float32)
    count = int(rng.choice(OBJECT_COUNTS, p=OBJECT_COUNT_P))
    main = size * rng.uniform(0.3, 0.95)
    for k in range(count):
        longest = main if k == 0 else main * rng.uniform(0.35, 0.85)
        rgb, alpha = _object(rng, longest)
        h, w = alpha.shape
        if k == 0:  # near the centre, as in salient-object photos; sometimes cut by the frame
            cx, cy = rng.normal(size / 2, size * 0.12, 2)
        else:
            cx, cy = rng.uniform(0.1, 0.9, 2) * size
        x, y = int(cx - w / 2), int(cy - h / 2)
        if rng.random() < LIGHT_MATCH_P:  # pull the object's light toward the scene's
            weight = alpha[..., None]
            object_mean = (rgb * weight).sum((0, 1)) / max(float(alpha.sum()), 1.0)
            gain = (image.mean((0, 1)) + 0.05) / (object_mean + 0.05)
            rgb = np.clip(rgb * (1 + rng.uniform(0, 0.35) * (gain - 1)), 0, 1)
        if rng.random() < SHADOW_P:
            shadow = _place(mask, alpha, x + int(rng.normal(0, 0.03) * size), y + int(abs(rng.normal(0.02, 0.02)) * size))
            shadow = _blur(shadow, size * rng.uniform(0.01, 0.04))
            image = image * (1 - rng.uniform(0.2, 0.5) * shadow)[..., None]
        if rng.random() < 0.3:  # slightly soft object edges (motion, focus, resampling)
            alpha = _blur(alpha, rng.uniform(0.3, 0.8) * size / 160)
        image, placed = _paste(image, rgb, alpha, x, y)
        mask = placed + mask * (1 - placed)
    image = image * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04)
    if rng.random() < NOISE_P:
        image = image + rng.normal(0, rng.uniform(0.004, 0.02), image.shape).astype(np.float32)
    out = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out, Image.fromarray((np.clip(mask, 0, 1) * 255 + 0.5).astype(np.uint8))


def _write(job) -> None:
    kind, seed, index, size, out, quality = job
    if kind == "composite":
        image, mask = render_composite(seed, index, size)
        name = f"c{seed}-{index:06d}"
    else:
        image, mask = render_synthetic_sample(index, size=size, seed=seed)
        name = f"s{index:06d}"
    image.save(out / "images" / f"{name}.jpg", quality=quality)
    mask.save(out / "masks" / f"{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="folder of background photographs (*.jpg)")
    parser.add_argument("--cutouts", type=Path, required=True, help="folder of RGBA cut-outs (*.png)")
    parser.add_argument("--cartoons", type=Path, help="folder of drawn RGBA cut-outs, %d%% of the objects"
                        % round(CARTOON_P * 100))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num_composites", type=int, default=12000)
    parser.add_argument("--num_synthetic", type=int, default=3000, help="plain synthetic scenes (seed 0)")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--exclude_backgrounds", nargs="*", default=[], metavar="NAME",
                        help="photos (stems) never used as backgrounds, e.g. those full of objects")
    args = parser.parse_args()
    photos = [p for p in sorted(args.photos.glob("*.jpg")) if p.stem not in args.exclude_backgrounds]
    unknown = set(args.exclude_backgrounds) - {p.stem for p in args.photos.glob("*.jpg")}
    if unknown:
        raise SystemExit(f"error: --exclude_backgrounds: no such photo in {args.photos}: {sorted(unknown)}")
    cutouts = sorted(args.cutouts.glob("*.png"))
    cartoons = sorted(args.cartoons.glob("*.png")) if args.cartoons else []
    if not photos or not cutouts:
        raise SystemExit(f"error: need photographs in {args.photos} (train/fetch_photos.sh) and cut-outs in "
                         f"{args.cutouts} (train/fetch_cutouts.sh)")
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    quality_rng = np.random.default_rng(args.seed + 1)
    jobs = [("composite", args.seed, i, args.size, args.out, int(quality_rng.integers(75, 96)))
            for i in range(args.num_composites)]
    jobs += [("synthetic", 0, i, args.size, args.out, 95) for i in range(args.num_synthetic)]
    with Pool(args.workers, initializer=_init, initargs=(photos, cutouts, cartoons)) as pool:
        for _ in tqdm(pool.imap_unordered(_write, jobs, chunksize=32), total=len(jobs), desc="composites"):
            pass
    print(f"wrote {len(jobs)} images to {args.out}: {args.num_composites} composites of {len(cutouts)} cut-outs"
          f" (+{len(cartoons)} drawn) on {len(photos)} photos, {args.num_synthetic} synthetic scenes")


if __name__ == "__main__":
    main()
