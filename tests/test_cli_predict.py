"""`u2net predict` through a real subprocess: inputs, outputs, formats, failures and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from u2net_hub import DEMO_MODEL, U2Net, predict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tiny_folder) -> Path:
    """A real save_pretrained folder: tiny variant, reference weights, 64x64 network input (fast)."""
    return tiny_folder


def _photo(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)
    return path


def _u2net(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "u2net_hub.cli", "predict", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_files_folders_globs_and_bad_inputs(tmp_path, model_dir):
    sizes = {
        "photos/a.jpg": (60, 40),
        "photos/sub/b.png": (30, 50),
        "photos/sub/deeper/c.bmp": (25, 25),
        "single/d.tif": (41, 17),
        "globbed/e.png": (20, 33),
        "globbed/f.png": (33, 20),
    }
    for i, (name, size) in enumerate(sizes.items()):
        _photo(tmp_path / name, size, mode="RGBA" if name.endswith("b.png") else "RGB", seed=i)
    (tmp_path / "photos" / "broken.png").write_text("not a png")
    (tmp_path / "photos" / "notes.txt").write_text("folders only yield image files")

    done = _u2net("photos", "single/d.tif", "globbed/*.png", "missing.jpg",
                  "--model", str(model_dir), "--output-dir", "out", "--batch-size", "2", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "6 ok, 2 failed" in done.stdout
    assert "broken.png" in done.stderr and "not an image" in done.stderr
    assert "missing.jpg: no such file" in done.stderr
    expected = {
        "out/a.png": (60, 40), "out/sub/b.png": (30, 50), "out/sub/deeper/c.png": (25, 25),
        "out/d.png": (41, 17), "out/e.png": (20, 33), "out/f.png": (33, 20),
    }
    written = {str(p.relative_to(tmp_path)) for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert written == set(expected) | {"out/.u2net-predict.json"}  # the marker that makes later runs skip it
    for name, size in expected.items():
        with Image.open(tmp_path / name) as mask:
            assert mask.mode == "L" and mask.size == size


def test_exact_normalized_masks_equal_the_python_api(tmp_path, model_dir):
    photo = _photo(tmp_path / "in" / "a.jpg", (70, 45))
    other = _photo(tmp_path / "in" / "b.png", (31, 52), seed=1)
    done = _u2net("in", "--model", str(model_dir), "-o", "out", "--no-fast", "--normalize", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 ok, 0 failed" in done.stdout
    model = U2Net.from_pretrained(model_dir)
    for source in (photo, other):
        expected = predict(model, source, fast=False, normalize=True).mask
        with Image.open(tmp_path / "out" / f"{source.stem}.png") as written:
            np.testing.assert_array_equal(np.asarray(written), np.asarray(expected))


def test_rgba_with_background_and_threshold(tmp_path, model_dir):
    photo = _photo(tmp_path / "a.jpg", (50, 30))
    done = _u2net(str(photo), "--model", str(model_dir), "-o", "out", "--format", "rgba",
                  "--background", "0,255,0", "--threshold", "0.5", "--exact", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--exact is deprecated; use --no-fast" in done.stderr  # the old spelling still runs the exact network
    with Image.open(tmp_path / "out" / "a.png") as written:
        rgba = np.asarray(written)
    assert rgba.shape == (30, 50, 4) and (rgba[..., 3] == 255).all()
    prediction = predict(U2Net.from_pretrained(model_dir), photo, fast=False)
    keep = prediction.probability >= 0.5
    assert 0 < keep.sum() < keep.size  # both kinds of pixels are present
    np.testing.assert_array_equal(rgba[~keep][:, :3], np.tile([0, 255, 0], ((~keep).sum(), 1)))
    np.testing.assert_array_equal(rgba[keep][:, :3], np.asarray(prediction.image)[keep])


def test_sides_format_and_name_collisions(tmp_path, model_dir):
    _photo(tmp_path / "x" / "a.png", (24, 36))
    _photo(tmp_path / "y" / "a.png", (36, 24), seed=1)
    done = _u2net("x/a.png", "y/a.png", "--model", str(model_dir), "-o", "out", "--format", "sides", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert (tmp_path / "out" / "outputs.csv").is_file()  # the renamed outputs are mapped to their inputs
    stems = ("a.png", "a.png-2")
    assert names == sorted(f"{s}_{k}.png" for s in stems for k in [*(f"side{i}" for i in range(1, 7)), "fused"])
    for stem, size in zip(stems, [(24, 36), (36, 24)]):
        for k in (1, 6):
            with Image.open(tmp_path / "out" / f"{stem}_side{k}.png") as side:
                assert side.mode == "L" and side.size == size


def test_webp_and_jpeg_outputs(tmp_path, model_dir):
    """--output-format: the same masks, lossy within a few grey levels; RGBA keeps its alpha in WebP."""
    photo = _photo(tmp_path / "in" / "a.jpg", (70, 45))
    _photo(tmp_path / "in" / "b.png", (31, 52), seed=1)
    base = ("in", "--model", str(model_dir), "--no-fast")
    assert _u2net(*base, "-o", "png", cwd=tmp_path).returncode == 0
    for fmt, suffix in (("webp", ".webp"), ("jpeg", ".jpg")):
        done = _u2net(*base, "-o", fmt, "--output-format", fmt, "--quality", "95", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in (tmp_path / fmt).iterdir() if not p.name.startswith(".")) == \
            [f"a{suffix}", f"b{suffix}"]
        for stem in ("a", "b"):
            with Image.open(tmp_path / fmt / f"{stem}{suffix}") as lossy, Image.open(tmp_path / "png" / f"{stem}.png") as png:
                assert lossy.format == fmt.upper() and lossy.size == png.size
                difference = np.abs(np.asarray(lossy.convert("L"), dtype=int) - np.asarray(png, dtype=int))
                assert difference.mean() < 3, (fmt, stem, difference.mean())
    done = _u2net(str(photo), "--model", str(model_dir), "--no-fast", "-o", "cut", "--format", "rgba",
                  "--output-format", "webp", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "cut" / "a.webp") as cut:
        assert cut.mode == "RGBA" and cut.size == (70, 45)
    for args, message in [
        (["--format", "rgba", "--output-format", "jpeg"], "no alpha channel"),
        (["--quality", "80"], "--quality applies to --output-format webp or jpeg"),
        (["--output-format", "webp", "--quality", "0"], "--quality must be from 1 to 100"),
        (["--output-format", "jpeg", "--compress-level", "6"], "--compress-level applies to PNG outputs"),
    ]:
        done = _u2net(*base, "-o", "refused", *args, cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "refused").exists()


def test_model_and_usage_errors_exit_2(tmp_path, model_dir):
    _photo(tmp_path / "a.jpg", (20, 20))
    (tmp_path / "weights.pth").write_bytes(b"\x80\x02}q\x00.")
    (tmp_path / "empty").mkdir()
    cases = [
        (["a.jpg", "--model", "someone/not-cached", "-o", "out"], "HF_HUB_OFFLINE"),
        (["a.jpg", "--model", "weights.pth", "-o", "out"], "u2net convert weights.pth"),
        (["a.jpg", "--model", str(model_dir), "-o", "out", "--background", "white"], "--format rgba"),
        (["empty", "--model", str(model_dir), "-o", "out"], "no images found"),
    ]
    for args, message in cases:
        done = _u2net(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    assert not (tmp_path / "out").exists()


def test_default_model_is_the_bundled_demo(tmp_path):
    _photo(tmp_path / "a.jpg", (20, 20))
    done = _u2net("a.jpg", "-o", "out", cwd=tmp_path)
    if Path(DEMO_MODEL).is_dir():
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / "a.png").is_file()
    else:
        assert done.returncode == 2
        assert "bundled demo model is missing" in done.stderr and "--model" in done.stderr


def test_python_dash_m_u2net_hub_is_the_u2net_command(tmp_path):
    """`python -m u2net_hub` (what `accelerate launch -m u2net_hub` runs) is the same command line."""
    done = subprocess.run([sys.executable, "-m", "u2net_hub", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: u2net ")
    assert all(command in done.stdout for command in ("predict", "convert", "evaluate", "export-onnx"))
    bad = subprocess.run([sys.executable, "-m", "u2net_hub", "predict"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
