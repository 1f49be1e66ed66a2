"""Image loading (modes, EXIF, bad input), the original pre-processing, post-processing and cutouts."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from u2net_hub import ImageLoadError, Preprocessing
from u2net_hub.processing import (
    cutout,
    load_image,
    normalize_map,
    parse_background,
    postprocess,
    preprocess,
    to_mask,
)

WHITE = (255, 255, 255)


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header claims another size (valid CRC): what a decompression bomb looks like."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + data[24:29]
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF)
    return bytes(data)


# ------------------------------------------------------------------ modes


def _mode_images() -> dict[str, tuple[Image.Image, tuple[int, int, int]]]:
    """One 4x3 image per mode and the RGB colour its pixel (0, 0) must become."""
    palette = Image.new("P", (4, 3), 1)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.info["transparency"] = 1  # index 1 is transparent -> composited on white
    la = Image.new("LA", (4, 3), (80, 0))
    return {
        "L": (Image.new("L", (4, 3), 77), (77, 77, 77)),
        "1": (Image.new("1", (4, 3), 1), WHITE),
        "LA": (la, WHITE),
        "P": (palette, WHITE),
        "RGBA": (Image.new("RGBA", (4, 3), (200, 0, 0, 0)), WHITE),
        "CMYK": (Image.new("CMYK", (4, 3), (0, 255, 255, 0)), (255, 0, 0)),
        "I;16": (Image.fromarray(np.full((3, 4), 257 * 100, dtype=np.uint16)), (100, 100, 100)),
        "I": (Image.new("I", (4, 3), 257 * 40), (40, 40, 40)),
        "F": (Image.fromarray(np.full((3, 4), 0.5, dtype=np.float32)), (128, 128, 128)),
        "RGB": (Image.new("RGB", (4, 3), (1, 2, 3)), (1, 2, 3)),
    }


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_every_mode_becomes_rgb_with_sensible_values(mode):
    image, expected = _mode_images()[mode]
    assert image.mode == mode
    rgb = load_image(image)
    assert rgb.mode == "RGB" and rgb.size == (4, 3)
    assert rgb.getpixel((0, 0)) == expected


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("1", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"),
                                      ("I;16", "PNG"), ("CMYK", "TIFF"), ("F", "TIFF"), ("I", "TIFF")])
def test_every_mode_loads_from_a_file(tmp_path, mode, fmt):
    image, expected = _mode_images()[mode]
    path = tmp_path / f"image.{fmt.lower()}"
    image.save(path, fmt)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (4, 3)
    assert rgb.getpixel((0, 0)) == expected


def test_partial_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 128))
    assert load_image(rgba).getpixel((0, 0)) == (127, 127, 127)


# ------------------------------------------------------------------ numpy


@pytest.mark.parametrize(
    "array,expected",
    [
        (np.full((5, 6), 9, np.uint8), (9, 9, 9)),
        (np.full((5, 6, 1), 9, np.uint8), (9, 9, 9)),
        (np.dstack([np.full((5, 6), v, np.uint8) for v in (1, 2, 3)]), (1, 2, 3)),
        (np.dstack([np.full((5, 6), v, np.uint8) for v in (1, 2, 3, 0)]), WHITE),
        (np.full((5, 6, 3), 65535, np.uint16), WHITE),
        (np.full((5, 6, 3), 1.0, np.float32), WHITE),
        (np.full((5, 6, 3), 0.2, np.float64), (51, 51, 51)),
        (np.full((5, 6, 3), 200.0, np.float32), (200, 200, 200)),
        (np.ones((5, 6), bool), WHITE),
        (np.full((5, 6), 30, np.int64), (30, 30, 30)),
    ],
    ids=["HW", "HW1", "HWC", "HWC-alpha", "uint16", "float-1", "float64", "float-255", "bool", "int64"],
)
def test_numpy_arrays(array, expected):
    rgb = load_image(array)
    assert rgb.mode == "RGB" and rgb.size == (6, 5)
    assert rgb.getpixel((0, 0)) == expected


@pytest.mark.parametrize(
    "array,match",
    [
        (np.zeros((3, 40, 50), np.uint8), "channels-first"),
        (np.zeros((2, 40, 50, 3), np.uint8), "batch"),
        (np.zeros((40, 50, 2), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((40, 50, 5), np.uint8), r"\(H, W, 3\)"),
        (np.zeros(40, np.uint8), r"\(H, W\)"),
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((4, 5, 3), np.complex64), "dtype complex64"),
        (np.array([["a"]]), "dtype"),
        (np.full((4, 5), np.nan, np.float32), "NaN"),
    ],
)
def test_unsupported_arrays_raise_clear_errors(array, match):
    with pytest.raises(ImageLoadError, match=match):
        load_image(array)


def test_tensors_and_other_objects_are_refused_with_a_hint():
    with pytest.raises(ImageLoadError, match=r"model\(x\)"):
        load_image(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ImageLoadError, match="unsupported input of type int"):
        load_image(42)
    assert issubclass(ImageLoadError, ValueError)


# ------------------------------------------------------------------ files


def test_paths_bytes_and_file_objects(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (7, 4), (9, 8, 7)).save(path)
    for source in (path, str(path), path.read_bytes(), path.open("rb")):
        image = load_image(source)
        assert image.size == (7, 4) and image.getpixel((3, 2)) == (9, 8, 7)


def test_missing_folder_empty_and_non_image_files(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("this is not a picture")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg: not an image"):
        load_image(tmp_path / "notes.jpg")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(tmp_path, fmt):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.\w+: cannot decode"):
        load_image(path)


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_declared_size(100_000, 100_000))
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)


def test_bomb_limit_follows_pil_setting(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)  # 10,000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000)  # hard limit 8,000: refused
    with pytest.raises(ImageLoadError, match="decompression bomb.*--max-pixels N.*set_max_pixels"):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)  # PIL only warns: loads, no warning leaks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).size == (100, 100)


def test_zero_size_pil_image():
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(Image.new("RGB", (0, 5)))


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:10, :10] = (255, 0, 0)  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    upright = load_image(path)
    assert upright.size == (40, 60)
    r, g, b = upright.getpixel((35, 4))  # displayed top-right
    assert r > 200 and g < 60 and b < 60
    r, g, b = upright.getpixel((4, 4))
    assert r < 60


# --------------------------------------------------------- pre-processing


def _manual(image: Image.Image, size: int, by_max: bool) -> np.ndarray:
    x = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64)
    x = x / (x.max() if by_max else 255.0)
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return x.transpose(2, 0, 1)


@pytest.mark.parametrize("by_max", [True, False])
def test_preprocess_matches_the_original_recipe(by_max):
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 128, (30, 50, 3), dtype=np.uint8)),  # max < 255: /max matters
              Image.fromarray(rng.integers(0, 256, (70, 20, 3), dtype=np.uint8))]
    setup = Preprocessing(input_size=24, divide_by_max=by_max)
    batch = preprocess(images, setup)
    assert batch.shape == (2, 3, 24, 24) and batch.dtype == torch.float32
    for got, image in zip(batch, images):
        np.testing.assert_allclose(got.numpy(), _manual(image, 24, by_max), atol=1e-5)
    single = preprocess(images[0], setup)
    assert single.shape == (1, 3, 24, 24)


def test_black_image_gives_no_nan_and_resample_is_selectable():
    setup = Preprocessing(input_size=16)
    assert torch.isfinite(preprocess(np.zeros((8, 8, 3), np.uint8), setup)).all()
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 50, 3), dtype=np.uint8))
    assert not torch.equal(preprocess(image, setup), preprocess(image, setup, resample="lanczos"))
    with pytest.raises(ValueError, match="resample"):
        preprocess(image, setup, resample="cubic-ish")
    with pytest.raises(ImageLoadError, match="empty list"):
        preprocess([], setup)


# -------------------------------------------------------- post-processing


def test_postprocess_resizes_and_normalises():
    small = np.linspace(0.2, 0.6, 16 * 16, dtype=np.float32).reshape(16, 16)
    out = postprocess(torch.from_numpy(small)[None, None], (40, 30))
    assert out.shape == (30, 40) and out.dtype == np.float32
    assert 0.2 - 1e-6 <= out.min() and out.max() <= 0.6 + 1e-6
    normalised = postprocess(small, (40, 30), normalize=True)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    np.testing.assert_allclose(normalised, (out - out.min()) / (out.max() - out.min()), atol=1e-6)
    constant = np.full((4, 4), 0.3, np.float32)
    np.testing.assert_array_equal(normalize_map(constant), constant)
    same = postprocess(small, (16, 16))
    assert same is not small and np.array_equal(same, small)


def test_to_mask_rounds_and_thresholds():
    probability = np.array([[0.0, 0.5, 1.0, 0.3]], np.float32)
    assert list(np.asarray(to_mask(probability))[0]) == [0, 128, 255, 77]
    assert list(np.asarray(to_mask(probability, threshold=0.4))[0]) == [0, 255, 255, 0]
    with pytest.raises(ValueError, match="threshold"):
        to_mask(probability, threshold=1.5)


# ------------------------------------------------------------------ cutout


def test_cutout_backgrounds():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    probability = np.zeros((20, 30), np.float32)
    probability[5:15, 10:20] = 1.0
    probability[0, 0] = 0.5

    transparent = cutout(image, probability)
    assert transparent.mode == "RGBA" and transparent.size == (30, 20)
    assert np.array_equal(np.asarray(transparent)[..., 3], np.asarray(to_mask(probability)))
    assert np.array_equal(np.asarray(transparent)[..., :3], np.asarray(image))

    white = np.asarray(cutout(image, probability, background="white"))
    assert (white[..., 3] == 255).all()
    assert (white[19, 29, :3] == 255).all() and np.array_equal(white[10, 15, :3], np.asarray(image)[10, 15])

    for colour in ((0, 255, 0), "#00ff00", "lime"):
        green = np.asarray(cutout(image, probability, background=colour))
        assert tuple(green[19, 29, :3]) == (0, 255, 0)

    blurred = np.asarray(cutout(image, probability, background="blur"))
    assert blurred.shape == (20, 30, 4) and (blurred[..., 3] == 255).all()
    assert not np.array_equal(blurred[19, 29, :3], np.asarray(image)[19, 29])

    hard = np.asarray(cutout(image, probability, threshold=0.6))[..., 3]
    assert set(np.unique(hard)) == {0, 255} and hard[0, 0] == 0 and hard[10, 15] == 255


def test_cutout_errors():
    image = Image.new("RGB", (8, 6))
    with pytest.raises(ValueError, match="8x6"):
        cutout(image, np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match="unknown background"):
        cutout(image, np.zeros((6, 8), np.float32), background="plaid")
    with pytest.raises(ValueError, match="background"):
        parse_background((300, 0, 0))
    assert parse_background("none") is None and parse_background([1, 2, 3]) == (1, 2, 3)


def test_large_maps_are_resized_in_bands_like_one_resize():
    from u2net_hub.processing import resize_probability

    small = np.random.default_rng(4).random((64, 64), dtype=np.float32)
    whole = np.asarray(Image.fromarray(small, mode="F").resize((2500, 1900), Image.Resampling.BILINEAR))
    banded = resize_probability(small, (2500, 1900))  # 4.75 MP: above the banding threshold
    assert banded.shape == (1900, 2500) and banded.flags.writeable
    np.testing.assert_allclose(banded, np.clip(whole, 0, 1), atol=1e-4)


def test_threshold_on_an_8bit_mask_agrees_with_the_probability():
    probability = np.linspace(0, 1, 1001, dtype=np.float32).reshape(1, -1)
    image = Image.new("RGB", (1001, 1))
    for threshold in (0.3, 0.5, 0.9):
        from_mask = np.asarray(cutout(image, to_mask(probability), threshold=threshold))[..., 3]
        from_float = np.asarray(cutout(image, probability, threshold=threshold))[..., 3]
        assert np.abs(from_mask.astype(int) - from_float).astype(bool).sum() <= 2  # only at the quantisation step


def test_shrink_to_pixels_scales_down_and_max_pixels_is_its_deprecated_spelling(tmp_path):
    """`max_pixels` is the refusal limit everywhere (--max-pixels, set_max_pixels); load_image's scaling limit is
    `shrink_to_pixels`, and the old keyword still works, with a warning."""
    path = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(path)
    shrunk = load_image(path, shrink_to_pixels=10_000)
    assert shrunk.size[0] * shrunk.size[1] <= 10_000 and shrunk.info["original_size"] == (400, 300)
    with pytest.warns(DeprecationWarning, match="shrink_to_pixels"):
        old = load_image(path, max_pixels=10_000)
    assert old.size == shrunk.size
    with pytest.raises(TypeError, match="both"):
        load_image(path, shrink_to_pixels=10_000, max_pixels=10_000)
    with pytest.raises(ValueError, match="shrink_to_pixels must be a positive integer"):
        load_image(path, shrink_to_pixels=0)
