"""The data behind the demo model's real-photo stage: composites (train/make_composites.py) and the
stroke-seeded validation masks (train/make_real_validation.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw

from u2net_hub.data import load_saliency_dataset

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "train" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.jpg", quality=90)
    return folder


def test_composites_form_a_paired_folder_with_visible_objects(photos, tmp_path):
    out = tmp_path / "composites"
    command = [sys.executable, str(ROOT / "train" / "make_composites.py"), "--photos", str(photos), "--out", str(out),
               "--num_composites", "6", "--num_synthetic", "2", "--size", "64", "--workers", "1"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    dataset = load_saliency_dataset(data_dir=str(out))
    assert len(dataset) == 8
    composites = _module("make_composites")
    composites._PHOTOS[:] = sorted(photos.glob("*.jpg"))
    for index in range(6):
        image, mask = composites.render_composite(0, index, 64)
        again, _ = composites.render_composite(0, index, 64)
        assert np.array_equal(np.asarray(image), np.asarray(again))  # deterministic in (seed, index, size)
        saved = np.asarray(Image.open(out / "masks" / f"c{index:06d}.png"))
        assert np.array_equal(saved, np.asarray(mask))  # the mask is written losslessly
        pixels, alpha = np.asarray(image, np.float32) / 255, np.asarray(mask) / 255
        inside, outside = pixels[alpha > 0.99].mean(0), pixels[alpha < 0.01].mean(0)
        assert 0.01 < alpha.mean() < 0.9
        assert np.linalg.norm(inside - outside) > 0.05  # the object is not camouflaged as a whole


def test_stroke_seeded_segmentation_recovers_a_known_shape():
    """A textured disc on a textured background: two strokes must give back the disc."""
    rng = np.random.default_rng(0)
    size = 96
    truth = Image.new("L", (size, size), 0)
    ImageDraw.Draw(truth).ellipse((24, 20, 72, 68), fill=255)
    disc = np.asarray(truth) > 127
    image = np.where(disc[..., None], [200, 80, 40], [60, 120, 170]) + rng.normal(0, 20, (size, size, 3))
    photo = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    validation = _module("make_real_validation")
    mask = validation.segment(photo, [[(0.45, 0.4), (0.55, 0.5)]], ["border", [(0.05, 0.9), (0.95, 0.9)]])
    predicted = mask > 127
    iou = (predicted & disc).sum() / (predicted | disc).sum()
    assert iou > 0.95, iou
