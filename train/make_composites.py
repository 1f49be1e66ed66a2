"""Copy-paste composites on real photographs, mixed with the built-in synthetic scenes, written as a folder.

Why: the demo model learnt "object on a procedural texture"; on real photographs its masks are soft and
it fails on cluttered scenes. A composite puts the salient objects of the synthetic scenes (exact masks)
on a random crop of a real photograph (from the training pool of train/fetch_photos.sh), so the
background statistics are those of real photos while the mask stays exact. Half of the objects keep
their synthetic look; the other half are filled with a crop of another real photograph (real colour and
texture statistics inside the mask, with a shading ramp). Backgrounds are cropped at random scale and
aspect, flipped, colour-jittered, sometimes defocused; objects may cast a soft shadow (not salient); the
image gets camera gain/noise and JPEG compression. Plain synthetic scenes are mixed in so the synthetic
quality is kept.

Every output is a deterministic function of (seed, index, size) and the installed Pillow/scikit-image.
    usage: python train/make_composites.py --photos runs/photos/train --out runs/composites-160 \
        --num_composites 8000 --num_synthetic 4000 --size 160
Writes OUT/images/*.jpg and OUT/masks/*.png (a folder `--train_data_dir` reads).
"""

from __future__ import annotations

import argparse
import math
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy import ndimage
from tqdm.auto import tqdm

from u2net_hub.data import render_synthetic_sample

OBJECT_SEED = 7  # the synthetic scenes whose objects are pasted (training itself uses seed 0, validation 1)
PHOTO_FILL_P = 0.5
SHADOW_P = 0.3
DEFOCUS_P = 0.5
NOISE_P = 0.4

_PHOTOS: list[Path] = []


@lru_cache(maxsize=64)
def _photo(index: int) -> Image.Image:
    return Image.open(_PHOTOS[index]).convert("RGB")


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


def _jitter(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Color(image).enhance(0.0 if rng.random() < 0.05 else rng.uniform(0.6, 1.4))
    return image


def _blur(alpha: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray((np.clip(alpha, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255


def render_composite(seed: int, index: int, size: int) -> tuple[Image.Image, Image.Image]:
    """Composite `index` of set `seed`: (RGB image, L mask), size x size."""
    rng = np.random.default_rng([seed, index])
    n = len(_PHOTOS)
    background_index = int(rng.integers(n))
    background = _jitter(rng, _crop(rng, _photo(background_index), size, 0.2))
    if rng.random() < DEFOCUS_P:
        background = background.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 2.5) * size / 160))
    bg = np.asarray(background, dtype=np.float32) / 255

    obj_image, obj_mask = render_synthetic_sample(int(rng.integers(2**31)), size=size, seed=OBJECT_SEED)
    alpha = np.asarray(obj_mask, dtype=np.float32) / 255
    if rng.random() < PHOTO_FILL_P:
        fill_index = (background_index + 1 + int(rng.integers(n - 1))) % n
        fill_photo = _jitter(rng, _crop(rng, _photo(fill_index), size, 0.1))
        fill = np.asarray(fill_photo, dtype=np.float32) / 255
        angle = rng.uniform(0, 2 * math.pi)
        x = np.linspace(-1, 1, size, dtype=np.float32)
        ramp = np.clip(0.5 + 0.5 * (x[None, :] * math.cos(angle) + x[:, None] * math.sin(angle)), 0, 1)
        fill = fill * (1 - rng.uniform(0, 0.35) * ramp)[..., None]
    else:
        fill = np.asarray(obj_image, dtype=np.float32) / 255
    # Keep every object visible: pull its mean colour away from the background's mean around it.
    labels, count = ndimage.label(alpha > 0.02)
    wanted = rng.uniform(0.2, 0.4)
    for component in range(1, count + 1):
        weight = alpha * (labels == component)
        total = float(weight.sum())
        if total < 1:
            continue
        ring = np.clip(_blur(weight, size * 0.05) * 3, 0, 1) * (1 - alpha)
        fg_mean = (fill * weight[..., None]).sum((0, 1)) / total
        bg_mean = (bg * ring[..., None]).sum((0, 1)) / max(float(ring.sum()), 1e-3)
        gap = fg_mean - bg_mean
        distance = float(np.linalg.norm(gap))
        if distance < wanted:
            direction = gap / distance if distance > 1e-3 else np.full(3, 1 / math.sqrt(3)) * (
                -1 if bg_mean.mean() > 0.5 else 1)
            target = bg_mean + direction * wanted
            if np.any(target < 0) or np.any(target > 1):
                target = bg_mean - direction * wanted
            shift = (np.clip(target, 0, 1) - fg_mean).astype(np.float32)
            inside = (labels == component)[..., None]
            fill = np.where(inside, np.clip(fill + shift, 0, 1), fill)
    if rng.random() < SHADOW_P:
        dx, dy = (rng.normal(0, 0.04, 2) * size).astype(int)
        shadow = np.roll(alpha, (dy, dx), axis=(0, 1))
        shadow = _blur(shadow, size * rng.uniform(0.01, 0.04))
        bg = bg * (1 - rng.uniform(0.2, 0.5) * shadow)[..., None]
    image = fill * alpha[..., None] + bg * (1 - alpha[..., None])
    image = image * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04)
    if rng.random() < NOISE_P:
        image = image + rng.normal(0, rng.uniform(0.004, 0.02), image.shape).astype(np.float32)
    out = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out, obj_mask


def background_name(seed: int, index: int) -> str:
    """The stem of the photograph composite `index` of set `seed` is drawn on (its first random draw)."""
    return _PHOTOS[int(np.random.default_rng([seed, index]).integers(len(_PHOTOS)))].stem


def _write(job) -> None:
    kind, seed, index, size, out, quality = job
    if kind == "composite":
        image, mask = render_composite(seed, index, size)
        name = f"c{index:06d}"
    else:
        image, mask = render_synthetic_sample(index, size=size, seed=seed)
        name = f"s{index:06d}"
    image.save(out / "images" / f"{name}.jpg", quality=quality)
    mask.save(out / "masks" / f"{name}.png")


def _init(photos: list[Path]) -> None:
    _PHOTOS[:] = photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="folder of training photographs (*.jpg)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num_composites", type=int, default=8000)
    parser.add_argument("--num_synthetic", type=int, default=4000, help="plain synthetic scenes (seed 0)")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--exclude_backgrounds", nargs="*", default=[], metavar="NAME",
                        help="skip the composites drawn on these photos (stems); they still serve as fills")
    args = parser.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))
    if len(photos) < 2:
        raise SystemExit(f"error: {args.photos}: need at least 2 photographs (*.jpg); run train/fetch_photos.sh")
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    quality_rng = np.random.default_rng(args.seed + 1)
    _init(photos)
    unknown = set(args.exclude_backgrounds) - {p.stem for p in photos}
    if unknown:
        raise SystemExit(f"error: --exclude_backgrounds: no such photo in {args.photos}: {sorted(unknown)}")
    jobs = [("composite", args.seed, i, args.size, args.out, int(quality_rng.integers(75, 96)))
            for i in range(args.num_composites)]
    jobs = [job for job in jobs if background_name(args.seed, job[2]) not in args.exclude_backgrounds]
    jobs += [("synthetic", 0, i, args.size, args.out, 95) for i in range(args.num_synthetic)]
    with Pool(args.workers, initializer=_init, initargs=(photos,)) as pool:
        for _ in tqdm(pool.imap_unordered(_write, jobs, chunksize=32), total=len(jobs), desc="composites"):
            pass
    print(f"wrote {len(jobs)} images to {args.out} ({len(jobs) - args.num_synthetic} composites on "
          f"{len(photos) - len(args.exclude_backgrounds)} background photos ({len(photos)} as fills), "
          f"{args.num_synthetic} synthetic scenes)")


if __name__ == "__main__":
    main()
