"""predict(): sizes, batching, normPRED per image, side outputs, cutouts, the fast path, bad input, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from u2net_hub import ImageLoadError, Prediction, U2Net, predict
from u2net_hub.pipeline import _forward

INPUT_SIZE = 64  # the network's side in these tests: small keeps the suite fast on 2 cores


@pytest.fixture(scope="module")
def model(make_tiny_model) -> U2Net:
    """The tiny variant with the reference weights (non-trivial BatchNorm statistics)."""
    return make_tiny_model(input_size=INPUT_SIZE)


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
    array[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] += 150  # a bright object
    return Image.fromarray(array)


def _by_hand(model: U2Net, image: Image.Image) -> tuple[np.ndarray, list[np.ndarray]]:
    """The original test script written out: resize, /max, mean/std, forward, sigmoid, bilinear back."""
    x = np.asarray(image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    x = x / x.max()
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])
    maps = [torch.sigmoid(t)[0, 0].numpy() for t in out.all_logits]
    back = [np.asarray(Image.fromarray(m, mode="F").resize(image.size, Image.Resampling.BILINEAR)) for m in maps]
    return back[0], back[1:]


def test_single_image_matches_the_original_pipeline(model):
    image = _photo(90, 50)
    prediction = predict(model, image, fast=False)
    assert isinstance(prediction, Prediction)
    fused, sides = _by_hand(model, image)
    assert prediction.probability.shape == (50, 90) and prediction.probability.dtype == np.float32
    np.testing.assert_allclose(prediction.probability, fused, atol=1e-5)
    assert len(prediction.side_probabilities) == 6
    for got, expected in zip(prediction.side_probabilities, sides):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    mask = np.asarray(prediction.mask)
    assert prediction.mask.mode == "L" and prediction.mask.size == image.size
    np.testing.assert_array_equal(mask, np.floor(prediction.probability * 255 + 0.5).astype(np.uint8))
    assert np.abs(mask.astype(int) - np.round(fused * 255)).max() <= 1
    assert [m.size for m in prediction.side_masks] == [image.size] * 6


def test_a_list_of_mixed_sizes_and_types_gives_a_list_at_each_size(model, tmp_path):
    path = tmp_path / "photo.png"
    _photo(33, 71, seed=3).save(path)
    inputs = [_photo(90, 50), np.asarray(_photo(40, 40, seed=1)), _photo(17, 120, seed=2).convert("L"), str(path)]
    predictions = predict(model, inputs, batch_size=3, fast=False)
    assert isinstance(predictions, list) and len(predictions) == 4
    assert [p.mask.size for p in predictions] == [(90, 50), (40, 40), (17, 120), (33, 71)]
    assert [p.probability.shape for p in predictions] == [(50, 90), (40, 40), (120, 17), (71, 33)]
    for p in predictions:
        assert 0.0 <= p.probability.min() and p.probability.max() <= 1.0
    # Batching changes nothing: each equals the image predicted on its own.
    for item, batched in list(zip(inputs, predictions))[1:3]:
        np.testing.assert_allclose(predict(model, item, fast=False).probability, batched.probability, atol=1e-5)
    assert predict(model, [], fast=False) == []
    assert len(predict(model, (inputs[0],), fast=False)) == 1  # a tuple is a batch too


def test_normalize_is_per_image_even_in_a_batch(model):
    images = [_photo(60, 40, seed=s) for s in range(3)]
    images[1] = Image.fromarray((np.asarray(images[1]) // 4).astype(np.uint8))
    plain = predict(model, images, fast=False, batch_size=3)
    normed = predict(model, images, fast=False, batch_size=3, normalize=True)
    ranges = {(round(float(p.probability.min()), 4), round(float(p.probability.max()), 4)) for p in plain}
    assert len(ranges) == 3  # the images really differ, so a batch-wide min-max would show
    for raw, norm in zip(plain, normed):
        p = raw.probability
        np.testing.assert_allclose(norm.probability, (p - p.min()) / (p.max() - p.min()), atol=1e-5)
        assert norm.probability.min() == 0.0 and norm.probability.max() == 1.0
        for side in norm.side_probabilities:
            assert side.min() == 0.0 and side.max() == 1.0


def test_sides_can_be_skipped(model):
    prediction = predict(model, _photo(30, 20), sides=False, fast=False)
    assert prediction.side_probabilities is None and prediction.side_masks is None
    assert prediction.mask.size == (30, 20)


def test_cutout_alpha_is_the_mask(model):
    image = _photo(80, 45)
    prediction = predict(model, image, fast=False)
    rgba = prediction.cutout()
    assert rgba.mode == "RGBA" and rgba.size == image.size
    np.testing.assert_array_equal(np.asarray(rgba)[..., 3], np.asarray(prediction.mask))
    np.testing.assert_array_equal(np.asarray(rgba)[..., :3], np.asarray(image))
    hard = np.asarray(prediction.cutout(threshold=0.5))[..., 3]
    np.testing.assert_array_equal(hard, np.where(prediction.probability >= 0.5, 255, 0))
    white = np.asarray(prediction.cutout(background="white"))
    assert (white[..., 3] == 255).all()


def test_exif_rotated_jpeg_gives_an_upright_mask(model, tmp_path):
    stored = np.asarray(_photo(64, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    prediction = predict(model, path, fast=False)
    assert prediction.mask.size == (40, 64)
    # Same as predicting the decoded pixels rotated by hand (90 degrees clockwise).
    decoded = np.asarray(Image.open(path).convert("RGB"))
    by_hand = predict(model, np.rot90(decoded, k=-1).copy(), fast=False)
    np.testing.assert_allclose(prediction.probability, by_hand.probability, atol=1e-6)


def test_fast_path_is_close_to_the_exact_one(model):
    images = [_photo(70, 50, seed=s) for s in range(2)]
    exact = predict(model, images, fast=False)
    fast = predict(model, images, fast=True)
    for a, b in zip(exact, fast):
        assert b.probability.shape == a.probability.shape
        assert float(np.abs(a.probability - b.probability).mean()) < 0.02
    assert isinstance(model.stages, dict)  # the source model is left as it was
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_training_mode_is_restored_and_eval_is_used(model):
    image = _photo(50, 50)
    expected = predict(model, image, fast=False).probability
    model.train()
    try:
        got = predict(model, image, fast=False).probability
        assert model.training
    finally:
        model.eval()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_model_method_forwards(model):
    image = _photo(30, 30)
    np.testing.assert_array_equal(model.predict(image, fast=False).probability, predict(model, image, fast=False).probability)


def test_wrong_inputs_raise_clear_errors(model):
    with pytest.raises(ImageLoadError, match=r"torch\.Tensor.*model\(x\)"):
        predict(model, torch.rand(1, 3, 64, 64))
    with pytest.raises(ImageLoadError, match=r"image 1: .*channels-first"):
        predict(model, [_photo(20, 20), np.zeros((3, 20, 30), np.uint8)])
    with pytest.raises(ImageLoadError, match="no such file"):
        predict(model, "/nonexistent/photo.jpg")
    with pytest.raises(TypeError, match="U2Net"):
        predict(torch.nn.Linear(2, 2), _photo(20, 20))
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, _photo(20, 20), batch_size=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 64, 64))


def test_huge_image_memory_stays_bounded(model):
    """A 4000x3000 photo: the network sees INPUT_SIZE, the result is a few float32 planes, never float64 copies."""
    image = Image.new("RGB", (4000, 3000), (120, 60, 30))
    plane = 4000 * 3000 * 4  # one float32 plane, 48 MB
    tracemalloc.start()
    try:
        prediction = predict(model, image, fast=False, sides=True)
        mask = prediction.mask
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert mask.size == (4000, 3000) and prediction.probability.dtype == np.float32
    assert peak < 1.6 * plane, f"peak numpy/python allocations {peak / 1e6:.0f} MB"


def test_flip_average_makes_the_map_of_a_mirrored_image_the_mirrored_map(make_tiny_model, tmp_path):
    """With ``flip_average`` the network sees the image and its mirror image and the logits are averaged, so a
    mirrored input must give exactly the mirrored map (a single pass of a trained or random network does not:
    its kernels are not symmetric). The setting survives save_pretrained / from_pretrained, is written to
    config.json only when on, and ``forward`` itself is untouched."""
    plain = make_tiny_model(input_size=INPUT_SIZE)
    assert "flip_average" not in plain.config
    flipped = U2Net(variant="tiny", input_size=INPUT_SIZE, flip_average=True)
    flipped.load_state_dict(plain.state_dict())
    flipped.save_pretrained(tmp_path)
    flipped = U2Net.from_pretrained(tmp_path)
    assert flipped.config["flip_average"] is True and flipped.preprocessing.flip_average

    image = _photo(96, 64, seed=3)
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for fast in (False, True):
        a = predict(flipped, image, fast=fast).probability
        b = predict(flipped, mirror, fast=fast).probability
        assert np.abs(a - b[:, ::-1]).max() <= 1e-3, fast
    single_a = predict(plain, image, fast=False).probability
    single_b = predict(plain, mirror, fast=False).probability
    assert np.abs(single_a - single_b[:, ::-1]).max() > 1e-2  # the property is the averaging's, not the network's

    # the averaged fused map is the sigmoid of the mean logit of the two passes, written out by hand
    x = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        one, other = plain(x).logits, plain(x.flip(-1)).logits.flip(-1)
        assert torch.equal(flipped(x).logits, one)  # forward is not averaged
    by_hand = torch.sigmoid((one + other) / 2)[:, 0].numpy()
    fused, sides = _forward(flipped, torch.device("cpu"), x.numpy(), sides=True, flip_average=True)
    assert np.abs(fused - by_hand).max() <= 1e-5 and sides.shape == (2, 6, INPUT_SIZE, INPUT_SIZE)


def test_flip_average_must_be_a_boolean():
    with pytest.raises(ValueError, match="flip_average"):
        U2Net(variant="tiny", flip_average="yes")
