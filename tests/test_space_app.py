"""The Space's event functions, called in-process against a real (small) checkpoint folder.

The app is loaded from ``space/app.py`` by path, as Spaces runs it; the model
is a real ``save_pretrained`` folder, and expected masks come from the library
itself (an independently loaded model), never from numbers written here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from u2net_hub import U2Net
from u2net_hub.processing import to_mask

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "space" / "app.py"


def load_space_app():
    """Import space/app.py under a unique module name (a bare `app` could clash with anything)."""
    name = "u2net_space_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APP_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def space():
    return load_space_app()


@pytest.fixture(scope="module")
def tiny_folder(tiny_folder) -> str:
    """The shared tiny checkpoint folder (64 px network input), as the text a user would type."""
    return str(tiny_folder)


@pytest.fixture(scope="module")
def remover(space, tiny_folder):
    return space.BackgroundRemover(space.Settings(default_model=tiny_folder))


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> str:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(61, 97, 3), dtype=np.uint8)
    pixels[15:45, 30:70] = (230, 40, 40)  # something in the middle
    path = tmp_path_factory.mktemp("photos") / "my photo.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def run(remover, image, model, threshold=0.0, normalize=False, background="transparent", colour="#2e86de"):
    """One request; the returned files are opened, so tests read (before, after), mask, cutout, gallery, info."""
    (before, after), mask, cutout_path, gallery, info = remover.segment(
        image, model, threshold, normalize, background, colour
    )
    for path in (before, after, mask, cutout_path, *(item for item, _ in gallery)):
        assert Path(path).is_file()
    return (
        (_open(before), _open(after)),
        _open(mask),
        cutout_path,
        [(_open(item), caption) for item, caption in gallery],
        info,
    )


def _open(path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


@pytest.fixture(scope="module")
def base(remover, tiny_folder, photo_path):
    """The default request (soft mask, transparent), made once for the tests that only read it."""
    return run(remover, photo_path, tiny_folder)


@pytest.fixture(scope="module")
def reference(tiny_folder, photo_path):
    """The library's own prediction for the same photo, from an independently loaded model."""
    return U2Net.from_pretrained(tiny_folder).predict(Image.open(photo_path), sides=True)


@pytest.fixture(scope="module")
def level(base) -> float:
    """A threshold that splits this photo's mask in two (the random model's maps are nearly flat)."""
    return float(np.median(np.asarray(base[1]))) / 255.0


# -------------------------------------------------------------------- segment


def test_segment_returns_every_output_at_the_right_size(base, reference, photo_path, space):
    (before, after), mask, cutout_path, gallery, info = base

    assert before.size == after.size == (97, 61)
    assert mask.mode == "L" and mask.size == (97, 61)
    # The mask is the library's own prediction for this photo and model.
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(reference.mask))

    cut = Image.open(cutout_path)
    assert cut.format == "PNG" and cut.mode == "RGBA" and cut.size == (97, 61)
    assert Path(cutout_path).name == "my-photo-cutout.png"
    assert mask.format == "PNG" and before.format == after.format == "WEBP"
    np.testing.assert_array_equal(np.asarray(cut)[..., 3], np.asarray(mask))  # transparent: alpha = mask
    np.testing.assert_array_equal(np.asarray(cut)[..., :3], np.asarray(Image.open(photo_path).convert("RGB")))

    assert len(gallery) == 7
    assert [caption for _, caption in gallery] == space.SIDE_CAPTIONS
    assert all(image.mode == "RGB" and image.size == gallery[0][0].size for image, _ in gallery)
    assert gallery[0][0].format == "PNG"  # lossless: the heat maps are data
    assert "97 × 61 px" in info and "ms" in info and "tiny" in info


def test_side_output_heat_maps_follow_the_side_probabilities(base, reference, space):
    """Each gallery image is its side map run through the colour table (not a copy of the fused map)."""
    gallery = base[3]
    size = gallery[0][0].size
    maps = space.side_maps_of(reference)
    assert len(maps) == 6
    for index, side in enumerate(maps, start=1):
        expected = space.heatmap(space.resize_probability(side, size))
        np.testing.assert_array_equal(np.asarray(gallery[index][0]), np.asarray(expected))


def test_threshold_makes_a_hard_mask(remover, tiny_folder, photo_path, reference, level):
    hard = np.asarray(run(remover, photo_path, tiny_folder, threshold=level)[1])
    assert set(np.unique(hard)) == {0, 255}
    np.testing.assert_array_equal(hard, np.asarray(to_mask(reference.probability, level)))


def test_normalisation_stretches_the_mask(remover, tiny_folder, photo_path):
    mask = np.asarray(run(remover, photo_path, tiny_folder, normalize=True)[1])
    assert mask.min() == 0 and mask.max() == 255


@pytest.mark.parametrize("background", ["white", "colour", "blur"])
def test_filled_backgrounds_are_opaque_and_keep_the_object(remover, tiny_folder, photo_path, level, background):
    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    (_, after), mask, cutout_path, _, _ = run(remover, photo_path, tiny_folder, level, False, background, "#ff0000")
    cut = np.asarray(Image.open(cutout_path))
    mask = np.asarray(mask)
    assert (cut[..., 3] == 255).all()
    inside, outside = mask == 255, mask == 0
    assert inside.any() and outside.any()
    np.testing.assert_array_equal(cut[inside][:, :3], photo[inside])
    if background == "white":
        assert (cut[outside][:, :3] == 255).all()
    elif background == "colour":
        assert (cut[outside][:, :3] == (255, 0, 0)).all()
    else:
        assert not np.array_equal(cut[outside][:, :3], photo[outside])  # blurred, not the original pixels
    assert after.mode == "RGB"


def test_transparent_preview_shows_a_checkerboard(remover, tiny_folder, photo_path, level, space):
    (_, after), mask, *_ = run(remover, photo_path, tiny_folder, threshold=level)
    outside = np.asarray(mask) == 0
    preview = np.asarray(after).astype(float)
    board = np.asarray(space.checkerboard(after.size)).astype(float)
    photo = np.asarray(Image.open(photo_path).convert("RGB")).astype(float)
    # The preview is lossy WebP: close to the checkerboard where transparent, far from the photo there.
    assert np.abs(preview - board)[outside].mean() < 12
    assert np.abs(preview - photo)[outside].mean() > 40


def test_large_photos_are_downscaled_before_processing(space, remover, tiny_folder, tmp_path):
    """Above shrink_to_pixels the photo is reduced first (JPEG: decoded at a reduced scale), and the summary says so."""
    settings = space.Settings(default_model=tiny_folder, shrink_to_pixels=20_000)
    small_limit = space.BackgroundRemover(settings, models=remover.models)
    path = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path)
    (before, _), mask, cutout_path, _, info = run(small_limit, str(path), tiny_folder)
    assert mask.size[0] * mask.size[1] <= 20_000
    assert abs(mask.size[0] / mask.size[1] - 640 / 480) < 0.05
    assert Image.open(cutout_path).size == mask.size
    assert "640 × 480 px" in info and "processed at" in info


def test_exif_rotated_photo_reports_its_upright_size(space, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    Image.new("RGB", (400, 200), (10, 200, 10)).save(path, exif=exif)
    photo, original = space.read_photo(str(path), shrink_to_pixels=10_000)
    assert original == (200, 400)
    assert photo.size[1] > photo.size[0] and photo.size[0] * photo.size[1] <= 10_000


def test_display_copies_are_bounded(space, remover, tiny_folder, tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (2100, 300), (90, 90, 200)).save(path)
    (before, after), mask, _, gallery, _ = run(remover, str(path), tiny_folder)
    assert mask.size == (2100, 300)
    assert max(before.size) == space.DISPLAY_SIDE and before.size == after.size
    assert max(gallery[0][0].size) == space.GALLERY_SIDE


# --------------------------------------------------------------------- errors


def test_bad_images_raise_user_errors(remover, tiny_folder, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    spaced = tmp_path / "a folder with spaces" / "photo 1.png"
    spaced.parent.mkdir()
    spaced.write_bytes(b"GIF89a" + b"\x00" * 10)
    for image in (str(corrupt), str(text), str(tmp_path / "missing.png"), str(spaced)):
        with pytest.raises(gr.Error) as caught:
            run(remover, image, tiny_folder)
        assert "Cannot read the image" in caught.value.message
        assert str(tmp_path) not in caught.value.message  # no server paths in user-facing text
    with pytest.raises(gr.Error, match="Upload an image first"):
        run(remover, None, tiny_folder)


def test_bad_settings_raise_user_errors(remover, tiny_folder, photo_path):
    with pytest.raises(gr.Error, match="threshold"):
        run(remover, photo_path, tiny_folder, threshold=1.5)
    with pytest.raises(gr.Error, match="Unknown background"):
        run(remover, photo_path, tiny_folder, background="plaid")
    with pytest.raises(gr.Error, match="colour"):
        run(remover, photo_path, tiny_folder, background="color", colour="not-a-colour")


@pytest.mark.filterwarnings("ignore:Model not loaded")
def test_unloadable_models_give_a_message_and_the_good_one_keeps_working(remover, tiny_folder, photo_path, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    wrong_weights = tmp_path / "wrong"
    U2Net(variant="tiny", input_size=64).save_pretrained(wrong_weights)
    config = json.loads((wrong_weights / "config.json").read_text())
    config["variant"] = "full"
    config.pop("stages")
    (wrong_weights / "config.json").write_text(json.dumps(config))

    cases = {
        str(tmp_path / "nowhere"): "not a folder",
        str(broken): "could not be loaded",
        str(wrong_weights): "could not be loaded",
        "u2net-hub/no-such-model": "Hub",  # tests run with HF_HUB_OFFLINE=1
        "not a valid id!": "neither a folder",
        "": "choose a model",
    }
    for name, words in cases.items():
        with pytest.raises(gr.Error) as caught:
            run(remover, photo_path, name)
        assert words in caught.value.message and "Model not loaded" in caught.value.message
        status = remover.load_model(name)  # warns instead of raising
        assert status.startswith("**Model not loaded**") and words in status
    assert run(remover, photo_path, tiny_folder)[1].size == (97, 61)
    assert remover.load_model(tiny_folder).startswith("**Loaded**")


def test_upload_preprocessing_turns_unreadable_files_into_messages(space, tmp_path, photo_path):
    from gradio.data_classes import ImageData

    component = space.readable_uploads(gr.Image(type="filepath", image_mode=None))
    corrupt = tmp_path / "upload.png"
    corrupt.write_bytes(b"definitely not a png")
    with pytest.raises(gr.Error, match="not an image this app can read"):
        component.preprocess(ImageData(path=str(corrupt), orig_name="upload.png"))
    assert component.preprocess(ImageData(path=photo_path, orig_name="my photo.png")) == photo_path


# --------------------------------------------------------------------- models


def test_models_load_once_under_concurrent_requests(space, tiny_folder):
    cache = space.ModelCache(max_models=2)
    results, errors = [], []

    def worker():
        try:
            results.append(cache.get(tiny_folder))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert cache.loads == 1 and all(result is results[0] for result in results)
    assert cache.get(tiny_folder + "/") is results[0]  # the same folder, spelled differently


def test_cache_evicts_the_least_recently_used_model(space, tiny_folder, tmp_path):
    other = tmp_path / "other"
    U2Net(variant="tiny", input_size=64).save_pretrained(other)
    cache = space.ModelCache(max_models=1)
    first = cache.get(tiny_folder)
    cache.get(str(other))
    assert cache.cached() == [str(other.resolve())]
    assert cache.get(tiny_folder) is not first and cache.loads == 3


def test_local_folders_can_be_disabled_except_presets(space, tiny_folder, tmp_path):
    other = tmp_path / "typed-in"
    U2Net(variant="tiny", input_size=64).save_pretrained(other)
    cache = space.ModelCache(allow_local=False, always_allowed=(tiny_folder,))
    assert cache.get(tiny_folder).model.variant == "tiny"
    with pytest.raises(space.ModelLoadError, match="disabled"):
        cache.get(str(other))


def test_settings_come_from_the_environment(space, monkeypatch, tiny_folder):
    monkeypatch.setenv("U2NET_MODEL", tiny_folder)
    monkeypatch.setenv("U2NET_SPACE_CONCURRENCY", "3")
    monkeypatch.setenv("U2NET_SPACE_SHRINK_TO_PIXELS", "1234")
    monkeypatch.setenv("U2NET_SPACE_MAX_PIXELS", "999")  # the old name, read only when the new one is not set
    monkeypatch.setenv("SPACE_ID", "someone/u2net")
    monkeypatch.delenv("U2NET_SPACE_ALLOW_LOCAL", raising=False)
    settings = space.Settings.from_env()
    assert (settings.default_model, settings.concurrency, settings.shrink_to_pixels) == (tiny_folder, 3, 1234)
    assert settings.allow_local_models is False  # a public Space does not read arbitrary server folders
    values = [value for _, value in settings.model_choices()]
    assert values[0] == tiny_folder and space.DEMO_MODEL in values and settings.full_model in values
    monkeypatch.delenv("U2NET_MODEL")
    assert space.Settings.from_env().default_model == space.DEMO_MODEL
    monkeypatch.delenv("U2NET_SPACE_SHRINK_TO_PIXELS")
    assert space.Settings.from_env().shrink_to_pixels == 999


# ----------------------------------------------------------------- rendering


def test_heatmap_brightness_rises_with_probability(space):
    lut = space.HEAT_LUT.astype(float)
    luminance = lut @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(luminance) > 0).all()
    ramp = space.heatmap(np.linspace(0, 1, 256, dtype=np.float32)[None, :].repeat(4, axis=0))
    assert ramp.size == (256, 4) and ramp.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(ramp)[0], space.HEAT_LUT)


def test_demo_exposes_named_endpoints_and_examples(space, remover):
    demo = space.build_demo(remover)
    names = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert {"segment", "load_model"} <= names
    examples = sorted(space.EXAMPLES_DIR.glob("*"))
    assert len(examples) >= 3
    for path in examples:
        assert Image.open(path).size[0] >= 64  # real, readable photos shipped with the Space
