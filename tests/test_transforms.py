"""SaliencyTransform: shapes, the mask staying on the image through every augmentation, seeding, eval."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from u2net_hub.configs import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from u2net_hub.data import SaliencyTransform, collate_fn, mask_to_pil, pre_resize
from u2net_hub.processing import preprocess

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def asymmetric_pair(h: int = 64, w: int = 64, seed: int = 0):
    """An image whose bright pixels are exactly the mask: an L-shape plus a dot, asymmetric both ways,
    on a dark random texture (so crops and flips are all distinguishable)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 8: h // 2, w // 8: w // 8 + w // 6] = 255  # vertical bar, top-left
    mask[h // 2 - h // 10: h // 2, w // 8: w // 2] = 255  # foot to the right
    mask[3 * h // 4: 3 * h // 4 + 4, 3 * w // 4: 3 * w // 4 + 3] = 255  # a dot, bottom-right
    image = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
    image[mask > 0] = (250, 240, 230)
    return Image.fromarray(image), Image.fromarray(mask, "L")


def bright(pixel_values: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation and say which pixels are the bright (mask) ones."""
    return (pixel_values * STD + MEAN).mean(0) > 0.7


def batch_of(pairs):
    return {"image": [p[0] for p in pairs], "mask": [p[1] for p in pairs]}


def test_train_output_shapes_and_ranges():
    transform = SaliencyTransform(resolution=64, crop_size=48, train=True, seed=0)
    out = transform(batch_of([asymmetric_pair(), asymmetric_pair(80, 50, 1)]))
    assert set(out) == {"pixel_values", "labels"}
    for x, y in zip(out["pixel_values"], out["labels"]):
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32
        assert y.shape == (1, 48, 48) and y.dtype == torch.float32
        assert y.min() >= 0 and y.max() <= 1
        assert set(torch.unique(y).tolist()) <= {0.0, 1.0}  # nearest-neighbour mask stays binary


@pytest.mark.parametrize("flip", ["horizontal", "vertical", "both", "none"])
def test_mask_stays_on_the_image_through_crops_and_flips(flip):
    """Same size in and out (no resampling): the bright pixels and the label must agree exactly."""
    image, mask = asymmetric_pair()
    transform = SaliencyTransform(resolution=64, crop_size=40, train=True, flip=flip, seed=1)
    seen = set()
    for _ in range(40):
        out = transform(batch_of([(image, mask)]))
        x, y = out["pixel_values"][0], out["labels"][0][0]
        assert torch.equal(bright(x), y > 0.5)
        seen.add(y.numpy().tobytes())
    assert len(seen) > 20  # it really does augment


def test_mask_stays_on_the_image_when_resizing():
    image, mask = asymmetric_pair(97, 131, seed=3)
    transform = SaliencyTransform(resolution=64, crop_size=56, train=True, flip="both", seed=2)
    for _ in range(20):
        out = transform(batch_of([(image, mask)]))
        agree = (bright(out["pixel_values"][0]) == (out["labels"][0][0] > 0.5)).float().mean()
        assert agree > 0.97


def test_flip_modes_flip_only_the_way_they_say():
    image, mask = asymmetric_pair()
    reference = np.asarray(mask) > 0
    allowed = {
        "none": [reference],
        "horizontal": [reference, reference[:, ::-1]],
        "vertical": [reference, reference[::-1]],
        "both": [reference, reference[:, ::-1], reference[::-1], reference[::-1, ::-1]],
    }
    for flip, options in allowed.items():
        transform = SaliencyTransform(resolution=64, crop_size=None, train=True, flip=flip, seed=5)
        got = [transform(batch_of([(image, mask)]))["labels"][0][0].numpy() > 0.5 for _ in range(30)]
        matches = [[np.array_equal(g, o) for o in options] for g in got]
        assert all(any(m) for m in matches), flip
        assert all(any(m[i] for m in matches) for i in range(len(options))), f"{flip}: not every flip occurs"


def test_seeded_transform_is_reproducible_and_seeds_differ():
    pairs = [asymmetric_pair(seed=i) for i in range(6)]
    first = SaliencyTransform(64, 40, seed=123)(batch_of(pairs))
    second = SaliencyTransform(64, 40, seed=123)(batch_of(pairs))
    other = SaliencyTransform(64, 40, seed=124)(batch_of(pairs))
    for key in ("pixel_values", "labels"):
        assert all(torch.equal(a, b) for a, b in zip(first[key], second[key]))
    assert not all(torch.equal(a, b) for a, b in zip(first["labels"], other["labels"]))


def test_unseeded_transform_follows_torchs_global_seed():
    pairs = [asymmetric_pair(seed=i) for i in range(4)]
    torch.manual_seed(0)
    first = SaliencyTransform(64, 40)(batch_of(pairs))
    torch.manual_seed(0)
    second = SaliencyTransform(64, 40)(batch_of(pairs))
    assert all(torch.equal(a, b) for a, b in zip(first["labels"], second["labels"]))


def test_eval_transform_has_no_randomness_and_matches_inference_preprocessing():
    image, mask = asymmetric_pair(90, 70, seed=4)
    transform = SaliencyTransform(resolution=64, crop_size=48, train=False, flip="both")
    state = torch.get_rng_state()
    outs = [transform(batch_of([(image, mask)])) for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), state)  # it drew nothing
    for out in outs[1:]:
        assert torch.equal(out["pixel_values"][0], outs[0]["pixel_values"][0])
        assert torch.equal(out["labels"][0], outs[0]["labels"][0])
    assert outs[0]["pixel_values"][0].shape == (3, 64, 64)
    expected = preprocess(image, Preprocessing(64))[0]
    assert torch.equal(outs[0]["pixel_values"][0], expected)
    resized = np.asarray(mask.resize((64, 64), Image.NEAREST)) > 0
    assert np.array_equal(outs[0]["labels"][0][0].numpy() > 0.5, resized)


def test_normalisation_divides_by_the_images_own_maximum():
    dim = Image.new("RGB", (32, 32), (100, 50, 25))
    mask = Image.new("L", (32, 32), 255)
    x = SaliencyTransform(32, train=False)(batch_of([(dim, mask)]))["pixel_values"][0]
    expected = (torch.tensor([1.0, 0.5, 0.25]).view(3, 1, 1) - MEAN) / STD
    assert torch.allclose(x, expected.expand(3, 32, 32), atol=1e-6)
    x255 = SaliencyTransform(32, train=False, divide_by_max=False)(batch_of([(dim, mask)]))["pixel_values"][0]
    expected255 = (torch.tensor([100, 50, 25]).view(3, 1, 1) / 255 - MEAN) / STD
    assert torch.allclose(x255, expected255.expand(3, 32, 32), atol=1e-6)


@pytest.mark.parametrize(
    "make_mask",
    [
        lambda a: Image.fromarray((a * 1).astype(np.uint8), "L"),  # 0/1
        lambda a: Image.fromarray((a * 255).astype(np.uint8), "L"),  # 0/255
        lambda a: Image.fromarray((a * 65535).astype(np.uint16), "I;16"),  # 16-bit
        lambda a: Image.fromarray(np.repeat((a * 255).astype(np.uint8)[..., None], 3, 2), "RGB"),
        lambda a: Image.fromarray(a.astype(bool)).convert("1"),
        lambda a: (a * 255).astype(np.uint8),  # numpy
    ],
    ids=["zero-one", "zero-255", "16-bit", "rgb", "1-bit", "numpy"],
)
def test_labels_are_the_mask_over_its_maximum(make_mask):
    binary = np.zeros((32, 32))
    binary[4:20, 10:30] = 1
    image = Image.new("RGB", (32, 32), (10, 200, 30))
    y = SaliencyTransform(32, train=False)(batch_of([(image, make_mask(binary))]))["labels"][0][0]
    assert torch.equal(y, torch.from_numpy(binary.astype(np.float32)))


def test_empty_mask_gives_zero_labels_and_alpha_masks_read_their_alpha():
    image = Image.new("RGB", (16, 16), (1, 2, 3))
    y = SaliencyTransform(16, train=False)(batch_of([(image, Image.new("L", (16, 16), 0))]))["labels"][0]
    assert torch.count_nonzero(y) == 0
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[2:8, 2:8, 3] = 255
    assert np.array_equal(np.asarray(mask_to_pil(Image.fromarray(rgba, "RGBA"))) > 0, rgba[..., 3] > 0)


def test_works_as_a_datasets_transform_with_collate_fn():
    pairs = [asymmetric_pair(seed=i) for i in range(5)]
    ds = datasets.Dataset.from_dict(
        {"image": [p[0] for p in pairs], "mask": [p[1] for p in pairs]},
        features=datasets.Features({"image": datasets.Image(), "mask": datasets.Image()}),
    ).with_transform(SaliencyTransform(64, 48, seed=0))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_fn)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (2, 3, 48, 48) and batch["labels"].shape == (2, 1, 48, 48)


def test_dataloader_workers_do_not_repeat_each_others_augmentations():
    image, mask = asymmetric_pair()
    ds = datasets.Dataset.from_dict(
        {"image": [image] * 8, "mask": [mask] * 8},
        features=datasets.Features({"image": datasets.Image(), "mask": datasets.Image()}),
    ).with_transform(SaliencyTransform(64, 32, flip="both", seed=7))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_fn)
    first, second = (b["labels"] for b in loader)  # one batch from each worker
    assert not torch.equal(first, second)


def test_collate_fn_stacks_and_explains_bad_batches():
    rows = [{"pixel_values": torch.zeros(3, 8, 8), "labels": torch.zeros(1, 8, 8)} for _ in range(3)]
    batch = collate_fn(rows)
    assert batch["pixel_values"].shape == (3, 3, 8, 8) and batch["labels"].shape == (3, 1, 8, 8)
    rows[1] = {"pixel_values": torch.zeros(3, 9, 8), "labels": torch.zeros(1, 9, 8)}
    with pytest.raises(ValueError, match="different shapes"):
        collate_fn(rows)
    with pytest.raises(ValueError):
        collate_fn([])


def test_bad_arguments_and_columns_are_explained():
    with pytest.raises(ValueError, match="crop_size"):
        SaliencyTransform(resolution=64, crop_size=65)
    with pytest.raises(ValueError, match="flip"):
        SaliencyTransform(flip="diagonal")
    with pytest.raises(KeyError, match="label"):
        SaliencyTransform(64, 48)({"image": [asymmetric_pair()[0]], "label": [asymmetric_pair()[1]]})


def test_for_model_uses_the_models_preprocessing():
    from u2net_hub import U2Net

    model = U2Net(variant="tiny")
    model.preprocessing = Preprocessing(96, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), False)
    train = SaliencyTransform.for_model(model)
    assert (train.resolution, train.crop_size) == (96, 86)
    evaluation = SaliencyTransform.for_model(model, train=False)
    white = Image.new("RGB", (20, 20), (255, 255, 255))
    x = evaluation(batch_of([(white, Image.new("L", (20, 20), 255))]))["pixel_values"][0]
    assert x.shape == (3, 96, 96) and torch.allclose(x, torch.full_like(x, 2.0))


def test_pre_resized_dataset_gives_the_same_training_tensors():
    """The cached resize must not change what the model sees: same crops, flips and pixels either way."""
    rng = np.random.default_rng(3)
    pairs = [asymmetric_pair(90 + 7 * i, 120 - 5 * i, seed=i) for i in range(3)]
    sixteen_bit = Image.fromarray((rng.random((70, 50)) * 65535).astype(np.uint16))  # an I;16 mask
    pairs.append((Image.fromarray(rng.integers(0, 255, (70, 50, 3)).astype(np.uint8)).convert("P"), sixteen_bit))
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
    ds = datasets.Dataset.from_dict(batch_of(pairs), features=features)
    cached = pre_resize(ds, 64)
    assert len(cached) == len(ds) and all(row["image"].size == (64, 64) == row["mask"].size for row in cached)
    transform = SaliencyTransform(64, 48, flip="both", seed=0)
    for index in range(len(ds)):
        params = (index * 3 % 17, index * 5 % 17, index % 2 == 0, index % 3 == 0)
        original = transform.apply(ds[index]["image"], ds[index]["mask"], params)
        resized = transform.apply(cached[index]["image"], cached[index]["mask"], params)
        for a, b in zip(original, resized):
            assert torch.equal(a, b)


def test_pre_resize_names_missing_columns():
    ds = datasets.Dataset.from_dict({"picture": [asymmetric_pair()[0]]})
    with pytest.raises(KeyError, match="picture"):
        pre_resize(ds, 32)
