"""Generated hair and fur scenes with exact fractional alpha, for the matting benchmark.

A scene is a hairy object (a blob-shaped body with hundreds of thin strands:
long "hair" on its upper side, or short "fur" all around) composited over a
real photographic texture that ships with scikit-image (brick, grass, gravel,
moon, coffee, rocket, chelsea, immunohistochemistry), cropped, tinted and
sometimes defocused.

Why the ground truth is exact: the object is drawn at ``supersample`` times
the output resolution with hard (aliased) edges, in horizontal bands, and
box-filtered down; the alpha is the covered share of each pixel's
sub-samples and the photo is composited from the same sub-samples
(``I = premultiplied foreground + (1 - alpha) * background``), so the alpha is
the true coverage of the image as rendered, not an approximation of it.

Every scene is a deterministic function of ``(seed, kind)`` in units of the
image height, so the same scene can be rendered at 800x600 and 4000x3000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BACKGROUNDS = ("brick", "grass", "gravel", "moon", "immunohistochemistry", "coffee", "chelsea", "rocket")
#: Photographs (not plain textures) are cropped closer, so the background reads as a surface, not as a rival object.
_PHOTOS = ("coffee", "chelsea", "rocket")
KINDS = ("hair", "fur")


@dataclass
class Scene:
    image: np.ndarray  # uint8 H x W x 3, the composite
    alpha: np.ndarray  # float32 H x W, exact coverage in [0, 1]
    foreground: np.ndarray  # uint8 H x W x 3, the object's colour (meaningful where alpha > 0)
    description: str


@lru_cache(maxsize=16)
def _texture(name: str) -> np.ndarray:
    from skimage import data

    array = np.asarray(getattr(data, name)())
    return array[..., :3] if array.ndim == 3 else array


def _colour(rng: np.random.Generator, value: tuple[float, float] = (0.1, 1.0)) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.2, 0.9), rng.uniform(*value)
    i, f = int(h * 6) % 6, h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]) * 255


def _background(rng: np.random.Generator, name: str, width: int, height: int,
                backdrop: np.ndarray | None = None) -> np.ndarray:
    texture = _texture(name) if backdrop is None else backdrop
    th, tw = texture.shape[:2]
    if backdrop is not None:  # a training photo: most of it, so its own subject stays in view as a rival
        crop = rng.uniform(0.45, 1.0)
    else:
        crop = rng.uniform(0.25, 0.45) if name in _PHOTOS else rng.uniform(0.55, 1.0)
    cw, ch = max(8, int(tw * crop)), max(8, int(th * crop * (height / width) * (tw / th)))
    ch = min(ch, th)
    x0, y0 = rng.integers(0, tw - cw + 1), rng.integers(0, th - ch + 1)
    patch = Image.fromarray(np.ascontiguousarray(texture[y0 : y0 + ch, x0 : x0 + cw]))
    if patch.mode == "L":  # a grey texture gets two random colours
        dark, light = _colour(rng, (0.05, 0.5)), _colour(rng, (0.5, 1.0))
        g = np.asarray(patch, dtype=np.float32)[..., None] / 255.0
        patch = Image.fromarray(np.clip(dark + (light - dark) * g, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = patch.resize((width, height), Image.Resampling.BICUBIC)
    blur = float(rng.choice([0.0, 0.0, 0.0015, 0.004]))  # in units of the height: sharp, or a little defocus
    if blur:
        out = out.filter(ImageFilter.GaussianBlur(blur * height))
    return np.asarray(out, dtype=np.uint8)


def _body_outline(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int = 180):
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 5):
        r += rng.uniform(0, 0.12 / k) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(0.8, 1.2)
    return angles, np.stack([cx + radius * r * np.cos(angles) * aspect, cy + radius * r * np.sin(angles)], axis=1), r


def _strands(rng, kind, cx, cy, radius, radial, angles, base_colour):
    """Polylines (in height units), widths (height units) and colours of the strands."""
    if kind == "hair":
        count, length, spread = int(rng.integers(250, 500)), (0.12, 0.32), rng.uniform(0.9, 1.6)
        start = -np.pi / 2 + rng.uniform(-spread, spread, count)  # the upper side (y grows downwards)
    else:
        count, length = int(rng.integers(900, 1600)), (0.025, 0.07)
        start = rng.uniform(0, 2 * np.pi, count)
    strands = []
    for a in start:
        idx = int(np.round((a % (2 * np.pi)) / (2 * np.pi) * len(angles))) % len(angles)
        rr = radius * radial[idx] * rng.uniform(0.88, 0.98)
        x, y = cx + rr * math.cos(a), cy + rr * math.sin(a)
        heading = a + rng.normal(0, 0.35)
        bend = rng.normal(0, 2.5 if kind == "hair" else 6.0)
        total = rng.uniform(*length)
        steps = 24 if kind == "hair" else 8
        points = [(x, y)]
        for _ in range(steps):
            heading += (bend + rng.normal(0, 4.0)) * total / steps
            x += math.cos(heading) * total / steps
            y += math.sin(heading) * total / steps
            points.append((x, y))
        width = rng.uniform(0.0007, 0.0028)
        colour = np.clip(base_colour * rng.uniform(0.75, 1.3) + rng.normal(0, 10, 3), 0, 255)
        strands.append((np.array(points), width, tuple(int(c) for c in colour)))
    return strands


def render(seed: int, width: int, height: int, kind: str | None = None, supersample: int | None = None,
           backdrop: np.ndarray | None = None) -> Scene:
    """One scene at ``width`` x ``height``; ``kind`` "hair" or "fur" (default: drawn from the seed).

    ``backdrop``: an RGB photo (uint8 H x W x 3) to crop the background from instead of the scikit-image
    textures, for training data (train/make_hair_composites.py) that must not share the benchmark's backgrounds.
    """
    rng = np.random.default_rng(seed)
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    name = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    scene_rng = np.random.default_rng([seed, 1])
    background = _background(scene_rng, name, width, height, backdrop)
    aspect = width / height
    cx, cy = aspect / 2 + scene_rng.uniform(-0.12, 0.12), 0.58 + scene_rng.uniform(-0.06, 0.06)
    radius = scene_rng.uniform(0.17, 0.26)
    angles, outline, radial = _body_outline(scene_rng, cx, cy, radius)
    body_colour = _colour(scene_rng, (0.2, 0.95))
    # Half the objects wear their own colour as fur (an animal), half a colour of their own (a head of hair).
    hair_colour = body_colour * scene_rng.uniform(0.7, 1.2) if scene_rng.random() < 0.5 else _colour(scene_rng, (0.15, 1.0))
    strands = _strands(scene_rng, kind, cx, cy, radius, radial, angles, hair_colour)
    # The body: a flat colour with a light shading ramp and a faint texture of its own.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / height
    shade = 0.85 + 0.3 * ((xx - cx) * 0.7 - (yy - cy)) / max(radius, 1e-3) * 0.5
    grain = np.asarray(Image.fromarray(_texture("gravel") if _texture("gravel").ndim == 2 else _texture("gravel")[..., 0])
                       .resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    body = np.clip(body_colour * (shade * (0.9 + 0.2 * grain))[..., None], 0, 255).astype(np.uint8)
    del yy, xx, shade, grain

    s = supersample or (8 if width * height <= 1_000_000 else 4)
    alpha = np.empty((height, width), dtype=np.float32)
    premultiplied = np.empty((height, width, 3), dtype=np.float32)
    band = max(8, (1 << 21) // (width * s * s))  # ~2 M sub-samples a band
    unit = height * s  # sub-sample pixels per height unit
    boxes = [(p[:, 0].min() - w, p[:, 1].min() - w, p[:, 0].max() + w, p[:, 1].max() + w) for p, w, _ in strands]
    for top in range(0, height, band):
        rows = min(band, height - top)
        y0, y1 = top / height, (top + rows) / height
        cov = Image.new("L", (width * s, rows * s), 0)
        colour = Image.fromarray(np.repeat(np.repeat(body[top : top + rows], s, axis=0), s, axis=1))
        dc, dm = ImageDraw.Draw(colour), ImageDraw.Draw(cov)
        offset = np.array([0.0, top * s])
        polygon = [tuple(v) for v in (outline * unit - offset)]
        dm.polygon(polygon, fill=255)
        for (points, w, col), (bx0, by0, bx1, by1) in zip(strands, boxes):
            if by1 < y0 or by0 > y1:
                continue
            xy = [tuple(v) for v in (points * unit - offset)]
            px = max(1, int(round(w * unit)))
            dc.line(xy, fill=col, width=px, joint="curve")
            dm.line(xy, fill=255, width=px, joint="curve")
        c = np.asarray(cov, dtype=np.float32) / 255.0
        rgb = np.asarray(colour, dtype=np.float32) * c[..., None]
        alpha[top : top + rows] = c.reshape(rows, s, width, s).mean(axis=(1, 3))
        premultiplied[top : top + rows] = rgb.reshape(rows, s, width, s, 3).mean(axis=(1, 3))
    image = premultiplied + (1.0 - alpha[..., None]) * background
    foreground = np.where(alpha[..., None] > 0, premultiplied / np.maximum(alpha[..., None], 1e-6), 0)
    description = f"seed {seed}: {kind} over {name if backdrop is None else 'a photo'}, {len(strands)} strands"
    return Scene(
        image=np.clip(image + 0.5, 0, 255).astype(np.uint8),
        alpha=alpha,
        foreground=np.clip(foreground + 0.5, 0, 255).astype(np.uint8),
        description=description,
    )
