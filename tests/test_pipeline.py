"""The overlapped folder pipeline: outputs against the sequential recipe, order, bounded memory, bad files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from u2net_hub import ImageLoadError, U2Net
from u2net_hub.inference import iter_predictions
from u2net_hub.pipeline import IN_FLIGHT_BATCHES, Ready, cpu_lanes, default_workers, png_options, run, save_image, write_png
from u2net_hub.processing import image_to_array, load_image, load_image_reduced, mask_at_size

INPUT_SIZE = 64


@pytest.fixture(scope="module")
def model(reference_dir) -> U2Net:
    net = U2Net(variant="tiny", input_size=INPUT_SIZE)
    net.load_state_dict(load_file(reference_dir / "tiny_random_weights.safetensors"))
    return net.eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model) -> Path:
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


def _array(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
    array[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] += 150  # a bright object
    return array


def _folder(root: Path) -> dict[str, tuple[int, int]]:
    """Photos of several sizes (odd ones, smaller and larger than the network), modes and an EXIF rotation."""
    root.mkdir(parents=True, exist_ok=True)
    shown = {}
    specs = [("a_rgb.jpg", 97, 61, "RGB"), ("b_grey.png", 33, 120, "L"), ("c_rgba.png", 150, 101, "RGBA"),
             ("d_palette.png", 64, 64, "P"), ("e_cmyk.jpg", 45, 77, "CMYK"), ("f_small.bmp", 17, 23, "RGB")]
    for i, (name, width, height, mode) in enumerate(specs):
        image = Image.fromarray(_array(width, height, i))
        image = image.convert(mode) if mode != "RGBA" else image.convert("RGBA")
        if mode == "RGBA":
            alpha = np.full((height, width), 255, np.uint8)
            alpha[: height // 3] = 40
            image.putalpha(Image.fromarray(alpha))
        image.save(root / name)
        shown[name] = (width, height)
    # A phone photo stored sideways: 80x130 on disk, 130x80 upright (orientation 6 = rotate 90 CW to show).
    stored = Image.fromarray(_array(80, 130, 9))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(root / "g_rotated.jpg", exif=exif.tobytes(), quality=95)
    shown["g_rotated.jpg"] = (130, 80)
    return shown


def _sequential(model: U2Net, path: Path) -> tuple[Image.Image, np.ndarray]:
    """The recipe written out, one image at a time: upright RGB, resize, /max, mean/std, exact net, float resize back."""
    image = load_image(path)
    x = np.asarray(image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    x = x / x.max()
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None]).logits
    small = torch.sigmoid(logits)[0, 0].numpy()
    full = np.asarray(Image.fromarray(small, mode="F").resize(image.size, Image.Resampling.BILINEAR))
    mask = np.floor(np.clip(full, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, mask


def _u2net(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "u2net_hub", "predict", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_cli_masks_and_cutouts_are_within_one_grey_level_of_the_sequential_path(tmp_path, model, model_dir):
    shown = _folder(tmp_path / "in")
    (tmp_path / "in" / "c_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # in the middle
    for fmt in ("mask", "rgba"):
        done = _u2net("in", "--model", str(model_dir), "-o", f"out_{fmt}", "--format", fmt, "--no-fast",
                      "--batch-size", "3", cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert f"{len(shown)} ok, 1 failed" in done.stdout
        assert "c_broken.jpg" in done.stderr and done.stderr.count("skipped") == 1
        written = sorted(p.name for p in (tmp_path / f"out_{fmt}").glob("*.png"))
        assert written == sorted(Path(name).with_suffix(".png").name for name in shown)
        for name, size in shown.items():
            image, expected = _sequential(model, tmp_path / "in" / name)
            assert image.size == size
            with Image.open(tmp_path / f"out_{fmt}" / Path(name).with_suffix(".png").name) as out:
                assert out.size == size
                got = np.asarray(out)
            if fmt == "mask":
                assert got.ndim == 2
                alpha = got
            else:
                assert got.shape == (size[1], size[0], 4)
                np.testing.assert_array_equal(got[..., :3], np.asarray(image))  # the photo itself, untouched
                alpha = got[..., 3]
            assert np.abs(alpha.astype(int) - expected).max() <= 1, name


def test_iter_predictions_keeps_order_and_reports_a_bad_file_in_its_place(tmp_path, model):
    shown = _folder(tmp_path)
    names = sorted(shown)
    (tmp_path / "broken.png").write_text("not a png")
    items = [tmp_path / n for n in names[:3]] + [tmp_path / "broken.png"] + [tmp_path / n for n in names[3:]]
    results = list(iter_predictions(model, items, batch_size=2, fast=False, sides=False, workers=2))
    assert [index for index, _ in results] == list(range(len(items)))
    assert isinstance(results[3][1], ImageLoadError) and "broken.png" in str(results[3][1])
    for (index, prediction), item in zip(results, items):
        if index == 3:
            continue
        assert prediction.size == shown[item.name]
        _, expected = _sequential(model, item)
        assert np.abs(np.asarray(prediction.mask, dtype=int) - expected).max() <= 1
        # The float map is the exact one: rounding it gives the sequential mask to the grey level.
        np.testing.assert_array_equal(np.floor(prediction.probability * 255 + 0.5).astype(np.uint8), expected)


def test_images_in_flight_stay_under_the_bound_on_many_files(tmp_path, model):
    """60 small files at batch size 2: never more than IN_FLIGHT_BATCHES batches between being read and written."""
    batch_size, count = 2, 60
    for i in range(count):
        Image.fromarray(_array(40 + i % 7, 30 + i % 5, i)).save(tmp_path / f"{i:03d}.png")
    lock = threading.Lock()
    state = {"pulled": 0, "finished": 0, "peak": 0}

    def files():
        for i in range(count):
            with lock:
                state["pulled"] += 1
                state["peak"] = max(state["peak"], state["pulled"] - state["finished"])
            yield tmp_path / f"{i:03d}.png"

    def write(index, prediction):
        prediction.mask.save(tmp_path / f"{index:03d}_mask.png")
        with lock:
            state["finished"] += 1
        return index

    results = list(iter_predictions(model, files(), batch_size=batch_size, fast=False, sides=False, then=write))
    assert results == [(i, i) for i in range(count)]
    assert state["finished"] == count
    assert 2 <= state["peak"] <= IN_FLIGHT_BATCHES * batch_size, state


def test_reduced_decode_keeps_the_upright_full_size_and_png_options_are_lossless(tmp_path):
    big = Image.fromarray(np.tile(_array(120, 90, 3), (10, 10, 1)))  # 1200x900
    exif = Image.Exif()
    exif[0x0112] = 8
    big.save(tmp_path / "big.jpg", exif=exif.tobytes())
    reduced, size = load_image_reduced(tmp_path / "big.jpg", INPUT_SIZE)
    assert size == (900, 1200) == load_image(tmp_path / "big.jpg").size  # upright: rotated 90 degrees
    assert reduced.mode == "RGB" and INPUT_SIZE <= min(reduced.size) < 900 // 2
    _, size = load_image_reduced((tmp_path / "big.jpg").read_bytes(), INPUT_SIZE)
    assert size == (900, 1200)
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image_reduced(tmp_path / "missing.jpg", INPUT_SIZE)

    probability = np.random.default_rng(0).random((INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    mask = mask_at_size(probability, (301, 157))
    assert mask.mode == "L" and mask.size == (301, 157)
    for image in (mask, big.convert("RGBA")):
        encoded = {}
        for level in (None, 6):
            buffer = io.BytesIO()
            image.save(buffer, "PNG", **png_options(image.mode, level))
            encoded[level] = buffer.getvalue()
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encoded[level]))), np.asarray(image))
        assert len(encoded[6]) < 1.5 * len(encoded[None])
    with pytest.raises(ValueError, match="compress_level"):
        png_options("L", 10)


@pytest.mark.parametrize("fast", [False, True])
def test_forward_passes_in_lanes_give_the_masks_of_one_pass_and_leave_the_thread_count(tmp_path, model, fast):
    """Two single-threaded passes on half a batch each (the CPU default on two cores) against one pass."""
    shown = _folder(tmp_path)
    items = [tmp_path / name for name in sorted(shown)]
    seen: list[tuple[str, int]] = []
    hook = model.register_forward_pre_hook(lambda *_: seen.append((threading.current_thread().name,
                                                                   torch.get_num_threads())))
    threads = torch.get_num_threads()
    preprocessing = model.preprocessing

    def prepare(item):
        image = load_image(item)
        return Ready(image_to_array(image, preprocessing), image.size)

    def finish(size, fused, sides):
        return np.asarray(mask_at_size(fused, size))

    try:
        masks = {}
        for lanes in (1, 2):
            torch.set_num_threads(2)
            seen.clear()
            results = list(run(model, items, prepare, finish, batch_size=4, fast=fast, sides=False, lanes=lanes))
            assert [index for index, _ in results] == list(range(len(items)))
            masks[lanes] = [mask for _, mask in results]
            assert torch.get_num_threads() == 2  # the calling thread's setting, restored for later threads too
            if not fast:
                lane_calls = [count for name, count in seen if name.startswith("u2net-lane")]
                assert len(lane_calls) == (0 if lanes == 1 else len(seen)) and set(lane_calls) <= {1}, seen
        for one, two in zip(masks[1], masks[2]):
            assert one.shape == two.shape
            assert np.abs(one.astype(int) - two).max() <= (0 if not fast else 1)
        if not fast:  # model.predict(list, batch_size=...) runs the same pipeline, lanes included
            torch.set_num_threads(2)
            seen.clear()
            batched = model.predict(items, batch_size=4, fast=False, sides=False)
            assert any(name.startswith("u2net-lane") for name, _ in seen), seen
            for item, prediction in zip(items, batched):
                alone = model.predict(item, fast=False, sides=False)
                np.testing.assert_allclose(prediction.probability, alone.probability, atol=1e-5)
    finally:
        hook.remove()
        torch.set_num_threads(threads)
    assert cpu_lanes(torch.device("cpu"), 8, 2) == 2
    assert cpu_lanes(torch.device("cpu"), 8, 1) == cpu_lanes(torch.device("cpu"), 1, 2) == 1
    assert cpu_lanes(torch.device("cuda"), 8, 16) == cpu_lanes(torch.device("cpu"), 8, 2, compile=True) == 1


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_write_png_is_lossless_in_bands_and_not_larger_than_pillows_fast_settings(tmp_path, mode):
    rng = np.random.default_rng(1)
    height, width = 1900, 2500  # several 4 MB bands in every mode
    if mode == "L":  # a mask as the pipeline makes it: a network-sized map brought up to the photo's size
        image = mask_at_size(rng.random((INPUT_SIZE, INPUT_SIZE), dtype=np.float32), (width, height))
    else:
        photo = np.tile(_array(250, 190, 2), (10, 10, 1))
        image = Image.fromarray(photo).convert(mode)
        if mode == "RGBA":
            image.putalpha(mask_at_size(rng.random((INPUT_SIZE, INPUT_SIZE), dtype=np.float32), (width, height)))
    write_png(image, tmp_path / "ours.png")
    with Image.open(tmp_path / "ours.png") as back:
        assert back.mode == mode and back.size == (width, height)
        np.testing.assert_array_equal(np.asarray(back), np.asarray(image))
    image.save(tmp_path / "pillow.png", **png_options(mode))
    assert (tmp_path / "ours.png").stat().st_size < 1.1 * (tmp_path / "pillow.png").stat().st_size
    buffer = io.BytesIO()
    save_image(image, buffer)
    assert buffer.getvalue() == (tmp_path / "ours.png").read_bytes()
    with pytest.raises(ValueError, match="mode"):
        write_png(image.convert("I"), io.BytesIO())


def test_decoding_threads_use_every_core_beside_a_gpu_and_leave_cores_to_a_cpu_network(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))  # a 16-core GPU machine
    assert default_workers("cuda") == 16 and default_workers(torch.device("cuda:1")) == 16
    assert default_workers("cpu") == 4 and default_workers() == 4
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert default_workers("cuda") == 1
