"""Composites of real object cut-outs on real photographs, mixed with the built-in synthetic scenes, as a folder.

Why: composites of *synthetic* shapes on real photos did not teach the demo model what a real salient object looks
like (docs/demo-model-journal.md, session 4: real-photo maxF fell from 0.486 to 0.402). Here the objects are real:
Tux Paint's hand-cut photographs of animals, food, plants, vehicles and household things (train/fetch_cutouts.sh),
with exact alpha, so the mask of every composite is exact. Each image puts 1-3 of them, large and near the centre as
in the photos of salient-object datasets, on a random crop of a training photograph (train/fetch_photos.sh), with
what makes a photo: defocused backgrounds, a contact shadow, light matched to the scene, small blurred clutter that
is not salient, camera gain, noise and JPEG compression. Optional shares add drawn people (--figures), close-ups
whose subject runs out of the frame (--closeups) and sharp, unmasked objects at the frame's edges (--distractors),
and busy scenes: a sharp backdrop with in-focus objects anywhere behind the subject (--busy). Plain synthetic scenes
are mixed in so the synthetic quality is kept.

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
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from tqdm.auto import tqdm

from u2net_hub.data import render_synthetic_sample

OBJECT_COUNTS, OBJECT_COUNT_P = (1, 2, 3), (0.7, 0.22, 0.08)
CARTOON_P = 0.15  # share of objects drawn from the cartoon stamps
DEFOCUS_P = 0.6
CLUTTER_P = 0.3
SHADOW_P = 0.4
LIGHT_MATCH_P = 0.6
NOISE_P = 0.4
FIGURE_P = 0.15  # default share of subjects that are drawn people (--figures)
CLOSEUP_P = 0.15  # default share of close-ups (--closeups): one subject larger than the frame, cut by it
DISTRACTOR_P = 0.35  # default share of scenes with sharp, unmasked objects at the edges (--distractors)
BUSY_P = 0.2  # suggested share of busy scenes (--busy; 0.5 failed): a sharp backdrop with in-focus objects behind the subject

_PHOTOS: list[Path] = []
_CUTOUTS: list[Path] = []
_CARTOONS: list[Path] = []
# Shares set by _init. At 0 a share draws nothing from the random stream, so the data of a recipe that does not
# use it is the same image for image as before it existed.
_SHARES = {"figures": 0.0, "closeups": 0.0, "distractors": 0.0, "busy": 0.0}


def _init(photos: list[Path], cutouts: list[Path], cartoons: list[Path], figures: float = 0.0,
          closeups: float = 0.0, distractors: float = 0.0, busy: float = 0.0) -> None:
    _PHOTOS[:], _CUTOUTS[:], _CARTOONS[:] = photos, cutouts, cartoons
    _SHARES.update(figures=figures, closeups=closeups, distractors=distractors, busy=busy)


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


def _blur_colour(rgb: np.ndarray, radius: float) -> np.ndarray:
    """An object's colours defocused like the background it stands in (truncated to 8 bits, as rendered)."""
    image = Image.fromarray((rgb * 255).astype(np.uint8))
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


# People: the stamps hold almost none, yet people are the most common subject of photographs. A drawn figure
# teaches the silhouette (a head over shoulders, cut by the bottom of the frame in a portrait; a standing
# body) with skin, hair and clothes; its alpha is exact by construction.
SKIN_TONES = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96), (160, 104, 70),
                       (112, 72, 48), (80, 52, 36)], np.float32) / 255
HAIR_TONES = np.array([(20, 16, 14), (60, 40, 28), (110, 74, 44), (170, 130, 80), (220, 196, 140),
                       (150, 150, 150), (120, 40, 20)], np.float32) / 255
SUPERSAMPLE = 3  # figures are drawn at 3x and reduced, so their edges are anti-aliased like a photo's


def _tone(rng: np.random.Generator, tones: np.ndarray) -> tuple[int, int, int]:
    i = rng.uniform(0, len(tones) - 1)
    low, t = int(i), i - int(i)
    colour = tones[low] * (1 - t) + tones[min(low + 1, len(tones) - 1)] * t
    colour = np.clip(colour * rng.uniform(0.85, 1.1), 0, 1)
    return tuple(int(c * 255) for c in colour)


def _clothes(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A fabric: a crop of a training photo (a pattern) or a plain colour, shaded top to bottom."""
    if _PHOTOS and rng.random() < 0.5:
        fabric = _jitter(rng, _crop(rng, _photo(int(rng.integers(len(_PHOTOS)))), max(w, h), 0.05), 0.4)
        fabric = fabric.resize((w, h), Image.Resampling.BILINEAR)
    else:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3) * rng.uniform(0.3, 1.0))
        fabric = Image.new("RGB", (w, h), colour)
    shade = np.linspace(rng.uniform(0.9, 1.15), rng.uniform(0.6, 0.95), h, dtype=np.float32)[:, None, None]
    return Image.fromarray(np.clip(np.asarray(fabric, np.float32) * shade, 0, 255).astype(np.uint8))


def _figure(rng: np.random.Generator, longest: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """A drawn person (RGB float, alpha float, whether it stands on the frame's bottom edge): a head and
    shoulders (a portrait, 60 %) or a standing body, `longest` px tall."""
    bust = rng.random() < 0.6
    H = max(8, int(longest)) * SUPERSAMPLE
    W = int(H * (rng.uniform(0.8, 1.05) if bust else rng.uniform(0.42, 0.55)))
    skin, hair = _tone(rng, SKIN_TONES), _tone(rng, HAIR_TONES)
    alpha = Image.new("L", (W, H), 0)
    body = Image.new("L", (W, H), 0)  # where the clothes are
    colour = Image.new("RGB", (W, H), skin)
    a, b, c = ImageDraw.Draw(alpha), ImageDraw.Draw(body), ImageDraw.Draw(colour)
    cx = W / 2 + rng.normal(0, 0.03) * W
    if bust:
        ry = H * rng.uniform(0.19, 0.24)
        rx, cy = ry * rng.uniform(0.72, 0.85), H * 0.08 + ry * 1.05
        shoulders = W * rng.uniform(0.42, 0.5)
        top = cy + ry * rng.uniform(1.15, 1.35)
        torso = (cx - shoulders, top, cx + shoulders, H * 1.6)
        radius = int(shoulders * rng.uniform(0.35, 0.6))
        neck = (cx - rx * 0.45, cy + ry * 0.5, cx + rx * 0.45, top + ry * 0.3)
        long_hair = rng.random() < 0.4
        if long_hair:  # behind the shoulders
            c.rounded_rectangle((cx - rx * 1.25, cy - ry * 0.6, cx + rx * 1.25, cy + ry * rng.uniform(1.4, 2.4)),
                                radius=int(rx * 0.8), fill=hair)
            a.rounded_rectangle((cx - rx * 1.25, cy - ry * 0.6, cx + rx * 1.25, cy + ry * 2.0), radius=int(rx * 0.8),
                                fill=255)
        for draw, fill in ((a, 255), (c, skin)):
            draw.rectangle(neck, fill=fill)
        for draw, fill in ((a, 255), (b, 255)):
            draw.rounded_rectangle(torso, radius=radius, fill=fill)
    else:
        ry = H * rng.uniform(0.055, 0.07)
        rx, cy = ry * 0.8, ry * 1.1
        shoulders = W * rng.uniform(0.3, 0.4)
        top, hips, feet = cy + ry * 1.2, H * rng.uniform(0.5, 0.56), H * 0.99
        limb = max(2, int(W * rng.uniform(0.11, 0.15)))
        legs = [((cx - shoulders * 0.45, hips), (cx - shoulders * 0.5 + rng.normal(0, 0.05) * W, feet)),
                ((cx + shoulders * 0.45, hips), (cx + shoulders * 0.5 + rng.normal(0, 0.05) * W, feet))]
        arms = [((cx + s * shoulders * 0.85, top + limb * 0.5),
                 (cx + s * (shoulders + rng.uniform(0.0, 0.15) * W), top + rng.uniform(0.28, 0.38) * H))
                for s in (-1, 1)]
        for draw, fill in ((a, 255), (b, 255)):
            draw.rounded_rectangle((cx - shoulders, top, cx + shoulders, hips + limb), radius=limb, fill=fill)
            for start, end in legs + arms:
                draw.line((start, end), fill=fill, width=limb, joint="curve")
        for start, end in arms:  # hands
            for draw, fill in ((a, 255), (c, skin)):
                draw.ellipse((end[0] - limb * 0.55, end[1] - limb * 0.3, end[0] + limb * 0.55, end[1] + limb * 0.8),
                             fill=fill)
        long_hair = False
    face = (cx - rx, cy - ry, cx + rx, cy + ry)
    for draw, fill in ((a, 255), (c, skin)):
        draw.ellipse(face, fill=fill)
    # Hair: a cap over the top of the head (longer sides with long hair); sometimes none.
    if rng.random() < 0.9:
        cap = (cx - rx * 1.08, cy - ry * 1.1, cx + rx * 1.08, cy + ry * (0.9 if long_hair else rng.uniform(0.0, 0.4)))
        for draw, fill in ((a, 255), (c, hair)):
            draw.chord(cap, 180, 360, fill=fill)
            draw.rectangle((cap[0], cy - ry * 0.2, cap[0] + rx * 0.25, cy + (ry * 0.8 if long_hair else 0)), fill=fill)
            draw.rectangle((cap[2] - rx * 0.25, cy - ry * 0.2, cap[2], cy + (ry * 0.8 if long_hair else 0)), fill=fill)
    # Eyes and a mouth, dark and small: enough for a face at this size.
    eye = max(1.0, rx * 0.12)
    for side in (-1, 1):
        ex, ey = cx + side * rx * 0.38, cy + ry * 0.02
        c.ellipse((ex - eye, ey - eye * 0.7, ex + eye, ey + eye * 0.7), fill=(40, 30, 30))
    c.line(((cx - rx * 0.3, cy + ry * 0.5), (cx + rx * 0.3, cy + ry * 0.5)), fill=(120, 60, 60),
           width=max(1, int(eye * 0.8)))
    clothes = _clothes(rng, W, H)
    colour.paste(clothes, (0, 0), body)
    # Light from one side, so the figure is not flat.
    light = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.2), W, dtype=np.float32)
    if rng.random() < 0.5:
        light = light[::-1]
    size = (max(2, W // SUPERSAMPLE), max(2, H // SUPERSAMPLE))
    rgb = np.asarray(colour.resize(size, Image.Resampling.LANCZOS), np.float32) / 255
    rgb = np.clip(rgb * np.interp(np.linspace(0, W - 1, size[0]), np.arange(W), light)[None, :, None], 0, 1)
    alpha = np.asarray(alpha.resize(size, Image.Resampling.LANCZOS), np.float32) / 255
    return rgb, alpha, bust


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


def _distractors(rng: np.random.Generator, image: np.ndarray, main: float, defocus: float) -> np.ndarray:
    """1-3 sharp objects that are not salient: smaller than the subject, at the edges, often cut by the frame.

    Why: a busy photograph (a street behind a motorcycle, a room behind two dogs) is full of real, in-focus
    things the mask leaves out; the faded clutter alone taught the model that anything real and sharp is the
    subject."""
    size = image.shape[0]
    for _ in range(int(rng.integers(1, 4))):
        longest = min(size * rng.uniform(0.15, 0.45), main * 0.7)
        rgb, alpha = _object(rng, longest)
        if defocus:  # they stand in the background, so they share its focus
            rgb = _blur_colour(rgb, defocus * rng.uniform(0.3, 1.0))
            alpha = _blur(alpha, defocus * 0.5)
        h, w = alpha.shape
        edge = int(rng.integers(4))  # centred near one of the four sides, so at most half of it shows inside
        along, across = rng.uniform(0, size), rng.uniform(-0.1, 0.15) * size
        cx, cy = [(along, across), (along, size - across), (across, along), (size - across, along)][edge]
        image, _ = _paste(image, rgb, alpha, int(cx - w / 2), int(cy - h / 2))
    return image


def _busy(rng: np.random.Generator, image: np.ndarray, main: float) -> np.ndarray:
    """2-4 sharp objects anywhere behind the subject, clearly smaller than it, sometimes cut by the frame.

    Why: on a sharp, structured backdrop (tissue under a microscope, a table with a cup, pylons against the
    sky) the model marked the backdrop as object, because in its data only the subject was ever sharp. Tried at a
    share of 0.5 (session 8, docs/demo-model-journal.md), it taught the reverse shortcut (skies and defocused
    grounds marked), so it is not in the recipe."""
    size = image.shape[0]
    for _ in range(int(rng.integers(2, 5))):
        rgb, alpha = _object(rng, main * rng.uniform(0.25, 0.6))
        h, w = alpha.shape
        x, y = rng.integers(-w // 2, size - w // 2), rng.integers(-h // 2, size - h // 2)
        image, _ = _paste(image, rgb, alpha, int(x), int(y))
    return image


def render_composite(seed: int, index: int, size: int) -> tuple[Image.Image, Image.Image]:
    """Composite `index` of set `seed`: (RGB image, L mask), size x size."""
    rng = np.random.default_rng([seed, index])
    busy = _SHARES["busy"] > 0 and rng.random() < _SHARES["busy"]
    # A busy scene's backdrop is cropped at most 2.5x magnified, so it keeps the photo's own sharpness.
    background = _jitter(rng, _crop(rng, _photo(int(rng.integers(len(_PHOTOS)))), size, 0.4 if busy else 0.15))
    defocus = rng.uniform(0.6, 4.0) * size / 160 if rng.random() < DEFOCUS_P and not busy else 0.0
    if defocus:
        background = background.filter(ImageFilter.GaussianBlur(defocus))
    image = np.asarray(background, dtype=np.float32) / 255
    # Clutter: small, faded, defocused objects that belong to the background (not salient).
    if rng.random() < CLUTTER_P:
        for _ in range(int(rng.integers(1, 3))):
            rgb, alpha = _object(rng, size * rng.uniform(0.08, 0.22))
            radius = max(defocus, 1.2 * size / 160)
            rgb = _blur_colour(rgb, radius)
            rgb = rgb * 0.5 + image.mean((0, 1)) * 0.5
            alpha = _blur(alpha, radius) * rng.uniform(0.5, 0.9)
            x, y = rng.integers(-alpha.shape[1] // 2, size - alpha.shape[1] // 2, 2)
            image, _ = _paste(image, rgb, alpha, int(x), int(y))
    mask = np.zeros(image.shape[:2], np.float32)
    count = int(rng.choice(OBJECT_COUNTS, p=OBJECT_COUNT_P))
    main = size * rng.uniform(0.3, 0.95)
    closeup = _SHARES["closeups"] > 0 and rng.random() < _SHARES["closeups"]
    if closeup:  # a cat's face, a flower filling the frame: the subject runs out of it on one or more sides
        count, main = 1, size * rng.uniform(1.05, 1.8)
    if _SHARES["distractors"] > 0 and rng.random() < _SHARES["distractors"]:
        image = _distractors(rng, image, main, defocus)
    if busy:  # the subject stays large, so that it, not the backdrop's objects, is what the photo is of
        main = max(main, size * 0.5)
        image = _busy(rng, image, main)
    for k in range(count):
        longest = main if k == 0 else main * rng.uniform(0.35, 0.85)
        bust = False
        if rng.random() < _SHARES["figures"]:
            rgb, alpha, bust = _figure(rng, size * rng.uniform(0.55, 1.0) if k == 0 else longest * 1.2)
        else:
            rgb, alpha = _object(rng, longest)
        h, w = alpha.shape
        if k == 0:  # near the centre, as in salient-object photos; sometimes cut by the frame
            cx, cy = rng.normal(size / 2, size * (0.2 if closeup else 0.12), 2)
        else:
            cx, cy = rng.uniform(0.1, 0.9, 2) * size
        x, y = int(cx - w / 2), int(cy - h / 2)
        if bust:  # a portrait: the shoulders run out of the bottom of the frame
            y = size - h + int(h * rng.uniform(0.0, 0.2))
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
    parser.add_argument("--cartoons", type=Path, help="folder of drawn RGBA cut-outs, %d%%%% of the objects"
                        % round(CARTOON_P * 100))
    parser.add_argument("--figures", type=float, default=FIGURE_P,
                        help="share of subjects that are drawn people (the stamps hold almost none)")
    parser.add_argument("--closeups", type=float, default=0.0,
                        help="share of close-ups: one subject larger than the frame, cut by it (recipe: %g)"
                        % CLOSEUP_P)
    parser.add_argument("--distractors", type=float, default=0.0,
                        help="share of scenes with 1-3 sharp objects at the edges that are not salient (recipe: %g)"
                        % DISTRACTOR_P)
    parser.add_argument("--busy", type=float, default=0.0,
                        help="share of busy scenes: a sharp backdrop with 2-4 in-focus objects behind the subject "
                        "that are not salient (recipe, stage 4: %g; a share of 0.5 taught the model to mark skies)" % BUSY_P)
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
    with Pool(args.workers, initializer=_init, initargs=(photos, cutouts, cartoons, args.figures, args.closeups,
                                                             args.distractors, args.busy)) as pool:
        for _ in tqdm(pool.imap_unordered(_write, jobs, chunksize=32), total=len(jobs), desc="composites"):
            pass
    print(f"wrote {len(jobs)} images to {args.out}: {args.num_composites} composites of {len(cutouts)} cut-outs"
          f" (+{len(cartoons)} drawn) on {len(photos)} photos, {args.num_synthetic} synthetic scenes")


if __name__ == "__main__":
    main()
