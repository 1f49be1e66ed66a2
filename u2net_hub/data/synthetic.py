"""Procedural salient-object scenes with exact masks, rendered lazily inside a real `datasets.Dataset`.

Why this exists: no SOD dataset is reachable offline, yet the demo checkpoint,
the training tests and the examples need images whose ground truth is exact.
Every scene is a deterministic function of ``(seed, index, size)``: image ``i``
depends only on ``(seed, i)`` (the layout is drawn in size-independent units,
so one scene at 160 and at 320 pixels is the same scene), and the first ``k``
rows of a big set equal a set of ``k``.

What a scene holds (design probabilities; the figures in brackets were
measured over 2,000 scenes of seed 0 with :func:`describe_synthetic_sample`):

* background: a crop of a real texture or photograph shipped by
  scikit-image (brick, grass, gravel, moon, coins, camera, page, astronaut,
  coffee, chelsea, rocket, cat, immunohistochemistry, hubble) at a random
  scale, rotation, mirror and colour tint [69 %], else a procedural pattern
  (smooth noise, gradient, stripes, checks) or a flat colour; its contrast is
  reduced to 45-100 %; a "horizon" splits the frame into two regions that
  both reach the border [29 %]; a depth-of-field blur [54 %].
* clutter that is NOT salient: 3 to 60 small shapes (radius 1-5 % of the
  side) tinted from the background under them with a small colour offset
  (4-16 % of the RGB range), drawn before the blur [78 % of the images].
* salient objects: 1 [60 %], 2 [28 %] or 3 [12 %]; shapes: blob, ellipse,
  polygon, superellipse, the scikit-image horse silhouette, star, ring,
  glyph, cross, crescent [16 % ... 6 % each]; fills: tinted real texture
  [43 %], procedural pattern [21 %], colour photograph crop [21 %], flat
  colour [15 %], each with a light shading ramp; the first object is the
  main one (radius 12-38 % of the side, the others 8-30 % and at most 1.1x
  it) and near the centre (its centre is more than 0.2 sides off the middle
  in [28 %]); the others may overlap it (the later one occludes) or sit
  elsewhere; objects may be cut by the border (the mask touches the border
  in [28 %]); a soft drop shadow (not salient) under [31 %] of them. The object colour keeps an RGB distance >= 0.45 from the
  background mean (>= 0.3 from its surroundings after the fill); low-contrast
  objects [12 %] only 0.16-0.3 (>= 0.14), still plain to see.
* mask coverage: mean 15 %, median 13 %, 5th-95th percentile 3-33 %;
  never empty (at least one object), never full.
* edges: objects drawn at 4x and box-downsampled (anti-aliased), some
  slightly blurred (defocus); the mask is the union of the salient objects'
  alpha, so every soft edge in the image has the same soft edge in the mask.
* camera: brightness/contrast jitter (gain 0.9-1.1, offset +-4 %) and
  Gaussian noise (sigma 0.4-2 % of the range) [49 %].

How laziness works: a row stores a 32-byte recipe (magic ``U2NETSYN``,
version, kind, size, seed, index) in an ordinary ``datasets.Image`` column;
this module registers a Pillow plugin that recognises the recipe and renders
it when the Image feature decodes the row. So `column_names` and `features`
say ``image``/``mask`` (``Image()``), ``.select``/``.shard``/``.shuffle``/
``len`` and user transforms (``with_transform``) all behave as with any image
dataset, and creating a set of a million rows takes a fraction of a second. Decoding
needs ``u2net_hub.data`` imported in the process (importing any of the
library's data tools does it); to store the rows as ordinary PNG files
(e.g. before ``push_to_hub``), decode them in a map:
``ds.map(lambda row: {"image": row["image"], "mask": row["mask"]})``.
Rendering depends on the installed Pillow and scikit-image (the textures,
the glyph font), so pin them for bit-exact reproduction.
"""

from __future__ import annotations

import hashlib
import math
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFile, ImageFilter, ImageFont, ImageOps, ImageStat

__all__ = ["make_synthetic_dataset", "render_synthetic_sample", "describe_synthetic_sample", "texture_names",
           "SUPERSAMPLE"]

#: Objects are drawn at this multiple of the output resolution, then box-filtered down.
SUPERSAMPLE = 4

_MAGIC = b"U2NETSYN"
_VERSION = 1
_KIND_IMAGE, _KIND_MASK = 0, 1
_HEADER = struct.Struct("<8sBBxxIQQ")  # magic, version, kind, (pad), size, seed, index: 32 bytes
_HEADER_DTYPE = np.dtype(
    {
        "names": ["magic", "version", "kind", "size", "seed", "index"],
        "formats": ["S8", "u1", "u1", "<u4", "<u8", "<u8"],
        "offsets": [0, 8, 9, 12, 16, 24],
        "itemsize": 32,
    }
)
_MAX_SIZE = 8192

# Design knobs: the scene statistics in the docstring follow from these. Changing one changes the scenes.
OBJECT_COUNT_P = (0.6, 0.28, 0.12)  # 1, 2, 3 salient objects
FIRST_OBJECT_RADIUS = (0.12, 0.38)  # in units of the image side
OFF_CENTRE_P = 0.2
LOW_CONTRAST_P = 0.12
SHADOW_P = 0.3
CLUTTER_P = 0.75
BACKGROUND_BLUR_P = 0.55
HORIZON_P = 0.3
BACKGROUND_CONTRAST = (0.45, 1.0)  # the background's own contrast is scaled by a factor in this range
_MAX_ROWS = 2**31 // _HEADER.size - 1  # 32-bit Arrow offsets

# -- textures -------------------------------------------------------------------------------------

_GRAY_SOURCES = ("brick", "grass", "gravel", "moon", "coins", "camera", "page")
_COLOUR_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "hubble_deep_field")
# Backgrounds favour pure textures; objects favour photographs (real colour statistics in the salient region).
_BACKGROUND_WEIGHTS = {"brick": 3, "grass": 3, "gravel": 3, "moon": 2, "coins": 1, "camera": 1, "page": 1,
                       "astronaut": 1, "coffee": 1, "chelsea": 1, "rocket": 1, "cat": 1,
                       "immunohistochemistry": 2, "hubble_deep_field": 2}
_OBJECT_WEIGHTS = {"brick": 2, "grass": 2, "gravel": 2, "moon": 1, "coins": 1, "camera": 1, "page": 1,
                   "astronaut": 3, "coffee": 3, "chelsea": 3, "rocket": 2, "cat": 3,
                   "immunohistochemistry": 1, "hubble_deep_field": 1}


@dataclass(frozen=True)
class _Texture:
    name: str
    image: Image.Image  # "L" or "RGB", uint8
    colour: bool


@lru_cache(maxsize=1)
def _textures() -> dict[str, _Texture]:
    """Decode scikit-image's bundled photographs once per process (they ship with the wheel, no network)."""
    from skimage import data

    library = {}
    for name in _GRAY_SOURCES + _COLOUR_SOURCES:
        array = np.asarray(getattr(data, name)())
        if array.ndim == 3:
            array = array[..., :3]
        if array.dtype != np.uint8:
            raise RuntimeError(f"skimage.data.{name} is {array.dtype}, expected uint8")
        image = Image.fromarray(array)
        library[name] = _Texture(name, image, array.ndim == 3)
    return library


def texture_names() -> tuple[str, ...]:
    """The real photographs and textures the scenes are cut from.

    Returns:
        Their names (scikit-image's sample data), greyscale first.
    """
    return _GRAY_SOURCES + _COLOUR_SOURCES


@lru_cache(maxsize=1)
def _horse() -> Image.Image:
    from skimage import data

    silhouette = ~np.asarray(data.horse(), dtype=bool)  # the file stores the horse as False
    return Image.fromarray((silhouette * 255).astype(np.uint8))


_GLYPHS = "ABEFGHKMNPRSTWXZ&@#?%$2345689"


@lru_cache(maxsize=64)
def _glyph(char: str) -> Image.Image:
    """One bold glyph of Pillow's bundled font, tightly cropped, as an "L" stamp."""
    font = ImageFont.load_default(size=200)
    canvas = Image.new("L", (320, 320), 0)
    ImageDraw.Draw(canvas).text((60, 40), char, fill=255, font=font, stroke_width=14, stroke_fill=255)
    box = canvas.getbbox()
    return canvas.crop(box) if box else canvas


# -- small helpers ----------------------------------------------------------------------------------


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return _hsv_to_rgb(rng.random(), rng.uniform(0.0, 1.0) ** 0.7, rng.uniform(0.15, 1.0))


def _far_colour(rng: np.random.Generator, reference: np.ndarray, min_distance: float, max_distance: float = 9.0):
    """A colour whose RGB distance to `reference` lies in [min, max] (best effort after a few draws)."""
    best, best_gap = None, np.inf
    for _ in range(24):
        colour = _random_colour(rng)
        distance = float(np.linalg.norm(colour - reference))
        if min_distance <= distance <= max_distance:
            return colour
        gap = min_distance - distance if distance < min_distance else distance - max_distance
        if gap < best_gap:
            best, best_gap = colour, gap
    return best


def _coords(w: int, h: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units of the image side, centred on the patch."""
    x = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / size
    y = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / size
    return x[None, :], y[:, None]


def _mean_colour(pixels: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray | None:
    """Mean colour from a strided subsample (~4k pixels): exact enough, and cheap on big canvases."""
    h, w = pixels.shape[:2]
    step = max(1, int(math.sqrt(h * w / 4096)))
    sub = pixels[::step, ::step].reshape(-1, pixels.shape[-1])
    if weight is None:
        return sub.mean(axis=0)
    sub_weight = weight[::step, ::step].reshape(-1)
    total = float(sub_weight.sum())
    if total <= 1e-6:
        return None
    return sub_weight @ sub / total


def _byte_colour(colour: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v * 255 + 0.5) for v in np.clip(colour, 0, 1))


def _texture_patch(rng: np.random.Generator, name: str, w: int, h: int, gray: bool = False) -> Image.Image:
    """A randomly scaled, rotated, mirrored crop of a real texture ("L" or "RGB", w x h)."""
    texture = _textures()[name]
    source_w, source_h = texture.image.size
    angle = rng.uniform(0, 2 * math.pi) if rng.random() < 0.5 else rng.integers(4) * math.pi / 2
    zoom = rng.uniform(0.3, 1.0)  # fraction of the largest crop that fits
    fx, fy = rng.random(), rng.random()
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    need_w, need_h = w * cos + h * sin, w * sin + h * cos
    scale = zoom * min(source_w / need_w, source_h / need_h) * 0.98  # source pixels per output pixel
    extent_w, extent_h = scale * need_w, scale * need_h
    cx = extent_w / 2 + fx * max(source_w - extent_w, 0.0)
    cy = extent_h / 2 + fy * max(source_h - extent_h, 0.0)
    a, b = scale * math.cos(angle) * mirror, -scale * math.sin(angle)
    d, e = scale * math.sin(angle) * mirror, scale * math.cos(angle)
    matrix = (a, b, cx - a * w / 2 - b * h / 2, d, e, cy - d * w / 2 - e * h / 2)
    patch = texture.image.transform((w, h), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR)
    return patch.convert("L") if gray and patch.mode != "L" else patch


def _tint(gray: Image.Image, dark: np.ndarray, light: np.ndarray, contrast: float) -> Image.Image:
    """Gray -> colour through one lookup table: stretch the 2nd-98th percentiles to dark..light, then
    pull every value towards the mean by `contrast` (1 keeps the full range)."""
    histogram = np.asarray(gray.histogram(), dtype=np.float64)
    cumulative = np.cumsum(histogram) / max(histogram.sum(), 1.0)
    lo = int(np.searchsorted(cumulative, 0.02))
    hi = int(np.searchsorted(cumulative, 0.98))
    levels = np.clip((np.arange(256) - lo) / max(hi - lo, 1), 0.0, 1.0)
    mean_level = float(levels @ histogram / max(histogram.sum(), 1.0))
    levels = mean_level + (levels - mean_level) * contrast
    table = dark[:, None] + levels[None, :] * (light - dark)[:, None]  # (3, 256)
    lut = (np.clip(table, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(-1).tolist()
    return Image.merge("RGB", (gray, gray, gray)).point(lut)


def _procedural(rng: np.random.Generator, w: int, h: int, size: int) -> Image.Image:
    """A gray pattern ("L"): smooth noise, gradient, stripes or checks."""
    kind = rng.choice(4, p=[0.4, 0.25, 0.2, 0.15])
    angle = rng.uniform(0, 2 * math.pi)
    cells = int(rng.integers(3, 12))
    grid = rng.random((cells, cells))
    frequency = rng.uniform(6, 30)
    phase = rng.uniform(0, 2 * math.pi)
    if kind == 0:
        return Image.fromarray((grid * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    x, y = _coords(w, h, size)
    u = x * math.cos(angle) + y * math.sin(angle)
    if kind == 1:
        t = np.clip(0.5 + u / max(max(w, h) / size, 1e-3), 0.0, 1.0)
    elif kind == 2:
        t = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * u + phase)
    else:
        v = -x * math.sin(angle) + y * math.cos(angle)
        checks = np.sin(2 * math.pi * frequency * u + phase) * np.sin(2 * math.pi * frequency * v)
        t = np.clip(0.5 + 2.0 * checks, 0.0, 1.0)
    return Image.fromarray((t * 255 + 0.5).astype(np.uint8), "L")


def _fill(rng: np.random.Generator, w: int, h: int, size: int, colour: np.ndarray, weights: dict, style_p,
          contrast: float = 1.0, log: list | None = None) -> Image.Image:
    """An RGB fill around `colour`: flat, procedural pattern, tinted real texture, or a colour photo crop.

    Appends what it drew to `log` ("flat", "pattern", "texture:<name>", "photo:<name>").
    """
    style = rng.choice(4, p=style_p)
    dark = np.clip(colour * rng.uniform(0.35, 0.8), 0, 1)
    light = np.clip(colour + (1 - colour) * rng.uniform(0.1, 0.6), 0, 1)
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    name = names[rng.choice(len(names), p=p / p.sum())]
    permutation = rng.permutation(3)
    pull = rng.uniform(0.2, 0.6)
    if log is not None:
        log.append(("flat", "pattern", f"texture:{name}", f"photo:{name}")[style])
    if style == 0:  # flat colour
        return Image.new("RGB", (w, h), _byte_colour(colour))
    if style == 1:  # procedural pattern
        return _tint(_procedural(rng, w, h, size), dark, light, contrast)
    patch = _texture_patch(rng, name, w, h, gray=style == 2)
    if patch.mode == "L":  # real texture (or a gray photograph), tinted to the requested colour
        if log is not None and style == 3:
            log[-1] = f"texture:{name}"
        return _tint(patch, dark, light, contrast)
    # A colour photograph: channels permuted, pulled towards the requested colour, contrast reduced.
    bands = patch.split()
    photo = Image.merge("RGB", [bands[i] for i in permutation])
    photo = Image.blend(photo, Image.new("RGB", (w, h), _byte_colour(colour)), pull)
    if contrast < 1.0:
        mean = tuple(int(v + 0.5) for v in ImageStat.Stat(photo.reduce(4) if min(w, h) >= 8 else photo).mean)
        photo = Image.blend(Image.new("RGB", (w, h), mean), photo, contrast)
    return photo


def _as_float(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) * (1 / 255)


def _pull_away(fill: np.ndarray, weight: np.ndarray | None, reference: np.ndarray, min_distance: float) -> np.ndarray:
    """Shift a fill's mean colour away from `reference` until their distance is at least `min_distance`."""
    mean = _mean_colour(fill, weight)
    if mean is None:
        return fill
    offset = mean - reference
    distance = float(np.linalg.norm(offset))
    if distance >= min_distance:
        return fill
    direction = offset / distance if distance > 1e-3 else np.array([1.0, 1.0, 1.0], np.float32) * (
        -1 if reference.mean() > 0.5 else 1
    ) / math.sqrt(3)
    target = reference + direction * min_distance
    # Keep the target inside the RGB cube; if the push leaves it, push the other way.
    if np.any(target < 0) or np.any(target > 1):
        target = np.clip(reference - direction * min_distance, 0, 1)
    return np.clip(fill + (target - mean), 0, 1)


# -- shapes -----------------------------------------------------------------------------------------

_SHAPES = ("ellipse", "polygon", "star", "blob", "superellipse", "ring", "crescent", "cross", "horse", "glyph")
_SALIENT_SHAPE_P = np.array([0.14, 0.12, 0.1, 0.16, 0.1, 0.08, 0.06, 0.06, 0.1, 0.08])
_CLUTTER_SHAPE_P = np.array([0.25, 0.2, 0.1, 0.25, 0.1, 0.0, 0.0, 0.1, 0.0, 0.0])  # polygons only


@dataclass
class _Shape:
    """A shape in units of its radius: polygons (filled, holes) or a stamp image; rotated by `angle`."""

    polygons: list[tuple[np.ndarray, int]]
    stamp: Image.Image | None = None
    aspect: float = 1.0  # stamp width / height


def _place(points: np.ndarray, cx: float, cy: float, radius: float, angle: float, flip: bool) -> np.ndarray:
    """Shape units -> image units (side = 1): mirror, rotate, scale, translate."""
    cos, sin = math.cos(angle), math.sin(angle)
    x = points[:, 0] * (-1.0 if flip else 1.0)
    y = points[:, 1]
    return np.stack([cx + radius * (cos * x - sin * y), cy + radius * (sin * x + cos * y)], axis=1)


def _make_shape(rng: np.random.Generator, kind: str, vertices: int = 96) -> _Shape:
    theta = np.linspace(0, 2 * math.pi, vertices, endpoint=False)
    if kind == "ellipse":
        ratio = rng.uniform(0.45, 1.0)
        return _Shape([(np.stack([np.cos(theta), ratio * np.sin(theta)], 1), 255)])
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(-0.25, 0.25, n) * 2 * math.pi / n)
        radii = rng.uniform(0.75, 1.0, n)
        return _Shape([(np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1), 255)])
    if kind == "star":
        n = int(rng.integers(4, 9))
        inner = rng.uniform(0.35, 0.65)
        angles = np.linspace(0, 2 * math.pi, 2 * n, endpoint=False)
        radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
        return _Shape([(np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1), 255)])
    if kind == "blob":
        radii = np.ones_like(theta)
        for k in range(2, 6):
            radii += rng.uniform(0, 0.3) / k * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
        radii /= radii.max()
        return _Shape([(np.stack([radii * np.cos(theta), radii * np.sin(theta)], 1), 255)])
    if kind == "superellipse":
        power = rng.uniform(0.7, 4.0)
        ratio = rng.uniform(0.5, 1.0)
        c, s = np.cos(theta), np.sin(theta)
        points = np.stack([np.sign(c) * np.abs(c) ** (2 / power), ratio * np.sign(s) * np.abs(s) ** (2 / power)], 1)
        return _Shape([(points, 255)])
    if kind == "ring":
        ratio = rng.uniform(0.6, 1.0)
        hole = rng.uniform(0.35, 0.65)
        outer = np.stack([np.cos(theta), ratio * np.sin(theta)], 1)
        return _Shape([(outer, 255), (outer * hole, 0)])
    if kind == "crescent":
        bite = rng.uniform(0.7, 0.95)
        shift = rng.uniform(0.35, 0.6)
        outer = np.stack([np.cos(theta), np.sin(theta)], 1)
        inner = outer * bite + np.array([shift, 0.0])
        return _Shape([(outer, 255), (inner, 0)])
    if kind == "cross":
        arm = rng.uniform(0.25, 0.45)
        points = np.array([(-arm, -1), (arm, -1), (arm, -arm), (1, -arm), (1, arm), (arm, arm), (arm, 1),
                           (-arm, 1), (-arm, arm), (-1, arm), (-1, -arm), (-arm, -arm)], dtype=np.float64)
        return _Shape([(points, 255)])
    if kind == "horse":
        stamp = _horse()
        return _Shape([], stamp, stamp.width / stamp.height)
    glyph = _glyph(_GLYPHS[int(rng.integers(len(_GLYPHS)))])
    return _Shape([], glyph, glyph.width / glyph.height)


def _draw_alpha(shape: _Shape, cx: float, cy: float, radius: float, angle: float, flip: bool, size: int):
    """Anti-aliased coverage of a placed shape: (alpha float32 (h, w) in [0, 1], (x0, y0)) or None if off-canvas."""
    ss = SUPERSAMPLE
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    mirror = np.array([-1.0 if flip else 1.0, 1.0])
    if shape.stamp is not None:
        half_w, half_h = (shape.aspect, 1.0) if shape.aspect <= 1 else (1.0, 1 / shape.aspect)
        corners = np.array([(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)])
        outline = [corners]
    else:
        outline = [points for points, _ in shape.polygons]
    to_pixels = lambda points: _place(points, cx, cy, radius, angle, flip) * size  # noqa: E731
    every = np.concatenate([to_pixels(points) for points in outline])
    x0, y0 = max(int(math.floor(every[:, 0].min())) - 1, 0), max(int(math.floor(every[:, 1].min())) - 1, 0)
    x1, y1 = min(int(math.ceil(every[:, 0].max())) + 1, size), min(int(math.ceil(every[:, 1].max())) + 1, size)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    w, h = x1 - x0, y1 - y0
    if shape.stamp is None:
        canvas = Image.new("L", (w * ss, h * ss), 0)
        draw = ImageDraw.Draw(canvas)
        for points, value in shape.polygons:
            pixels = (to_pixels(points) - (x0, y0)) * ss
            draw.polygon(pixels.ravel().tolist(), fill=value)
    else:
        # Map every supersampled output pixel back into the stamp (inverse of scale, rotate, mirror, place).
        stamp = shape.stamp
        units_per_stamp_px = 2 * (half_h / stamp.height)
        scale_px = radius * size * ss * units_per_stamp_px  # output supersampled px per stamp px
        inv = np.linalg.inv(rotation * mirror[None, :]) / scale_px
        ox = (cx * size - x0) * ss
        oy = (cy * size - y0) * ss
        a, b = inv[0]
        d, e = inv[1]
        c = stamp.width / 2 - a * ox - b * oy
        f = stamp.height / 2 - d * ox - e * oy
        canvas = stamp.transform((w * ss, h * ss), Image.Transform.AFFINE, (a, b, c, d, e, f),
                                 resample=Image.Resampling.BILINEAR)
    alpha = np.asarray(canvas.reduce(ss), dtype=np.float32) * (1 / 255)
    return alpha, (x0, y0)


# -- the scene --------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int, record: dict) -> Image.Image:
    base = _random_colour(rng)
    textured = rng.random() < 0.7
    # Flatten the background's own contrast a little so the objects stay the strongest structure.
    contrast = rng.uniform(*BACKGROUND_CONTRAST)
    style_p = [0.0, 0.0, 0.6, 0.4] if textured else [0.1, 0.9, 0.0, 0.0]
    record["background"] = []
    layer = _fill(rng, size, size, size, base, _BACKGROUND_WEIGHTS, style_p, contrast, record["background"])
    record["horizon"] = bool(rng.random() < HORIZON_P)
    if record["horizon"]:  # horizon: a second region along a wavy line through the whole frame
        other_colour, other_contrast = _random_colour(rng), rng.uniform(*BACKGROUND_CONTRAST)
        other = _fill(rng, size, size, size, other_colour, _BACKGROUND_WEIGHTS, [0.15, 0.25, 0.35, 0.25],
                      other_contrast, record["background"])
        level = rng.uniform(0.3, 0.8)
        tilt = rng.uniform(-0.3, 0.3)
        amplitude, frequency, phase = rng.uniform(0, 0.05), rng.uniform(0.5, 3), rng.uniform(0, 2 * math.pi)
        transpose = rng.random() < 0.5
        x, y = _coords(size, size, size)
        line = level - 0.5 + tilt * x + amplitude * np.sin(2 * math.pi * frequency * x + phase)
        below = np.clip((y - line) * size + 0.5, 0, 1)
        below = Image.fromarray(((below.T if transpose else below) * 255 + 0.5).astype(np.uint8), "L")
        layer = Image.composite(other, layer, below)
    return layer


def _clutter(rng: np.random.Generator, background: Image.Image, size: int, record: dict) -> Image.Image:
    """Many small low-contrast shapes, tinted from the background under them: texture, never salient."""
    record["clutter"] = 0
    if rng.random() >= CLUTTER_P:
        return background
    count = int(rng.integers(3, 61))
    record["clutter"] = count
    ss = 2  # small and faint: 2x supersampling is plenty
    colour_layer = Image.new("RGB", (size * ss, size * ss), 0)
    alpha_layer = Image.new("L", (size * ss, size * ss), 0)
    draw_colour, draw_alpha = ImageDraw.Draw(colour_layer), ImageDraw.Draw(alpha_layer)
    coarse_step = max(1, size // 40)
    coarse = _as_float(background.reduce(coarse_step)) if coarse_step > 1 else _as_float(background)
    kinds = rng.choice(len(_SHAPES), size=count, p=_CLUTTER_SHAPE_P)
    centres = rng.uniform(-0.02, 1.02, (count, 2))
    radii = rng.uniform(0.01, 0.05, count)
    angles = rng.uniform(0, 2 * math.pi, count)
    flips = rng.random(count) < 0.5
    directions = rng.normal(size=(count, 3))
    directions *= (rng.uniform(0.04, 0.16, count) / (np.linalg.norm(directions, axis=1) + 1e-6))[:, None]
    rows = np.clip((centres[:, 1] * coarse.shape[0]).astype(int), 0, coarse.shape[0] - 1)
    cols = np.clip((centres[:, 0] * coarse.shape[1]).astype(int), 0, coarse.shape[1] - 1)
    colours = (np.clip(coarse[rows, cols] + directions, 0, 1) * 255 + 0.5).astype(np.uint8).tolist()
    for i in range(count):
        shape = _make_shape(rng, _SHAPES[kinds[i]], vertices=24)
        cx, cy = centres[i]
        for points, value in shape.polygons:
            placed = _place(points, cx, cy, radii[i], angles[i], bool(flips[i])) * (size * ss)
            pixels = placed.ravel().tolist()
            draw_colour.polygon(pixels, fill=tuple(colours[i]) if value else (0, 0, 0))
            draw_alpha.polygon(pixels, fill=value)
    # The colour layer is black where nothing is drawn, so its box average is premultiplied by coverage:
    # out = background * (1 - alpha) + premultiplied.
    premultiplied = colour_layer.reduce(ss)
    transparency = ImageOps.invert(alpha_layer.reduce(ss))
    kept = ImageChops.multiply(background, Image.merge("RGB", (transparency, transparency, transparency)))
    return ImageChops.add(kept, premultiplied)


def _place_objects(rng: np.random.Generator) -> list[dict]:
    count = int(rng.choice([1, 2, 3], p=OBJECT_COUNT_P))
    off_centre = rng.random() < OFF_CENTRE_P
    placed = []
    for i in range(count):
        if i == 0:
            radius = rng.uniform(*FIRST_OBJECT_RADIUS)
            spread = 0.3 if off_centre else 0.1
            centre = np.clip(0.5 + rng.normal(0, spread, 2), 0.1, 0.9)
        else:
            radius = rng.uniform(0.08, min(0.3, placed[0]["radius"] * 1.1))
            # Near the first object (some overlap, hence occlusion) or anywhere else.
            if rng.random() < 0.5:
                direction = rng.uniform(0, 2 * math.pi)
                distance = (placed[0]["radius"] + radius) * rng.uniform(0.55, 1.1)
                centre = placed[0]["centre"] + distance * np.array([math.cos(direction), math.sin(direction)])
            else:
                centre = rng.uniform(0.15, 0.85, 2)
            centre = np.clip(centre, 0.08, 0.92)
        kind = _SHAPES[rng.choice(len(_SHAPES), p=_SALIENT_SHAPE_P)]
        placed.append({"kind": kind, "radius": radius, "centre": centre, "low_contrast": rng.random() < LOW_CONTRAST_P})
    return placed


def _render_arrays(seed: int, index: int, size: int, record: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The scene as uint8 arrays: image (size, size, 3), mask (size, size); what was drawn goes to `record`."""
    record = {} if record is None else record
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    background = _clutter(rng, _background(rng, size, record), size, record)
    blur = rng.uniform(0.002, 0.012) if rng.random() < BACKGROUND_BLUR_P else 0.0
    record["blur"] = blur
    record["objects"] = []
    if blur > 0:  # depth of field: the background is softer than the objects
        background = background.filter(ImageFilter.GaussianBlur(blur * size))
    canvas = _as_float(background)
    background_mean = _mean_colour(canvas)
    mask = np.zeros((size, size), np.float32)

    for spec in _place_objects(rng):
        shape = _make_shape(rng, spec["kind"])
        cx, cy = spec["centre"]
        angle = rng.uniform(-0.6, 0.6) if spec["kind"] in ("horse", "glyph") else rng.uniform(0, 2 * math.pi)
        flip = bool(rng.random() < 0.5)
        drawn = _draw_alpha(shape, cx, cy, spec["radius"], angle, flip, size)
        low = spec["low_contrast"]
        # A child generator: how many draws the colour takes depends on pixels, so keep it off the main stream.
        colour_rng = np.random.default_rng(rng.integers(2**63))
        colour = _far_colour(colour_rng, background_mean, 0.16 if low else 0.45, 0.3 if low else 9.0)
        edge_blur = rng.uniform(0.0, 0.003) if rng.random() < 0.3 else 0.0
        shadow = rng.random() < SHADOW_P
        shadow_offset = rng.normal(0, 0.06, 2) * spec["radius"]
        shadow_strength = rng.uniform(0.2, 0.45)
        shading = rng.uniform(0.0, 0.35)
        light = rng.uniform(0, 2 * math.pi)
        # Draw every random number the fill needs before anything that depends on the pixel size.
        fill_rng = np.random.default_rng(rng.integers(2**63))
        entry = {"kind": spec["kind"], "radius": float(spec["radius"]), "centre": tuple(map(float, spec["centre"])),
                 "low_contrast": bool(low), "shadow": bool(shadow), "fill": None, "visible": drawn is not None}
        record["objects"].append(entry)
        if drawn is None:
            continue
        alpha, (x0, y0) = drawn
        if edge_blur > 0:
            alpha = _blur(alpha, edge_blur * size)
        h, w = alpha.shape
        if shadow:
            _cast_shadow(canvas, alpha, x0, y0, shadow_offset, spec["radius"], shadow_strength, size)
        fills: list[str] = []
        fill = _as_float(_fill(fill_rng, w, h, size, colour, _OBJECT_WEIGHTS, [0.15, 0.2, 0.3, 0.35], log=fills))
        entry["fill"] = fills[0]
        x, y = _coords(w, h, size)
        ramp = (x * math.cos(light) + y * math.sin(light)) / max(spec["radius"], 1e-3)
        fill = fill * (1 - shading * np.clip(0.5 + 0.5 * ramp, 0, 1))[..., None]
        local = canvas[y0:y0 + h, x0:x0 + w]
        local_mean = _mean_colour(local, 1 - alpha)
        if local_mean is None:  # the object covers its whole box
            local_mean = background_mean
        fill = _pull_away(fill, alpha, local_mean, 0.14 if low else 0.3)
        local *= 1 - alpha[..., None]
        local += fill * alpha[..., None]
        patch = mask[y0:y0 + h, x0:x0 + w]
        patch += alpha * (1 - patch)

    # Camera: gentle global brightness/contrast jitter, then sensor noise.
    gain, bias = rng.uniform(0.9, 1.1), rng.uniform(-0.04, 0.04)
    noisy = rng.random() < 0.5
    sigma = rng.uniform(0.004, 0.02)
    offset = rng.random(2)
    record["noise"] = sigma if noisy else 0.0
    canvas *= gain * 255
    canvas += bias * 255 + 0.5
    if noisy:
        canvas += _noise(size, offset) * (sigma * 255)
    image = np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
    mask *= 255
    mask += 0.5
    return image, np.clip(mask, 0, 255, out=mask).astype(np.uint8)


_NOISE_TILE = 1024


@lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """A fixed tile of Gaussian noise (std 32 as int8); scenes take random windows of it (cheap, reproducible)."""
    rng = np.random.default_rng(20200501)
    return np.clip(rng.standard_normal((_NOISE_TILE, _NOISE_TILE, 3), dtype=np.float32) * 32, -127, 127).astype(np.int8)


def _noise(size: int, offset: np.ndarray) -> np.ndarray:
    """Unit-variance noise (size, size, 3) from a window of the tile at a random offset."""
    tile = _noise_tile()
    if size <= _NOISE_TILE:
        ox, oy = (offset * (_NOISE_TILE - size + 1)).astype(int)
        window = tile[oy:oy + size, ox:ox + size]
    else:
        rows = (np.arange(size) + int(offset[1] * _NOISE_TILE)) % _NOISE_TILE
        cols = (np.arange(size) + int(offset[0] * _NOISE_TILE)) % _NOISE_TILE
        window = tile[rows[:, None], cols[None, :]]
    return window.astype(np.float32) * (1 / 32)


def _blur(alpha: np.ndarray, radius: float) -> np.ndarray:
    blurred = Image.fromarray((alpha * 255 + 0.5).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, dtype=np.float32) * (1 / 255)


def _cast_shadow(canvas, alpha, x0, y0, offset, radius, strength, size) -> None:
    """Darken the background under a blurred, offset copy of the object's alpha (not part of the mask)."""
    h, w = alpha.shape
    pad = int(math.ceil((abs(offset).max() + 0.08 * radius) * size)) + 2
    big = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    dx, dy = (np.round(offset * size)).astype(int)
    big[pad + dy:pad + dy + h, pad + dx:pad + dx + w] = alpha
    big = _blur(big, max(0.03 * radius * size, 0.5))
    sx0, sy0 = x0 - pad, y0 - pad
    cx0, cy0 = max(sx0, 0), max(sy0, 0)
    cx1, cy1 = min(sx0 + big.shape[1], size), min(sy0 + big.shape[0], size)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    region = big[cy0 - sy0:cy1 - sy0, cx0 - sx0:cx1 - sx0]
    canvas[cy0:cy1, cx0:cx1] *= 1 - strength * region[..., None]


# -- rendering cache and the Pillow plugin ------------------------------------------------------------

_CACHE_BYTES = 96 * 2**20
_cache: OrderedDict[tuple[int, int, int], list] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def _rendered(seed: int, index: int, size: int, kind: int) -> Image.Image:
    """One half of a rendered scene; the other half waits in a small cache for its column to be decoded."""
    global _cache_bytes
    key = (seed, index, size)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[kind] is not None:
            image = entry[kind]
            entry[kind] = None
            if entry[1 - kind] is None:
                del _cache[key]
            _cache_bytes -= image.width * image.height * len(image.getbands())
            return image
    image_array, mask_array = _render_arrays(seed, index, size)
    pair = [Image.fromarray(image_array, "RGB"), Image.fromarray(mask_array, "L")]
    wanted, other = pair[kind], pair[1 - kind]
    with _cache_lock:
        _cache[key] = [None, None]
        _cache[key][1 - kind] = other
        _cache_bytes += other.width * other.height * len(other.getbands())
        while _cache_bytes > _CACHE_BYTES and _cache:
            _, old = _cache.popitem(last=False)
            _cache_bytes -= sum(im.width * im.height * len(im.getbands()) for im in old if im is not None)
    return wanted


class SyntheticSampleFile(ImageFile.ImageFile):
    """Pillow reader for a scene recipe: opening the 32-byte recipe renders the scene."""

    format = "U2NETSYN"
    format_description = "u2net-hub synthetic saliency scene (rendered on open)"

    def _open(self) -> None:
        header = self.fp.read(_HEADER.size)
        if len(header) != _HEADER.size:
            raise SyntaxError("truncated u2net-hub synthetic recipe")
        magic, version, kind, size, seed, index = _HEADER.unpack(header)
        if magic != _MAGIC or kind not in (_KIND_IMAGE, _KIND_MASK):
            raise SyntaxError("not a u2net-hub synthetic recipe")
        if version != _VERSION:
            raise SyntaxError(f"u2net-hub synthetic recipe version {version}, this library renders {_VERSION}")
        rendered = _rendered(seed, index, size, kind)
        self._mode = rendered.mode
        self._size = rendered.size
        self.im = rendered.im
        self.tile = []
        self.info["u2net_synthetic"] = {"seed": seed, "index": index, "size": size}


def _accept(prefix: bytes) -> bool:
    return prefix[:8] == _MAGIC


Image.register_open(SyntheticSampleFile.format, SyntheticSampleFile, _accept)


# -- public API ---------------------------------------------------------------------------------------


def _check(num_images: int | None, size: int, seed: int) -> None:
    checks = [("size", size), ("seed", seed)] + ([("num_images", num_images)] if num_images is not None else [])
    for name, value in checks:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if num_images is not None and not 1 <= num_images <= _MAX_ROWS:
        raise ValueError(f"num_images must be between 1 and {_MAX_ROWS}, got {num_images}")
    if not 16 <= size <= _MAX_SIZE:
        raise ValueError(f"size must be between 16 and {_MAX_SIZE} pixels, got {size}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be a non-negative integer below 2**64, got {seed}")


def _check_index(index: int) -> None:
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index < 2**64:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")


def render_synthetic_sample(index: int, size: int = 320, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    """Render scene `index` of the synthetic set `seed` directly: (image RGB, mask L), both size x size.

    Args:
        index: the scene (row) number.
        size: the side in pixels.
        seed: the set.

    Returns:
        The image and its mask, the same as row `index` of ``make_synthetic_dataset(..., size, seed)``.
    """
    _check(None, size, seed)
    _check_index(index)
    image, mask = _render_arrays(int(seed), int(index), int(size))
    return Image.fromarray(image, "RGB"), Image.fromarray(mask, "L")


def describe_synthetic_sample(index: int, size: int = 320, seed: int = 0) -> dict:
    """Render a scene and say what is in it: background fills ("texture:brick", "photo:cat", "pattern",
    "flat"), horizon, blur, clutter count, and per salient object its kind, radius, centre (in units of
    the side), fill, shadow and whether it is a low-contrast one. For statistics and tests.

    Args:
        index: the scene (row) number.
        size: the side in pixels.
        seed: the set.

    Returns:
        The description, as plain JSON-able values.
    """
    _check(None, size, seed)
    _check_index(index)
    record: dict = {}
    _render_arrays(int(seed), int(index), int(size), record)
    return record


def make_synthetic_dataset(num_images: int, size: int = 320, seed: int = 0):
    """A `datasets.Dataset` of `num_images` synthetic scenes, columns ``image`` (RGB) and ``mask`` (L).

    Creation only writes 32-byte recipes (instant for any size); each row is
    rendered when it is read. Row ``i`` is scene ``(seed, i)``, so a held-out
    split is simply another seed.

    Args:
        num_images: the number of rows.
        size: the side of every scene in pixels.
        seed: the set (another seed, other scenes).

    Returns:
        The dataset (a process that reads its rows must have imported ``u2net_hub.data``).
    """
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo, Features, NamedSplit
    from datasets import Image as ImageFeature
    from datasets.table import InMemoryTable

    _check(num_images, size, seed)
    n = int(num_images)

    def column(kind: int):
        records = np.zeros(n, dtype=_HEADER_DTYPE)
        records["magic"], records["version"], records["kind"] = _MAGIC, _VERSION, kind
        records["size"], records["seed"], records["index"] = size, seed, np.arange(n, dtype=np.uint64)
        offsets = np.arange(0, (n + 1) * _HEADER.size, _HEADER.size, dtype=np.int32)
        data = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(records.tobytes())])
        return pa.StructArray.from_arrays([data, pa.nulls(n, pa.string())], names=["bytes", "path"])

    features = Features({"image": ImageFeature(), "mask": ImageFeature()})
    table = pa.Table.from_arrays([column(_KIND_IMAGE), column(_KIND_MASK)], schema=features.arrow_schema)
    info = DatasetInfo(
        description=(
            f"u2net-hub synthetic salient-object scenes: {n} rows, {size}x{size}, seed {seed}, "
            f"renderer v{_VERSION}; rendered on read (see u2net_hub.data.synthetic)."
        ),
        features=features,
    )
    fingerprint = hashlib.sha256(f"u2net-synthetic-v{_VERSION}-{n}-{size}-{seed}".encode()).hexdigest()[:16]
    return Dataset(InMemoryTable(table), info=info, split=NamedSplit("train"), fingerprint=fingerprint)
