"""Images in, network tensors out, and probability maps back to images.

Pre-processing follows the authors' test script (see REFERENCE.md): RGB,
resize to ``input_size`` x ``input_size`` without keeping the aspect ratio,
divide by the image's *own* maximum (not by 255), then ImageNet mean/std.
The resize uses PIL's bilinear filter (with PIL's antialiasing when
shrinking); rembg uses LANCZOS, available through ``resample=``.

Decisions worth knowing:

* every PIL mode becomes RGB: grey is repeated on the three channels, a
  transparent image (RGBA, LA, PA, P with transparency, numpy HxWx4) is
  composited over **white** (``ALPHA_BACKGROUND``), so transparent pixels read
  as a plain background instead of whatever colour they happen to store;
* 16-bit and 32-bit integer images are scaled from 0..65535 to 0..255; float
  images are read as 0..1 when their maximum is at most 1, else as 0..255;
* the EXIF orientation is applied, so masks come out the way photos are shown;
* anything that cannot be read raises :class:`ImageLoadError` (a ValueError)
  naming the input and the reason, including declared sizes above PIL's
  decompression-bomb limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``, ~179 MP; raise
  it for trusted, larger files with :func:`set_max_pixels`, ``--max-pixels`` on the command line).
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageColor, ImageFilter, ImageOps, UnidentifiedImageError

from .configs import Preprocessing
from .matting import NETWORK_SIZE, MattingOptions, matte, post_process_mask as clean_mask

#: Colour that transparent pixels are composited on before the network sees them.
ALPHA_BACKGROUND = (255, 255, 255)

#: The file extensions read as images when walking folders: `u2net predict`, `u2net evaluate`'s
#: folder pairing and the dataset loader all use this one list (files named explicitly are always tried).
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".avif",
})

#: EXIF orientations that swap width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


class ImageLoadError(ValueError):
    """An input that cannot be turned into an RGB image (with the reason and the input's name)."""


# --------------------------------------------------------------------- loading


def _describe(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, np.ndarray):
        return f"numpy array of shape {src.shape} and dtype {src.dtype}"
    if isinstance(src, Image.Image):
        return f"PIL image ({src.mode}, {src.size[0]}x{src.size[1]})"
    return type(src).__name__


#: Set by :func:`set_max_pixels`; None: twice PIL's MAX_IMAGE_PIXELS (where PIL itself refuses).
_max_pixels: int | None = None

#: How a user raises the limit, named in the refusal.
RAISE_LIMIT_HINT = ("if you trust the file, allow more pixels: --max-pixels N on the u2net command line, "
                    "u2net_hub.processing.set_max_pixels(N) in Python")


def set_max_pixels(limit: int | None) -> None:
    """Refuse images that declare more than `limit` pixels (None: back to PIL's default, ~179 MP).

    Why: the limit guards against decompression bombs; a trusted, very large
    scan needs a higher one. PIL's own check is moved up to match.

    Args:
        limit: the largest width x height accepted, or None for the default.
    """
    global _max_pixels
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"max_pixels must be a positive integer or None, got {limit!r}")
    _max_pixels = limit
    if limit is not None:
        # PIL warns above its MAX_IMAGE_PIXELS and refuses above twice that: keep its refusal above ours.
        Image.MAX_IMAGE_PIXELS = max(int(Image.MAX_IMAGE_PIXELS or 0), limit)


def _pixel_limit() -> int | None:
    """PIL raises DecompressionBombError above twice its MAX_IMAGE_PIXELS; we use the same limit by default."""
    if _max_pixels is not None:
        return _max_pixels
    limit = Image.MAX_IMAGE_PIXELS
    return None if not limit else 2 * int(limit)


def check_pixels(size: tuple[int, int], name: str) -> None:
    """Refuse an empty image or one that declares more pixels than the limit (see :func:`set_max_pixels`).

    Args:
        size: (width, height) as declared.
        name: how the error names the image.

    Raises:
        ImageLoadError: naming the image and the limit, and how to raise it.
    """
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{name}: the image is empty ({width}x{height} pixels)")
    limit = _pixel_limit()
    if limit is not None and width * height > limit:
        raise ImageLoadError(
            f"{name}: the image declares {width}x{height} = {width * height:,} pixels, more than the "
            f"{limit:,} allowed (a possible decompression bomb); {RAISE_LIMIT_HINT}"
        )


def _draft_size(size: tuple[int, int], pixels: int) -> tuple[int, int]:
    width, height = size
    scale = math.sqrt(pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def _open_encoded(src: Any, name: str, shrink_to_pixels: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Open a file path, bytes or a binary file object, fully decoded; every failure becomes ImageLoadError.

    Returns the image and its upright size as stored (before any reduced-scale decode). A JPEG
    larger than `shrink_to_pixels` is decoded at a reduced scale (PIL's draft mode), so even a huge
    photo never costs its full-size decode.
    """
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise ImageLoadError(f"{name}: no such file")
        if path.is_dir():
            raise ImageLoadError(f"{name}: is a folder, not an image file")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{name}: the file is empty (0 bytes)")
        opener: Any = path
    elif isinstance(src, (bytes, bytearray, memoryview)):
        opener = io.BytesIO(bytes(src))
    else:
        opener = src
    try:
        with warnings.catch_warnings():
            # Between MAX_IMAGE_PIXELS and twice that PIL only warns; check_pixels decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(opener)
            check_pixels(image.size, name)
            width, height = image.size
            upright = (width, height)
            if shrink_to_pixels is not None and width * height > shrink_to_pixels and image.format == "JPEG":
                if image.getexif().get(0x0112, 1) in _TRANSPOSING_ORIENTATIONS:
                    upright = (height, width)
                image.draft("RGB", _draft_size((width, height), shrink_to_pixels))
            elif image.getexif().get(0x0112, 1) in _TRANSPOSING_ORIENTATIONS:
                upright = (height, width)
            image.load()
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"{name}: refused as a possible decompression bomb ({error}); {RAISE_LIMIT_HINT}"
        ) from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Truncated data ("image file is truncated"), broken headers, unreadable files.
        raise ImageLoadError(f"{name}: cannot decode the image ({error})") from None
    return image, upright


def _float_to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ImageLoadError(f"{name}: the image contains NaN or infinite values")
    values = values.astype(np.float32, copy=False)
    top = float(values.max()) if values.size else 0.0
    scale = 255.0 if top <= 1.0 else 1.0
    return np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)


def _int_to_uint8(values: np.ndarray) -> np.ndarray:
    """Integers above 255 are read as 16-bit data (0..65535), anything wider is scaled by its maximum."""
    top = int(values.max()) if values.size else 0
    if top <= 255:
        return np.clip(values, 0, 255).astype(np.uint8)
    divisor = 257.0 if top <= 65535 else top / 255.0
    return np.clip(values.astype(np.float32) / divisor + 0.5, 0, 255).astype(np.uint8)


def _to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    if np.issubdtype(values.dtype, np.integer):
        return _int_to_uint8(values)
    if np.issubdtype(values.dtype, np.floating):
        return _float_to_uint8(values, name)
    raise ImageLoadError(
        f"{name}: unsupported dtype {values.dtype}; use uint8 (0..255), uint16, bool or float (0..1 or 0..255)"
    )


def _composite_on_background(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 over ALPHA_BACKGROUND with a uint8 HxW alpha, in integer arithmetic (no float copies)."""
    a = alpha.astype(np.uint16)[..., None]
    background = np.asarray(ALPHA_BACKGROUND, dtype=np.uint16)
    out = rgb.astype(np.uint16) * a + background * (255 - a) + 127
    return (out // 255).astype(np.uint8)


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        raise ImageLoadError(
            f"{name}: looks channels-first (C, H, W); pass array.transpose(1, 2, 0) (H, W, C) instead"
        )
    if array.ndim == 4:
        raise ImageLoadError(f"{name}: a 4-D array is a batch; pass a list of (H, W, C) images instead")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageLoadError(f"{name}: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    check_pixels((array.shape[1], array.shape[0]), name)
    values = _to_uint8(np.asarray(array), name)
    if values.ndim == 2:
        values = np.repeat(values[..., None], 3, axis=2)
    elif values.shape[-1] == 4:
        values = _composite_on_background(values[..., :3], values[..., 3])
    return Image.fromarray(np.ascontiguousarray(values), mode="RGB")


def _pil_to_rgb(image: Image.Image, name: str) -> Image.Image:
    check_pixels(image.size, name)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(image.convert("RGBA"))
        return Image.fromarray(_composite_on_background(rgba[..., :3], rgba[..., 3]), mode="RGB")
    if mode in ("I", "F") or mode.startswith("I;"):
        values = np.asarray(image)
        if values.dtype.byteorder not in ("=", "|"):
            values = values.astype(values.dtype.newbyteorder("="))
        return _from_array(values, name)
    if mode == "RGBX":
        return image.convert("RGB")
    try:
        return image.convert("RGB")  # 1, L, CMYK, YCbCr, LAB, HSV
    except (ValueError, OSError) as error:
        raise ImageLoadError(f"{name}: cannot convert PIL mode {mode!r} to RGB ({error})") from None


def _apply_exif_orientation(image: Image.Image, name: str) -> Image.Image:
    try:
        if image.getexif().get(0x0112, 1) in (None, 1):  # no rotation: skip exif_transpose's full copy
            return image
        return ImageOps.exif_transpose(image)
    except Exception as error:  # a broken EXIF block must not make a readable photo unusable
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({error})", stacklevel=3)
        return image


def load_image(src: Any, shrink_to_pixels: int | None = None, *, max_pixels: int | None = None) -> Image.Image:
    """Any supported input -> an RGB PIL image, upright according to its EXIF orientation.

    With `shrink_to_pixels`, a larger image is scaled down (aspect kept) so a server's memory
    per request stays bounded; a JPEG is then decoded at a reduced scale to begin with.
    The upright size before scaling is in ``image.info["original_size"]`` of a scaled image.
    (Images over the decompression-bomb limit of :func:`set_max_pixels` are still refused first.)

    Args:
        src: a path (str or Path), encoded bytes, a binary file object, a PIL image of
            any mode, or a numpy array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of uint8,
            uint16, bool or float.
        shrink_to_pixels: the most pixels the returned image may have; None: no limit.
        max_pixels: the old spelling of `shrink_to_pixels` (deprecated: ``max_pixels`` is the refusal limit
            everywhere else, ``--max-pixels`` and :func:`set_max_pixels`).

    Returns:
        An RGB image (the input itself when it already is an upright RGB PIL image within the limit).

    Raises:
        ImageLoadError: the input cannot be read, naming it and the reason.
    """
    if max_pixels is not None:
        if shrink_to_pixels is not None:
            raise TypeError("load_image() got both shrink_to_pixels and its deprecated spelling max_pixels")
        warnings.warn("load_image(max_pixels=) is deprecated; use load_image(shrink_to_pixels=)",
                      DeprecationWarning, stacklevel=2)
        shrink_to_pixels = max_pixels
    if shrink_to_pixels is not None and (
        not isinstance(shrink_to_pixels, int) or isinstance(shrink_to_pixels, bool) or shrink_to_pixels < 1
    ):
        raise ValueError(f"shrink_to_pixels must be a positive integer or None, got {shrink_to_pixels!r}")
    name = _describe(src)
    upright = None
    if isinstance(src, torch.Tensor):
        raise ImageLoadError(
            f"got a torch.Tensor of shape {tuple(src.shape)}; predict() takes images (PIL, numpy H x W x C, "
            "paths). For a pre-processed (B, 3, H, W) tensor call the model directly: model(x)"
        )
    if isinstance(src, Image.Image):
        image = src
    elif isinstance(src, np.ndarray):
        return _bounded(_from_array(src, name), shrink_to_pixels, None)
    elif isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(src, "read"):
        image, upright = _open_encoded(src, name, shrink_to_pixels)
    else:
        raise ImageLoadError(
            f"unsupported input of type {type(src).__name__}; expected a path, bytes, a PIL image or a numpy array"
        )
    image = _apply_exif_orientation(image, name)
    return _bounded(_pil_to_rgb(image, name), shrink_to_pixels, upright)


def _bounded(image: Image.Image, shrink_to_pixels: int | None, original: tuple[int, int] | None) -> Image.Image:
    """`image` scaled down to at most `shrink_to_pixels` (LANCZOS), recording the size it had before."""
    original = original or image.size
    width, height = image.size
    if shrink_to_pixels is not None and width * height > shrink_to_pixels:
        image = image.resize(_draft_size(image.size, shrink_to_pixels), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if image.size != original:
        image.info["original_size"] = original
    return image


#: EXIF orientations that swap width and height (transposed and 90/270-degree rotations).
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


def load_image_reduced(src: Any, min_size: int) -> tuple[Image.Image, tuple[int, int]]:
    """An RGB image decoded only as large as needed, and the upright (width, height) of the full image.

    Why: a mask needs the photo's size but not its pixels. JPEG files and bytes
    are decoded in draft mode (libjpeg scales by 1/2, 1/4 or 1/8 while
    decoding) to the smallest scale whose sides stay >= ``min_size``, which for
    a 12 MP photo is ~10x less decoding than :func:`load_image`. Other inputs
    are loaded in full. Same errors as :func:`load_image`.
    """
    if not (isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(src, "read")):
        image = load_image(src)
        return image, image.size
    name = _describe(src)
    opener: Any = src
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file() or path.stat().st_size == 0:
            image = load_image(src)  # the usual clear error
            return image, image.size
    elif isinstance(src, (bytes, bytearray, memoryview)):
        opener = io.BytesIO(bytes(src))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(opener)
            full = image.size
            check_pixels(full, name)
            if image.format == "JPEG" and min(full) > 2 * min_size:
                image.draft("RGB", (min_size, min_size))
            image.load()
    except ImageLoadError:
        raise
    except Exception:  # noqa: BLE001 - let the full loader produce its precise message
        image = load_image(src)
        return image, image.size
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, as load_image does
        orientation = 1
    size = (full[1], full[0]) if orientation in _SWAPPING_ORIENTATIONS else full
    return _pil_to_rgb(_apply_exif_orientation(image, name), name), size


def is_batch(images: Any) -> bool:
    """Whether `images` is a batch: lists and tuples are, everything else is one image.

    Args:
        images: what was passed to predict.

    Returns:
        True for a list or tuple.
    """
    return isinstance(images, (list, tuple))


def load_images(images: Any) -> list[Image.Image]:
    """:func:`load_image` for one image or a batch.

    Args:
        images: one supported input or a list/tuple of them.

    Returns:
        The RGB images, in order.

    Raises:
        ImageLoadError: an empty list, or an input that cannot be read.
    """
    items = list(images) if is_batch(images) else [images]
    if not items:
        raise ImageLoadError("got an empty list of images")
    return [load_image(item) for item in items]


# -------------------------------------------------------------- pre-processing


def _resample(resample: str | int) -> int:
    if isinstance(resample, str):
        try:
            return _RESAMPLE[resample.lower()]
        except KeyError:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}") from None
    return int(resample)


def image_to_array(image: Image.Image, preprocessing: Preprocessing, resample: str | int = "bilinear") -> np.ndarray:
    """One RGB image as the network input, exactly as the original test script prepares it.

    Args:
        image: an RGB image of any size.
        preprocessing: the model's input size, mean, std and divide-by-max rule.
        resample: the resize filter ("bilinear", "lanczos", "bicubic", "nearest" or a PIL constant).

    Returns:
        A float32 (3, S, S) array, S being ``preprocessing.input_size``.
    """
    size = preprocessing.input_size
    resized = image.resize((size, size), _resample(resample))
    x = np.asarray(resized, dtype=np.float32)
    if preprocessing.divide_by_max:
        top = float(x.max())
        x /= top if top > 0 else 1.0  # an all-black image stays black instead of becoming NaN
    else:
        x /= 255.0
    x -= np.asarray(preprocessing.mean, dtype=np.float32)
    x /= np.asarray(preprocessing.std, dtype=np.float32)
    return x.transpose(2, 0, 1)


def preprocess(images: Any, preprocessing: Preprocessing, resample: str | int = "bilinear") -> torch.Tensor:
    """An image or a list of images (any supported input) as one network batch.

    Args:
        images: one supported input or a list/tuple of them.
        preprocessing: the model's ``preprocessing``.
        resample: the resize filter (see :func:`image_to_array`).

    Returns:
        A float32 (B, 3, S, S) tensor.
    """
    loaded = load_images(images)
    return torch.from_numpy(np.stack([image_to_array(im, preprocessing, resample) for im in loaded]))


# ------------------------------------------------------------- post-processing


def normalize_map(probability: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The original "normPRED": min-max to [0, 1] per map; a constant map is returned unchanged.

    Args:
        probability: a float map.
        out: where to write; ``out=probability`` works in place (no extra full-size copy for big photos).

    Returns:
        The normalised float32 map.
    """
    low, high = np.float32(probability.min()), np.float32(probability.max())
    span = np.float32(high - low)  # in float32, so the maximum maps to exactly 1.0
    if span <= 1e-12:
        return probability
    out = np.subtract(probability, low, out=out, dtype=np.float32)
    out /= span
    return np.clip(out, 0.0, 1.0, out=out)


#: Above this many output pixels, maps are resized in horizontal bands straight into the result.
_BANDED_RESIZE_PIXELS = 1 << 22


def resize_probability(probability: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to ``size`` (width, height) through PIL's float32 "F" mode.

    Large outputs are produced band by band (PIL's ``box`` argument keeps the
    sampling grid of the whole image), so a big result costs one float32
    plane and no full-size temporary copies.

    Args:
        probability: an H x W float map.
        size: the target (width, height).

    Returns:
        The float32 map at `size`, clipped to [0, 1] (the input itself when the size already matches).
    """
    probability = np.ascontiguousarray(probability, dtype=np.float32)
    width, height = int(size[0]), int(size[1])
    if (probability.shape[1], probability.shape[0]) == (width, height):
        return probability
    source = Image.fromarray(probability, mode="F")
    src_h, src_w = probability.shape
    out = np.empty((height, width), dtype=np.float32)
    band = height if width * height <= _BANDED_RESIZE_PIXELS else max(1, (1 << 20) // width)
    scale = src_h / height
    for top in range(0, height, band):
        bottom = min(height, top + band)
        box = None if band == height else (0.0, top * scale, float(src_w), bottom * scale)
        piece = source.resize((width, bottom - top), Image.Resampling.BILINEAR, box=box)
        out[top:bottom] = np.asarray(piece, dtype=np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def postprocess(probability: Any, size: tuple[int, int], normalize: bool = False) -> np.ndarray:
    """A network-sized probability map brought back to an image's size.

    Args:
        probability: an H x W map (tensor or array; singleton dimensions are dropped).
        size: the image's (width, height).
        normalize: min-max the map ("normPRED") after resizing it.

    Returns:
        A new float32 array in [0, 1] at `size`.
    """
    if isinstance(probability, torch.Tensor):
        probability = probability.detach().float().cpu().numpy()
    probability = np.asarray(probability, dtype=np.float32)
    probability = np.squeeze(probability)
    if probability.ndim != 2:
        raise ValueError(f"expected one H x W probability map, got shape {probability.shape}")
    resized = resize_probability(probability, size)
    if resized is probability:  # same size: never hand out a view of the caller's (or a batch's) array
        resized = resized.copy()
    if normalize:
        # After the resize, so the map the caller gets spans exactly [0, 1]; the original
        # normalised at 320x320 first, which differs only where resizing smooths the extremes.
        normalize_map(resized, out=resized)
    return resized


def to_mask(probability: np.ndarray, threshold: float | None = None) -> Image.Image:
    """A [0, 1] float map as an 8-bit mask image.

    Args:
        probability: an H x W float map.
        threshold: None for a soft mask (round(255 * p)); a value in [0, 1] for a hard 0/255 mask
            (255 where ``p >= threshold``).

    Returns:
        A PIL "L" image.
    """
    if threshold is not None:
        threshold = check_threshold(threshold)
    probability = np.asarray(probability)
    if probability.ndim != 2:
        raise ValueError(f"expected one H x W probability map, got shape {probability.shape}")
    out = np.empty(probability.shape, dtype=np.uint8)
    rows = max(1, (1 << 20) // max(1, probability.shape[1]))  # ~4 MB of float32 at a time: no full-size temporaries
    for top in range(0, probability.shape[0], rows):
        block = probability[top : top + rows]
        if threshold:
            out[top : top + rows] = np.where(block >= threshold, np.uint8(255), np.uint8(0))
        else:
            scaled = block * np.float32(255.0)
            scaled += np.float32(0.5)
            np.clip(scaled, 0, 255, out=scaled)
            out[top : top + rows] = scaled.astype(np.uint8)
    return Image.fromarray(out, mode="L")


def mask_at_size(probability: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A network-sized [0, 1] map -> an 8-bit "L" mask at ``size`` (width, height), resized in uint8.

    Why: rounding to 8 bits first and letting PIL resize the uint8 plane is ~4x
    cheaper than resizing a float32 plane and rounding that (no full-size float
    copy), and differs from ``to_mask(postprocess(probability, size))`` by at
    most one grey level. Returns an image of exactly ``size``.
    """
    small = to_mask(np.asarray(probability, dtype=np.float32))
    size = (int(size[0]), int(size[1]))
    return small if small.size == size else small.resize(size, Image.Resampling.BILINEAR)


def check_threshold(threshold: Any) -> float:
    """A threshold as a float in [0, 1] (0 and None mean "keep the soft mask" to its callers).

    Args:
        threshold: a number (or numeric text) between 0 and 1; None counts as 0.

    Returns:
        The threshold as a float.

    Raises:
        ValueError: not a number, NaN, or outside [0, 1].
    """
    try:
        value = float(0.0 if threshold is None else threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number between 0 and 1, got {threshold!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (a share of the probability), got {value}")
    return value


# ---------------------------------------------------------------------- cutout


#: The choice that means "the colour given separately" (the Space's colour picker).
COLOUR_CHOICES = ("colour", "color")  # "color": the old spelling, still accepted


def parse_background(background: Any, colour: Any = None) -> None | str | tuple[int, int, int]:
    """What a cutout's background should be, from what a user typed or picked.

    Args:
        background: None, "transparent" or "none" (keep transparency), "blur", a colour
            name ("white"), "#rrggbb", "R,G,B" text, an (r, g, b) sequence, or "colour"
            to use `colour`.
        colour: the colour meant by ``background="colour"`` (a name or "#rrggbb").

    Returns:
        None (transparent), "blur", or an (r, g, b) tuple.

    Raises:
        ValueError: a background or colour that cannot be read.
    """
    if background is None:
        return None
    if isinstance(background, str):
        text = background.strip().lower()
        if text in ("", "none", "transparent"):
            return None
        if text == "blur":
            return "blur"
        if text in COLOUR_CHOICES:
            try:
                return tuple(ImageColor.getrgb(str(colour or "").strip())[:3])
            except ValueError:
                raise ValueError(f"cannot read the colour {colour!r}; use a name or '#rrggbb'") from None
        match = re.fullmatch(r"(\d+)\s*,\s*(\d+)\s*,\s*(\d+)", text)
        if match:
            return parse_background(tuple(int(v) for v in match.groups()))
        try:
            colour = ImageColor.getrgb(text)
        except ValueError:
            raise ValueError(
                f"unknown background {background!r}; use None, 'blur', a colour name ('white'), '#rrggbb' or (r, g, b)"
            ) from None
        return tuple(colour[:3])
    if isinstance(background, Sequence) and len(background) in (3, 4):
        values = tuple(background)
        if all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in values):
            return tuple(int(v) for v in values[:3])
    raise ValueError(f"background must be None, 'blur', a colour name or (r, g, b) with 0..255 values, got {background!r}")


def cutout(
    image: Any,
    probability: Any,
    background: Any = None,
    threshold: float | None = None,
    *,
    alpha_matting: bool = False,
    alpha_matting_foreground_threshold: int = 240,
    alpha_matting_background_threshold: int = 10,
    alpha_matting_erode_size: int = 10,
    network_size: int | None = None,
    post_process_mask: bool = False,
    progress: bool | None = None,
) -> Image.Image:
    """The photo with the saliency as alpha, as an RGBA image at the photo's size.

    Args:
        image: the photo (any supported input).
        probability: a float map in [0, 1] or an 8-bit "L" mask at the image's size.
        background: None keeps transparency (soft alpha = the mask); a colour or "blur"
            (the photo itself, blurred) fills it (see :func:`parse_background`).
        threshold: in (0, 1], a hard 0/255 alpha; None or 0 keeps it soft.
        alpha_matting: re-estimate the alpha from the photo's colours in the band where the
            map is unsure (hair, fur; see :mod:`u2net_hub.matting`) and replace the RGB there
            by the estimated object colour, so no background shows through at the edge.
        alpha_matting_foreground_threshold: rembg's knob, with its default.
        alpha_matting_background_threshold: rembg's knob, with its default.
        alpha_matting_erode_size: rembg's knob, with its default.
        network_size: the input side of the network the map came from (default 320), which
            sets how wide the band is.
        post_process_mask: first apply rembg's morphological clean-up
            (:func:`u2net_hub.matting.post_process_mask`: opening, blur, cut at 127), which makes the mask hard.
        progress: a tqdm bar over the matting tiles (None: on for long images).

    Returns:
        An RGBA image at the photo's size (opaque when a background fills it).
    """
    rgb = load_image(image)
    if alpha_matting and threshold:
        raise ValueError("alpha_matting estimates a soft alpha; it cannot be combined with a threshold")
    if isinstance(probability, Image.Image):
        alpha = probability.convert("L")
        if threshold:
            level = int(np.ceil(check_threshold(threshold) * 255 + 0.5))  # mask >= level <=> probability >= threshold
            alpha = alpha.point(lambda v: 255 if v >= level else 0)
    else:
        alpha = to_mask(np.asarray(probability, dtype=np.float32), threshold)
    if alpha.size != rgb.size:
        raise ValueError(f"the mask is {alpha.size[0]}x{alpha.size[1]} but the image is {rgb.size[0]}x{rgb.size[1]}")
    fill = parse_background(background)
    if post_process_mask:
        alpha = Image.fromarray(clean_mask(np.asarray(alpha)), mode="L")
    if alpha_matting:
        options = MattingOptions(
            foreground_threshold=alpha_matting_foreground_threshold,
            background_threshold=alpha_matting_background_threshold,
            erode_size=alpha_matting_erode_size,
            network_size=network_size or NETWORK_SIZE,
        )
        if isinstance(probability, Image.Image) or post_process_mask:
            soft = np.asarray(alpha, dtype=np.float32) / np.float32(255.0)
        else:
            soft = np.asarray(probability, dtype=np.float32)
        matted, colour = matte(rgb, soft, options, progress=progress)
        alpha = to_mask(matted)
        rgb = Image.fromarray(colour, mode="RGB")
    if fill is None:
        out = rgb.convert("RGBA")
        out.putalpha(alpha)
        return out
    if fill == "blur":
        radius = max(2.0, max(rgb.size) / 40.0)
        backdrop = (load_image(image) if alpha_matting else rgb).filter(ImageFilter.GaussianBlur(radius))
    else:
        backdrop = Image.new("RGB", rgb.size, fill)
    return Image.composite(rgb, backdrop, alpha).convert("RGBA")


__all__ = [
    "ALPHA_BACKGROUND",
    "COLOUR_CHOICES",
    "IMAGE_EXTENSIONS",
    "ImageLoadError",
    "check_threshold",
    "cutout",
    "image_to_array",
    "is_batch",
    "load_image",
    "load_image_reduced",
    "load_images",
    "mask_at_size",
    "normalize_map",
    "parse_background",
    "postprocess",
    "preprocess",
    "resize_probability",
    "to_mask",
]
