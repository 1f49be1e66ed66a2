"""Alpha matting at full resolution: a trimap from the saliency map, then pymatting's solvers.

Why: the network sees ``input_size`` x ``input_size`` (320 for the paper's
models), so at 4000 px one network pixel covers ~12 image pixels and hair,
fur and thin structures come back as a blur. Matting re-estimates the alpha
from the photo's own colours where the saliency map is unsure.

How (see docs/matting.md for the measurements behind each choice):

0. **Enclosed holes** (:func:`fill_enclosed_holes`). A region the map
   leaves out that the object encloses is filled when its colours are not
   the background's around the object: the network often outlines a plain
   body and leaves its inside out, while a real hole shows the backdrop.
1. **Trimap** (:func:`make_trimap`). Definite foreground where the probability
   is at least ``foreground_threshold`` / 255, definite background where it is
   at most ``background_threshold`` / 255 (rembg's knobs and defaults, 240 / 10),
   read on the map with its logits divided by ``trimap_temperature`` (1.5: a
   wider band than rembg's on the raw map), both eroded; the rest is unknown. The erosion scales with the blur the
   network's resolution leaves at this image size: ``erode_size`` pixels per
   1000 pixels of the image's longer side (rembg uses a fixed ``erode_size``),
   and the background side is pushed out by a further ``band_scale`` network
   pixels, because hair reaches beyond where the blurred map fades out; the
   object side is pulled in by ``foreground_scale`` network pixels, because
   dense fur saturates the map beyond the body's edge.
2. **Alpha** (:func:`estimate_alpha`). pymatting's closed-form matting
   Laplacian (Levin et al. 2008) solved with pymatting's conjugate gradients
   and incomplete-Cholesky preconditioner, only over the unknown pixels, in
   tiles of at most ``max_unknowns`` unknowns. A weak prior towards the
   saliency map (weighted by how sure the map is) keeps every tile well posed
   even when it holds no definite foreground. Large images are solved at a
   reduced working resolution and brought back to full size with a colour
   guided filter (He et al., "Fast Guided Filter") steered by the full-size
   photo, so strand edges follow the photo, not the working grid. The sure
   background is not solved: it keeps the map's own (faint) values, so
   matting never erases hair the network dimly saw there. ``map_floor``
   (0.25) gives back a share of what the solve takes from the map.
3. **Local colour model** (:func:`colour_alpha`, off by default since
   2026-12-07: it now paints more backdrop than it finds). Within ``colour_reach``
   network pixels of the object, each pixel is explained as a mix of a local
   background colour and a local object colour (the body's edge, or the
   pixels that stand out of the background); where that explanation is good
   and the two colours are well apart, its alpha is used in the trimap's
   sure background (where the solve cannot reach: strands the map never
   saw), and in the unknown band only where it is above the solve's (the
   solve grows from the body's colour and erases strands of another colour);
   only where what it adds touches the object (strands grow out of it; a
   backdrop's own contrasty texture mostly does not).
4. **Foreground colour** (:func:`estimate_foreground`): pymatting's multilevel
   foreground estimation in the unknown band, so the cutout's RGB carries the
   object's colour and not the background's (no halo).

Bounded: a tile whose preconditioner or solver fails (an ill-posed or
unlucky system) keeps the plain mask instead of hanging or crashing, so the
result is never worse-posed than the plain mask.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

def _ndimage():
    from scipy import ndimage  # third-party, imported when matting runs (keeps `import u2net_hub` light)

    return ndimage


def cg(*args, **kwargs):
    """pymatting's conjugate gradients (imported on first use: pymatting loads numba)."""
    from pymatting import cg as _cg

    return _cg(*args, **kwargs)


def ichol(*args, **kwargs):
    """pymatting's thresholded incomplete Cholesky preconditioner."""
    from pymatting import ichol as _ichol

    return _ichol(*args, **kwargs)


def cf_laplacian(*args, **kwargs):
    """pymatting's closed-form matting Laplacian."""
    from pymatting import cf_laplacian as _laplacian

    return _laplacian(*args, **kwargs)


def estimate_foreground_ml(*args, **kwargs):
    """pymatting's multilevel foreground estimation."""
    from pymatting import estimate_foreground_ml as _foreground

    return _foreground(*args, **kwargs)


#: rembg's defaults, same names (``--alpha-matting-foreground-threshold`` etc.).
FOREGROUND_THRESHOLD = 240
BACKGROUND_THRESHOLD = 10
ERODE_SIZE = 10
#: The network input the probability map came from when the caller does not say (the paper's 320).
NETWORK_SIZE = 320


class MattingError(ValueError):
    """Bad matting arguments (thresholds out of range, mismatched sizes)."""


@dataclass(frozen=True)
class MattingOptions:
    """The knobs of :func:`matte`, checked once.

    ``foreground_threshold`` / ``background_threshold``: 0..255 levels of the
    mask above / below which a pixel is definitely object / background.
    ``erode_size``: how far (pixels per 1000 px of the longer side) the
    definite regions are eroded before matting. ``network_size``: the
    network input side the map came from; the unknown band widens with
    ``image side / network_size``. ``band_scale``: how many network pixels
    the background side of the band is pushed out; ``foreground_scale``: how
    many network pixels the sure object is pulled back (dense fur saturates the
    map past the body's edge, and its fractional tips would otherwise be stamped
    1). ``working_scale``: the
    solve runs at most at ``working_scale`` times the network's resolution;
    finer detail comes from the guided upsampling, which follows the full-size
    photo (solving finer measured worse and slower: the band is as wide as the
    map's blur). ``max_unknowns``: the largest linear system solved at once
    (a tile); ``working_unknowns``: the most unknowns solved in all (a time
    cap: the working resolution drops further to stay under it).
    ``colour_model``: also explain each pixel near the object as a mix of a
    local object colour and a local background colour (strands the map does
    not see, strands whose colour the body does not have). Off since
    2026-12-07: with the bundled model of that day it paints more backdrop
    than it finds hair (tuning scenes, band / whole-image MAE at 800x600:
    0.268 / 0.066 on, 0.273 / 0.062 off; at 4000x3000 0.252 / 0.079 on,
    0.249 / 0.074 off). ``colour_reach``:
    how far out (network pixels) from the object it looks; ``colour_pixels``:
    above this many pixels the colour model runs on a BOX-reduced copy and is
    enlarged. ``map_floor``: where the closed-form alpha falls below the
    network's probability, this share of the gap is given back (0: none, 1:
    never below the map); 0.25: it costs 3-5% band MAE on average but is what
    keeps every one of 60 fresh hair scenes (seeds 100-129 at 800x600 and at
    4000x3000, 2026-12-05) at or below the plain mask (0 leaves one 4% worse:
    hair of the backdrop's colour, which the solve erases for lack of a colour
    reason). It was 0 from early 2026-12, chosen on fewer scenes. ``trimap_temperature``: the thresholds
    are read on the map with its logits divided by this (1: the map as it is, rembg's behaviour). 1.5 since
    2026-12-07, chosen on the tuning scenes with the bundled model of that day (the released u2netp
    fine-tuned; its fused logit is not sharpened): band / whole-image MAE at 800x600 (19 scenes) 0.294 /
    0.068 at 1, 0.268 / 0.066 at 1.5, 0.265 / 0.068 at 2, 0.267 / 0.072 at 3; at 4000x3000 (8 scenes)
    0.252 / 0.079 at 1.5, 0.248 / 0.087 at 3. From 2026-12-04 to 12-07 it was 3, for bundled models whose
    fused logit was doubled (temperature 0.5 folded into the fusion conv), so that their map, which saturated
    twice as fast, still left a band wide enough for the hair.
    ``colour_in_band``: the colour model may also raise (never lower) the
    band's solved alpha where it trusts its own (the solve grows from the
    body's colour, so it erases dark hair on a yellow body; tuning at
    temperature 2: 4000x3000 hair over grass +8% -> +0% vs plain, band MAE
    0.271 / 0.284 -> 0.268 / 0.282, whole image 0.109 / 0.109 -> 0.112 / 0.112).
    ``fill_holes``: fill the enclosed holes of the map whose colours the
    surrounding background does not explain (:func:`fill_enclosed_holes`: the
    network outlines a plain body it does not fill); ``hole_share``: the share
    of a hole's pixels unlike the background above which it is filled (0.5: a
    majority). Tuning scenes, whole-image MAE without / with: 0.062 / 0.055
    (19 scenes, 800x600), 0.082 / 0.076 (seeds 100-129), 0.074 / 0.066
    (8 scenes, 4000x3000); on 43 real photos with hand masks it filled one
    70-pixel hole and changed no score.

    The lengths are in network pixels and the defaults suit a 320 px network (the paper's models and the
    bundled one): set 2026-12-04 on the tuning scenes with the 320 px demo model (band 0.290 -> 0.258 at
    800x600; the earlier 1.5 / 2.0 / 20 / 0.5 were chosen with a 160 px model, where a network pixel is twice
    as wide); ``foreground_scale`` 3 and ``map_floor`` 0 on the same scenes afterwards (0.258 -> 0.224,
    docs/matting.md).
    """

    foreground_threshold: int = FOREGROUND_THRESHOLD
    background_threshold: int = BACKGROUND_THRESHOLD
    erode_size: int = ERODE_SIZE
    network_size: int = NETWORK_SIZE
    band_scale: float = 3.0
    foreground_scale: float = 3.0
    epsilon: float = 1e-6
    prior_weight: float = 1e-3
    working_scale: float = 1.0
    max_unknowns: int = 20_000
    working_unknowns: int = 200_000
    max_iterations: int = 400
    colour_model: bool = False
    colour_reach: float = 40.0
    colour_pixels: int = 2_500_000
    map_floor: float = 0.25
    trimap_temperature: float = 1.5
    colour_in_band: bool = True
    fill_holes: bool = True
    hole_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("foreground_threshold", "background_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 255:
                raise MattingError(f"{name.replace('_', '-')} must be an integer from 0 to 255, got {value!r}")
        if self.background_threshold >= self.foreground_threshold:
            raise MattingError(
                f"the background threshold ({self.background_threshold}) must be below the foreground threshold "
                f"({self.foreground_threshold})"
            )
        if isinstance(self.erode_size, bool) or not isinstance(self.erode_size, (int, np.integer)) or self.erode_size < 0:
            raise MattingError(f"erode-size must be an integer >= 0, got {self.erode_size!r}")
        if not isinstance(self.network_size, (int, np.integer)) or self.network_size < 1:
            raise MattingError(f"network_size must be a positive integer, got {self.network_size!r}")
        if self.band_scale < 0 or self.foreground_scale < 0:
            raise MattingError(f"band_scale and foreground_scale must be >= 0, got {self.band_scale!r} and "
                               f"{self.foreground_scale!r}")
        if not self.trimap_temperature > 0:
            raise MattingError(f"trimap_temperature must be positive, got {self.trimap_temperature!r}")
        if not 0.0 <= self.map_floor <= 1.0:
            raise MattingError(f"map_floor must be from 0 to 1, got {self.map_floor!r}")
        if not 0.0 <= self.hole_share <= 1.0:
            raise MattingError(f"hole_share must be from 0 to 1, got {self.hole_share!r}")
        if self.colour_reach <= 0 or self.colour_pixels < 10_000:
            raise MattingError("colour_reach must be positive and colour_pixels at least 10000")
        if self.max_unknowns < 1000 or self.working_unknowns < 1000:
            raise MattingError("max_unknowns and working_unknowns must be at least 1000")


def _disk(radius: float) -> np.ndarray:
    r = max(0, int(round(radius)))
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r + r  # a slightly fuller disk: radius 1 is the 3x3 square minus nothing odd


def _erode(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary erosion by a disk, as repeated small erosions (fast and memory-light on 12 MP masks)."""
    r = int(round(radius))
    if r <= 0 or not mask.any():
        return mask
    # A disk of radius r ~ r/2 erosions by the 3x3 square interleaved with r/2 by the cross.
    square, cross = np.ones((3, 3), bool), _ndimage().generate_binary_structure(2, 1)
    out = mask
    for k in range(r):
        out = _ndimage().binary_erosion(out, structure=square if k % 2 else cross, border_value=1)
    return out


def make_trimap(probability: np.ndarray, options: MattingOptions | None = None) -> np.ndarray:
    """Probability map (float H x W in [0, 1]) -> uint8 trimap: 0 background, 128 unknown, 255 foreground.

    Why the band is wider than rembg's: the map is an upsampled 320 px (or
    smaller) prediction, so its edge is blurred by ``side / network_size``
    pixels; hair extends past where the map fades, so the background side of
    the band reaches ``band_scale`` network pixels further out. On large
    images the trimap is cut at 4x the network's resolution (the map has no
    finer detail) and enlarged, so 12 MP costs no full-size morphology.
    """
    options = options or MattingOptions()
    probability = np.asarray(probability, dtype=np.float32)
    height, width = probability.shape
    side = max(height, width)
    ratio = side / options.network_size  # image pixels per network pixel
    shrink = max(1, int(ratio // 4))
    if shrink > 1:
        small = (max(1, round(width / shrink)), max(1, round(height / shrink)))
        level = np.asarray(Image.fromarray(probability, mode="F").resize(small, Image.Resampling.BOX)) * np.float32(255)
    else:
        level = probability * np.float32(255.0)
    if options.trimap_temperature != 1.0:
        # The thresholds are read on the map with its logits divided by the temperature (see MattingOptions).
        p = np.clip(level / np.float32(255.0), np.float32(1e-7), np.float32(1 - 1e-7))
        logit = np.log(p / (1 - p)) / np.float32(options.trimap_temperature)
        level = np.float32(255.0) / (1 + np.exp(-logit))
        del p, logit
    erode = options.erode_size * side / 1000.0 / shrink
    foreground = level >= options.foreground_threshold
    confident = level >= 127.5
    if foreground.sum() < 0.3 * confident.sum():
        # A map that rarely reaches the threshold (an unsure model, a low-contrast object): the upper half of
        # its own confident region is the sure part, so the solve has an object to grow from.
        foreground |= level >= max(127.5, float(np.median(level[confident])))
    background = level <= options.background_threshold
    foreground = _erode(foreground, erode / 2 + options.foreground_scale * ratio / shrink)
    background = _erode(background, erode + options.band_scale * ratio / shrink)
    trimap = np.full(level.shape, 128, dtype=np.uint8)
    trimap[foreground] = 255
    trimap[background] = 0
    if shrink > 1:
        trimap = np.asarray(Image.fromarray(trimap).resize((width, height), Image.Resampling.NEAREST))
    return trimap


# ----------------------------------------------------------------- tiling


def _tiles(unknown: np.ndarray, max_unknowns: int, margin: int) -> list[tuple[slice, slice, slice, slice]]:
    """Windows over the unknown band: (outer rows, outer cols, inner rows, inner cols).

    Each connected part's bounding box is cut into a grid of cells holding
    about ``max_unknowns`` unknowns each; a cell is solved with ``margin``
    pixels of context around it (so its cut edges see their neighbours) and
    only its inner part is kept.
    """
    height, width = unknown.shape
    labels, count = _ndimage().label(unknown, structure=np.ones((3, 3), bool))
    windows = []
    for box in _ndimage().find_objects(labels):
        if box is None:
            continue
        rows, cols = box
        part = unknown[rows, cols]
        n = int(part.sum())
        cells = max(1, math.ceil(n / max_unknowns))
        h, w = part.shape
        # Split the box into a grid of ~square cells.
        ny = max(1, round(math.sqrt(cells * h / max(w, 1))))
        nx = max(1, math.ceil(cells / ny))
        ys = np.linspace(rows.start, rows.stop, ny + 1).round().astype(int)
        xs = np.linspace(cols.start, cols.stop, nx + 1).round().astype(int)
        for y0, y1 in zip(ys[:-1], ys[1:]):
            for x0, x1 in zip(xs[:-1], xs[1:]):
                if y1 <= y0 or x1 <= x0 or not unknown[y0:y1, x0:x1].any():
                    continue
                outer = (slice(max(0, y0 - margin), min(height, y1 + margin)),
                         slice(max(0, x0 - margin), min(width, x1 + margin)))
                windows.append((*outer, slice(y0, y1), slice(x0, x1)))
    return windows


def _solve_tile(image: np.ndarray, trimap: np.ndarray, prior: np.ndarray, options: MattingOptions) -> np.ndarray | None:
    """Closed-form alpha of one tile (float64 image in [0, 1]); None when pymatting's solve fails.

    The system is Levin et al.'s, restricted to the unknown pixels, plus
    ``prior_weight * confidence * (alpha - prior)^2`` with confidence
    ``(2 * prior - 1)^2``: nearly nothing where the map is unsure, enough to keep
    a tile with no definite foreground (or no definite pixel at all) solvable.
    """
    known = trimap != 128
    unknown = ~known
    flat_unknown = unknown.ravel()
    laplacian = cf_laplacian(image, epsilon=options.epsilon, radius=1, is_known=known.ravel())
    rows = laplacian[flat_unknown]
    system = rows[:, flat_unknown].tocsc()
    fixed = (trimap.ravel()[~flat_unknown] == 255).astype(np.float64)
    rhs = -(rows[:, ~flat_unknown] @ fixed)
    guess = prior.ravel()[flat_unknown].astype(np.float64)
    weight = options.prior_weight * (2.0 * guess - 1.0) ** 2 + 1e-9
    system = system + _diagonal(weight)
    rhs = rhs + weight * guess
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # ichol prints its retries
            preconditioner = ichol(system.tocsc(), discard_threshold=1e-4, shifts=[0.0, 1e-4, 1e-3],
                                   max_nnz=max(1_000_000, 160 * system.shape[0]))
            solution = cg(system, rhs, x0=guess, M=preconditioner, rtol=1e-5, maxiter=options.max_iterations)
    except (ValueError, ArithmeticError, MemoryError):  # ichol not positive definite / too dense, cg not converging
        return None
    if not np.isfinite(solution).all():
        return None
    alpha = trimap.astype(np.float64).ravel() / 255.0
    alpha[flat_unknown] = solution
    return np.clip(alpha, 0.0, 1.0).reshape(trimap.shape)


def _diagonal(values: np.ndarray):
    from scipy.sparse import diags

    return diags(values, format="csc")


# --------------------------------------------------------- guided upsampling


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    return _ndimage().uniform_filter(x, size=2 * radius + 1, mode="reflect")


def _guided_coefficients(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The colour guided filter's linear model per pixel, (H, W, 4): source ~ a . guide + b, box-averaged."""
    mean_i = [_box(guide[..., c], radius) for c in range(3)]
    mean_p = _box(source, radius)
    cov = np.stack([_box(guide[..., c] * source, radius) - mean_i[c] * mean_p for c in range(3)], axis=-1)
    var = np.empty(source.shape + (3, 3), dtype=np.float32)
    for c in range(3):
        for d in range(c, 3):
            v = _box(guide[..., c] * guide[..., d], radius) - mean_i[c] * mean_i[d]
            var[..., c, d] = var[..., d, c] = v
    var += np.eye(3, dtype=np.float32) * eps
    a = np.linalg.solve(var, cov[..., None])[..., 0]
    b = mean_p - (a * np.stack(mean_i, axis=-1)).sum(axis=-1)
    coefficients = np.concatenate([a, b[..., None]], axis=-1)
    for k in range(4):
        coefficients[..., k] = _box(coefficients[..., k], radius)
    return coefficients.astype(np.float32)


def _upsample_rows(coefficients: np.ndarray, size: tuple[int, int], top: int, bottom: int) -> np.ndarray:
    """Bilinear resize of the (h, w, 4) coefficients to full ``size`` (w, h), rows top..bottom only."""
    width, height = size
    low_h, low_w = coefficients.shape[:2]
    scale = low_h / height
    box = (0.0, top * scale, float(low_w), bottom * scale)
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(coefficients[..., k])).resize(
            (width, bottom - top), Image.Resampling.BILINEAR, box=box), dtype=np.float32)
        for k in range(coefficients.shape[2])
    ]
    return np.stack(planes, axis=-1)


# ------------------------------------------------------ local colour model


def _normalised_blur(values: np.ndarray, weights: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mean of ``values`` over the pixels ``weights`` selects (normalised convolution), and the weight."""
    gauss = _ndimage().gaussian_filter
    total = gauss(weights, sigma)
    if values.ndim == 2:
        return gauss(values * weights, sigma) / np.maximum(total, 1e-6), total
    mean = np.stack([gauss(values[..., c] * weights, sigma) for c in range(values.shape[2])], axis=-1)
    return mean / np.maximum(total, 1e-6)[..., None], total


def _enlarge(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (h, w, k) float planes to ``size`` (w, h)."""
    if planes.shape[1::-1] == size:
        return planes.astype(np.float32)
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., k], dtype=np.float32), mode="F")
                                .resize(size, Image.Resampling.BILINEAR)) for k in range(planes.shape[2])], axis=-1)


def _two_per_network_pixel(height: int, width: int, network_size: int) -> tuple[tuple[int, int], float]:
    """The working grid of the map-scale analyses: (PIL size, working pixels per network pixel).

    The map carries no detail finer than a network pixel, so two samples per network pixel (never more than
    the image's own) see all of it, at the same cost at 12 MP as at 800x600.
    """
    ratio = max(height, width) / network_size
    scale = min(1.0, 2.0 / ratio)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    return size, ratio * size[0] / width


def _box_down(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if array.shape[1::-1] == size:
        return array.astype(np.float32)
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))
    return np.stack([_box_down(array[..., c], size) for c in range(array.shape[2])], axis=-1)


def colour_alpha(image, probability: np.ndarray, options: MattingOptions | None = None,
                 trimap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Alpha from a local colour model near the object, and how far to trust it (both float32 H x W).

    Why: the closed-form solve propagates from the trimap, so it misses
    strands the map does not see at all (long hair past where the map fades)
    and strands whose colour the body does not have (yellow fur on a blue
    body). Here each pixel within ``colour_reach`` network pixels of the
    object is explained as ``alpha * F + (1 - alpha) * B``: ``B`` is the local
    background colour (a Gaussian mean over the sure background, robust to
    the strands it holds by re-weighting), ``F`` the better of two local object
    colours (the body's edge, or the pixels that stand out of the background),
    and ``alpha`` the projection of the pixel onto the line B-F.

    The trust (weight) is zero unless the pixel lies on that line (residual
    under 1.5 times the background's own colour spread), the two colours are
    well apart (more than twice that spread), and sure background lies within
    three network pixels (so B is measured, not guessed). Pale hair over a
    texture of the same colours gets weight zero and keeps the other estimate.
    Returns None when there is no sure object or no sure background.
    """
    options = options or MattingOptions()
    rgb = _as_rgb(image)
    probability = np.asarray(probability, dtype=np.float32)
    height, width = probability.shape
    size, px = _two_per_network_pixel(height, width, options.network_size)  # the colour fields vary slowly
    low_p = _box_down(probability, size)
    sure, background = low_p >= 0.94, low_p <= 0.04
    if not sure.any() or not background.any():
        return None
    edt = _ndimage().distance_transform_edt
    reach = (edt(low_p < 0.5) <= options.colour_reach * px) & ~sure & (edt(~background) <= 3 * px)
    if not reach.any():
        return None
    gauss = _ndimage().gaussian_filter
    sigma = 3.0 * px
    pixels = rgb.astype(np.float32) / np.float32(255.0)
    full_background = np.asarray(Image.fromarray(background).resize((width, height), Image.Resampling.NEAREST))
    clean = full_background
    for _ in range(3):  # the background's colour and spread, measured at full size, strands re-weighted out
        weight = _box_down(clean, size)
        total = np.maximum(gauss(weight, sigma), 1e-6)
        sums = _box_down(pixels * clean[..., None], size)
        mean_b = np.stack([gauss(sums[..., c], sigma) for c in range(3)], axis=-1) / total[..., None]
        up_b = _enlarge(mean_b, (width, height))
        r2 = ((pixels - up_b) ** 2).sum(axis=-1)
        spread2 = gauss(_box_down(r2 * clean, size), 8 * sigma) / np.maximum(gauss(weight, 8 * sigma), 1e-6) + 1e-5
        up_s2 = _enlarge(spread2[..., None], (width, height))[..., 0]
        clean = full_background & (r2 < 6.25 * up_s2)
    up_reach = _enlarge(reach[..., None].astype(np.float32), (width, height))[..., 0] > 0.5
    # The pixels that stand out of the background (over 5 spreads) near the object are object: their colour.
    standout = up_reach & (r2 > 25.0 * up_s2)
    del clean, full_background
    strand_w = gauss(_box_down(standout, size), sigma)
    strand = np.stack([gauss(c, sigma) for c in np.moveaxis(_box_down(pixels * standout[..., None], size), -1, 0)],
                      axis=-1) / np.maximum(strand_w, 1e-6)[..., None]
    edge = (sure & (edt(sure) <= 3 * px)).astype(np.float32)
    body, body_w = _normalised_blur(_box_down(pixels, size), edge, 2 * sigma)
    del standout
    # Project each pixel onto B-F for both object colours, keep the one that explains it better.
    spread = np.sqrt(up_s2)
    diff = pixels - up_b
    del pixels, up_b, r2, up_s2
    best_res = np.full((height, width), np.inf, dtype=np.float32)
    alpha = np.zeros((height, width), dtype=np.float32)
    best_sep = np.zeros((height, width), dtype=np.float32)
    for colour, colour_w in ((body, body_w), (strand, strand_w)):
        fb = _enlarge(np.concatenate([colour - mean_b, colour_w[..., None]], axis=-1), (width, height))
        valid = fb[..., 3] > 1e-3
        fb = fb[..., :3]
        n2 = np.maximum((fb * fb).sum(axis=-1), 1e-6)
        a = np.clip((diff * fb).sum(axis=-1) / n2, 0.0, 1.0)
        res = np.sqrt(((diff - a[..., None] * fb) ** 2).sum(axis=-1)) / spread
        sep = np.sqrt(n2) / spread
        res[~valid | (sep <= 2.0) | ~up_reach] = np.inf
        pick = res < best_res
        best_res[pick], alpha[pick], best_sep[pick] = res[pick], a[pick], sep[pick]
        del fb, n2, a, res, sep, pick
    distance = np.sqrt((diff * diff).sum(axis=-1)) / spread
    alpha *= np.clip((distance - 1.5) / 1.5, 0.0, 1.0)  # within the background's own noise: background
    trust = np.where(best_res < 1.5, np.clip((best_sep - 2.0) / 2.0, 0.0, 1.0), 0.0).astype(np.float32)
    if trimap is not None:
        trust[trimap == 255] = 0.0
    return alpha, trust


# ------------------------------------------------------------------ enclosed holes

#: A hole pixel is "like the background" when some colour of the surrounding background lies within this RGB
#: distance (0..1 per channel, Euclidean): about 25 levels of 255.
HOLE_COLOUR_DISTANCE = 0.1


def fill_enclosed_holes(image, probability: np.ndarray, options: MattingOptions | None = None) -> np.ndarray:
    """The map with every enclosed hole whose colours the background does not explain filled (float32 H x W).

    Why: the network often outlines a flat, plain body and leaves its inside
    out (a fur ring around a yellow disc: the map is a ring). A hole the
    object encloses is background seen through the object only if it looks
    like the background around the object; otherwise it is object. So a
    region below 0.5 that does not touch the image's border is filled (set to
    1) when more than ``hole_share`` of its inner pixels lie further than
    ``HOLE_COLOUR_DISTANCE`` from every colour of the background within 20
    network pixels of the object. The gap under an arm or a mug's handle shows
    the wall behind and stays. Works at two samples per network pixel, so it
    costs the same at 12 MP as at 800x600.
    """
    options = options or MattingOptions()
    rgb = _as_rgb(image)
    probability = np.asarray(probability, dtype=np.float32)
    height, width = probability.shape
    size, px = _two_per_network_pixel(height, width, options.network_size)
    low_p = _box_down(probability, size)
    inside = low_p >= 0.5
    if not inside.any():
        return probability
    ndimage = _ndimage()
    labels, count = ndimage.label(~inside)
    on_border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    enclosed = np.ones(count + 1, bool)
    enclosed[on_border] = False
    enclosed[0] = False
    if not enclosed.any():
        return probability
    distance_out = ndimage.distance_transform_edt(~inside)
    outer = ~enclosed[labels] & (labels > 0) & (low_p <= 0.04) & (distance_out <= 20 * px)
    if outer.sum() < 20:
        return probability
    colours = _box_down(rgb, size) / np.float32(255.0)  # per channel: no full-size float copy at 12 MP
    samples = colours[outer]
    if len(samples) > 4000:  # a fixed subsample: the result must not change from run to run
        samples = samples[np.random.default_rng(0).choice(len(samples), 4000, replace=False)]
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    candidate = enclosed & (areas >= 4 * px * px)
    core = candidate[labels] & (distance_out > px)  # the hole's inside, away from its blurred rim
    if not core.any():
        return probability
    from scipy.spatial import cKDTree

    nearest, _ = cKDTree(samples).query(colours[core])
    core_labels = labels[core]
    unlike = np.bincount(core_labels, weights=nearest > HOLE_COLOUR_DISTANCE, minlength=count + 1)
    sized = np.bincount(core_labels, minlength=count + 1)
    fill = candidate & (sized >= 4) & (unlike > options.hole_share * np.maximum(sized, 1))
    if not fill.any():
        return probability
    # One network pixel more, so the hole's soft rim goes with it.
    grown = ndimage.binary_dilation(fill[labels], iterations=max(1, round(px)))
    filled = np.asarray(Image.fromarray(grown).resize((width, height), Image.Resampling.NEAREST))
    out = probability.copy()
    out[filled] = 1.0
    return out


# ------------------------------------------------------------------ public


def _as_rgb(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise MattingError(f"expected an RGB image (uint8 H x W x 3), got {array.dtype} {array.shape}")
    return array


def estimate_alpha(image, probability: np.ndarray, options: MattingOptions | None = None,
                   trimap: np.ndarray | None = None, progress: bool | None = None) -> np.ndarray:
    """Full-size float32 alpha in [0, 1] from the photo and its saliency map.

    Args:
        image: RGB PIL image or uint8 H x W x 3 array.
        probability: float H x W map in [0, 1] at the image's size (``Prediction.probability``).
        options: :class:`MattingOptions` (rembg's thresholds and the scale knobs).
        trimap: a ready uint8 trimap (0 / 128 / 255) instead of :func:`make_trimap`'s (the map's holes
            are then left as they are).
        progress: show a tqdm bar over the tiles (default: when there are more than 4 of them).

    Returns:
        float32 H x W alpha; exactly 1 in the trimap's foreground (filled holes included), exactly the map
        (at most ``background_threshold`` / 255) in its background except, with ``colour_model``, where the
        colour model finds strands attached to the object within ``colour_reach`` network pixels of it.
    """
    options = options or MattingOptions()
    rgb = _as_rgb(image)
    probability = np.asarray(probability, dtype=np.float32)
    height, width = probability.shape
    if rgb.shape[:2] != probability.shape:
        raise MattingError(f"the mask is {width}x{height} but the image is {rgb.shape[1]}x{rgb.shape[0]}")
    if trimap is None:
        if options.fill_holes:
            probability = fill_enclosed_holes(rgb, probability, options)
        trimap = make_trimap(probability, options)
    unknown = trimap == 128
    alpha = trimap.astype(np.float32) / np.float32(255.0)
    # The sure background is not solved, so it keeps the plain mask's value (at most background_threshold):
    # stamping it 0 erased faint hair the network did see and made hair scenes worse than the plain mask.
    background = trimap == 0
    alpha[background] = probability[background]
    del background
    n_unknown = int(unknown.sum())
    if n_unknown == 0:
        return alpha
    if not (trimap == 255).any():  # nothing definitely object: matting has nothing to grow from
        alpha[unknown] = probability[unknown]
        return alpha

    ratio = max(height, width) / options.network_size
    scale = min(1.0, options.working_scale / ratio, math.sqrt(options.working_unknowns / n_unknown))
    if scale > 0.85:
        scale = 1.0
    if scale < 1.0:
        low_size = (max(8, round(width * scale)), max(8, round(height * scale)))
        work_image = np.asarray(Image.fromarray(rgb).resize(low_size, Image.Resampling.BOX))
        work_probability = np.asarray(Image.fromarray(probability, mode="F").resize(low_size, Image.Resampling.BOX))
        work_trimap = np.asarray(Image.fromarray(trimap).resize(low_size, Image.Resampling.NEAREST))
        # A low-res pixel is only "known" when every full-size pixel under it is.
        known_share = np.asarray(Image.fromarray((~unknown).astype(np.float32), mode="F").resize(
            low_size, Image.Resampling.BOX))
        work_trimap = np.where(known_share > 0.999, work_trimap, 128).astype(np.uint8)
    else:
        work_image, work_probability, work_trimap = rgb, probability, trimap
    work_alpha = work_trimap.astype(np.float32) / 255.0
    work_unknown = work_trimap == 128
    work_alpha[work_unknown] = work_probability[work_unknown]

    windows = _tiles(work_unknown, options.max_unknowns, margin=12)
    show = progress if progress is not None else len(windows) > 4
    from tqdm.auto import tqdm

    for outer_rows, outer_cols, inner_rows, inner_cols in tqdm(windows, desc="alpha matting", unit="tile",
                                                               disable=not show, leave=False):
        tile_trimap = work_trimap[outer_rows, outer_cols]
        if not (tile_trimap == 128).any():
            continue
        tile_image = work_image[outer_rows, outer_cols].astype(np.float64) / 255.0
        solved = _solve_tile(tile_image, tile_trimap, work_probability[outer_rows, outer_cols], options)
        if solved is None:
            continue  # this tile keeps the plain mask
        iy = slice(inner_rows.start - outer_rows.start, inner_rows.stop - outer_rows.start)
        ix = slice(inner_cols.start - outer_cols.start, inner_cols.stop - outer_cols.start)
        keep = work_unknown[inner_rows, inner_cols]
        target = work_alpha[inner_rows, inner_cols]
        target[keep] = solved[iy, ix][keep]

    if scale < 1.0:
        guide = work_image.astype(np.float32) / 255.0
        # A window of ~2 network pixels each side: enough samples to fit the strand-vs-backdrop colour model.
        radius = max(1, int(round(1.9 * ratio * scale)))
        coefficients = _guided_coefficients(guide, work_alpha, radius=radius, eps=1e-3)
        del guide
        rows_any = np.flatnonzero(unknown.any(axis=1))
        step = max(16, (1 << 20) // width)
        for top in range(int(rows_any[0]), int(rows_any[-1]) + 1, step):
            bottom = min(height, top + step)
            band_unknown = unknown[top:bottom]
            if not band_unknown.any():
                continue
            ab = _upsample_rows(coefficients, (width, height), top, bottom)
            rgbf = rgb[top:bottom].astype(np.float32) / np.float32(255.0)
            q = (ab[..., :3] * rgbf).sum(axis=-1) + ab[..., 3]
            np.clip(q, 0.0, 1.0, out=q)
            alpha[top:bottom][band_unknown] = q[band_unknown]
    else:
        alpha[unknown] = work_alpha[unknown]
    if options.map_floor:  # the solve may not erase what the network saw without a colour reason (see MattingOptions)
        lift = np.maximum(probability[unknown] - alpha[unknown], 0.0)
        alpha[unknown] += np.float32(options.map_floor) * lift
    if options.colour_model:
        factor = min(1.0, math.sqrt(options.colour_pixels / (height * width)))
        if factor < 1.0:  # 12 MP: the colour model at ~2.5 MP (strands stay 1-4 px wide there), then enlarged
            size = (max(8, round(width * factor)), max(8, round(height * factor)))
            mixed = colour_alpha(np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX)),
                                 _box_down(probability, size), options)
            if mixed is not None:
                mixed = tuple(_enlarge(np.stack(mixed, axis=-1), (width, height))[..., k] for k in range(2))
        else:
            mixed = colour_alpha(rgb, probability, options)
        if mixed is not None:
            colour, trust = mixed
            # In the sure background (where the solve cannot reach: strands the map never saw) the colour model
            # replaces the map. Inside the band the solve measured better, except where it erases strands whose
            # colour the body does not have (it propagates from the body): with ``colour_in_band`` the colour
            # model may only raise the band's alpha there, never lower it. And only what touches the band:
            # strands grow out of the object, a backdrop's own contrasty texture (brick, gravel) mostly does not.
            trust[trimap == 255] = 0.0
            if not options.colour_in_band:
                trust[unknown] = 0.0
            change = trust * (colour - alpha)
            change[unknown] = np.maximum(change[unknown], 0.0)
            del trust, colour
            labels, _ = _ndimage().label((change > 0.1) | (trimap != 0), structure=np.ones((3, 3), bool))
            touching = np.zeros(int(labels.max()) + 1, bool)
            touching[labels[trimap != 0]] = True
            touching[0] = False
            change[~touching[labels]] = 0.0
            del labels
            alpha += change
    return alpha


def estimate_foreground(image, alpha: np.ndarray, band: np.ndarray | None = None,
                        tile_pixels: int | None = None, *, max_pixels: int | None = None) -> np.ndarray:
    """The object's own colour (uint8 H x W x 3), so a cutout has no background halo.

    pymatting's multilevel foreground estimation (Germer et al. 2020) runs on
    the bounding boxes of the fractional band only (elsewhere the object's
    colour is the photo's), in pieces of at most ``tile_pixels``.

    Args:
        image: RGB PIL image or uint8 H x W x 3 array.
        alpha: float H x W alpha in [0, 1].
        band: where to estimate (default: where 0 < alpha < 1).
        tile_pixels: the most pixels one solve piece may have (default 1,500,000); a photo over twice
            this is estimated at about this size and enlarged into the band.
        max_pixels: the old spelling of `tile_pixels` (deprecated: ``max_pixels`` is the refusal limit
            everywhere else, ``--max-pixels`` and :func:`set_max_pixels`).

    Returns:
        uint8 H x W x 3: the photo, with the band's colours replaced by the estimated foreground.
    """
    if max_pixels is not None:
        if tile_pixels is not None:
            raise TypeError("estimate_foreground() got both tile_pixels and its deprecated spelling max_pixels")
        warnings.warn("estimate_foreground(max_pixels=) is deprecated; use estimate_foreground(tile_pixels=)",
                      DeprecationWarning, stacklevel=2)
        tile_pixels = max_pixels
    if tile_pixels is None:
        tile_pixels = 1_500_000
    rgb = _as_rgb(image)
    alpha = np.asarray(alpha, dtype=np.float32)
    band = ((alpha > 0.0) & (alpha < 1.0)) if band is None else band
    out = rgb.copy()
    if not band.any():
        return out
    height, width = alpha.shape
    if height * width > 2 * tile_pixels:
        # The object's colour varies slowly: estimate it at ~tile_pixels and enlarge it into the band.
        scale = math.sqrt(tile_pixels / (height * width))
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        small_rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
        small_alpha = np.asarray(Image.fromarray(alpha, mode="F").resize(size, Image.Resampling.BOX))
        small_fg = estimate_foreground(small_rgb, small_alpha, tile_pixels=tile_pixels)
        step = max(16, (1 << 20) // width)
        planes = [Image.fromarray(np.ascontiguousarray(small_fg[..., c])) for c in range(3)]
        for top in range(0, height, step):
            bottom = min(height, top + step)
            rows = band[top:bottom]
            if not rows.any():
                continue
            box = (0.0, top * size[1] / height, float(size[0]), bottom * size[1] / height)
            piece = np.stack([np.asarray(p.resize((width, bottom - top), Image.Resampling.BILINEAR, box=box))
                              for p in planes], axis=-1)
            out[top:bottom][rows] = piece[rows]
        return out
    side = max(64, int(math.sqrt(tile_pixels)))
    windows = _tiles(band, tile_pixels // 2, margin=16)
    for outer_rows, outer_cols, inner_rows, inner_cols in windows:
        h, w = outer_rows.stop - outer_rows.start, outer_cols.stop - outer_cols.start
        if h * w > tile_pixels:  # a thin diagonal band: its box is larger than its pixels; cut it further
            for y in range(outer_rows.start, outer_rows.stop, side):
                for x in range(outer_cols.start, outer_cols.stop, side):
                    _foreground_window(rgb, alpha, band, out, slice(y, min(y + side, outer_rows.stop)),
                                       slice(x, min(x + side, outer_cols.stop)), margin=16)
            continue
        _foreground_window(rgb, alpha, band, out, inner_rows, inner_cols, margin=16)
    return out


def _foreground_window(rgb, alpha, band, out, rows: slice, cols: slice, margin: int) -> None:
    height, width = alpha.shape
    y0, y1 = max(0, rows.start - margin), min(height, rows.stop + margin)
    x0, x1 = max(0, cols.start - margin), min(width, cols.stop + margin)
    inner = band[rows, cols]
    if not inner.any():
        return
    tile = rgb[y0:y1, x0:x1].astype(np.float64) / 255.0
    foreground = estimate_foreground_ml(tile, alpha[y0:y1, x0:x1].astype(np.float64))
    piece = foreground[rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0]
    target = out[rows, cols]
    target[inner] = np.clip(piece[inner] * 255.0 + 0.5, 0, 255).astype(np.uint8)


def matte(image, probability: np.ndarray, options: MattingOptions | None = None,
          progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Alpha and foreground colour of the salient object at the photo's full size.

    Args:
        image: RGB PIL image or uint8 H x W x 3 array.
        probability: float H x W saliency map in [0, 1] at the image's size.
        options: :class:`MattingOptions`.
        progress: tqdm bar over the solve tiles (default: on for long images).

    Returns:
        (alpha float32 H x W in [0, 1], foreground uint8 H x W x 3).
    """
    alpha = estimate_alpha(image, probability, options, progress=progress)
    return alpha, estimate_foreground(image, alpha)


def post_process_mask(mask: np.ndarray) -> np.ndarray:
    """rembg's ``--post-process-mask``: a morphological clean-up that makes the mask hard.

    An opening with a 3x3 cross (removes specks and one-pixel bridges), a
    Gaussian blur (sigma 2, 5x5 window) that rounds the outline, then a cut at
    level 127: the result is a 0/255 uint8 mask with smooth edges. It throws
    away soft edges, so it does not combine with alpha matting's fractional alpha
    (use it on masks, or before matting to clean the map the trimap is cut from).

    Args:
        mask: uint8 H x W (0..255) or float H x W in [0, 1].

    Returns:
        uint8 H x W of 0 and 255.
    """
    array = np.asarray(mask)
    if array.dtype != np.uint8:
        array = np.clip(np.asarray(array, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    cross = _ndimage().generate_binary_structure(2, 1)
    opened = _ndimage().grey_opening(array, footprint=cross)
    blurred = _ndimage().gaussian_filter(opened.astype(np.float32), sigma=2.0, truncate=1.0)
    return np.where(blurred < 127, 0, 255).astype(np.uint8)


__all__ = [
    "BACKGROUND_THRESHOLD",
    "ERODE_SIZE",
    "FOREGROUND_THRESHOLD",
    "MattingError",
    "MattingOptions",
    "NETWORK_SIZE",
    "estimate_alpha",
    "estimate_foreground",
    "fill_enclosed_holes",
    "make_trimap",
    "matte",
    "post_process_mask",
]
