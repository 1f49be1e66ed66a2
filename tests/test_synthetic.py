"""The synthetic scenes: a real, lazily rendered `datasets.Dataset` whose masks match the images exactly."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from u2net_hub.data import SaliencyTransform, collate_fn, make_synthetic_dataset, render_synthetic_sample
from u2net_hub.data.synthetic import describe_synthetic_sample, texture_names

SIZE = 64


def arrays(row):
    return np.asarray(row["image"]), np.asarray(row["mask"])


@pytest.fixture(scope="module")
def scenes():
    """24 scenes at 96 px: (image float HxWx3, mask float HxW in [0, 1])."""
    out = []
    for i in range(24):
        image, mask = render_synthetic_sample(i, size=96, seed=11)
        out.append((np.asarray(image, dtype=np.float32), np.asarray(mask, dtype=np.float32) / 255))
    return out


def test_is_a_real_dataset_with_image_and_mask_columns():
    ds = make_synthetic_dataset(5, size=SIZE, seed=0)
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["image", "mask"]
    assert isinstance(ds.features["image"], datasets.Image) and isinstance(ds.features["mask"], datasets.Image)
    assert len(ds) == 5
    row = ds[4]
    assert row["image"].mode == "RGB" and row["image"].size == (SIZE, SIZE)
    assert row["mask"].mode == "L" and row["mask"].size == (SIZE, SIZE)
    batch = ds[1:3]
    assert len(batch["image"]) == 2 and len(batch["mask"]) == 2


def test_a_hundred_thousand_rows_store_only_recipes():
    """Creation renders nothing: the Arrow table holds 32-byte recipes, and the last row still renders."""
    ds = make_synthetic_dataset(100_000, size=SIZE, seed=0)
    assert len(ds) == 100_000
    assert ds.data.nbytes < 100_000 * 2 * 64  # two short recipes per row, no pixels
    image, mask = arrays(ds[99_999])
    expected_image, expected_mask = render_synthetic_sample(99_999, size=SIZE, seed=0)
    np.testing.assert_array_equal(image, np.asarray(expected_image))
    np.testing.assert_array_equal(mask, np.asarray(expected_mask))


def test_rows_depend_only_on_seed_and_index():
    big = make_synthetic_dataset(8, size=SIZE, seed=7)
    small = make_synthetic_dataset(3, size=SIZE, seed=7)
    again = make_synthetic_dataset(8, size=SIZE, seed=7)
    for i in range(3):
        for a, b in zip(arrays(big[i]), arrays(small[i])):
            np.testing.assert_array_equal(a, b)
    for i in (0, 5, 7):
        for a, b in zip(arrays(big[i]), arrays(again[i])):
            np.testing.assert_array_equal(a, b)
        image, mask = render_synthetic_sample(i, size=SIZE, seed=7)
        np.testing.assert_array_equal(arrays(big[i])[0], np.asarray(image))
        np.testing.assert_array_equal(arrays(big[i])[1], np.asarray(mask))


def test_select_shard_and_shuffle_keep_each_rows_scene():
    ds = make_synthetic_dataset(10, size=SIZE, seed=3)
    reference = {i: arrays(ds[i]) for i in range(10)}
    for view, indices in (
        (ds.select([9, 2, 4]), [9, 2, 4]),
        (ds.shard(num_shards=3, index=1), [4, 5, 6]),
        (ds.shard(num_shards=3, index=2, contiguous=False), [2, 5, 8]),
    ):
        assert len(view) == len(indices)
        for position, index in enumerate(indices):
            for a, b in zip(arrays(view[position]), reference[index]):
                np.testing.assert_array_equal(a, b)
    shuffled = ds.shuffle(seed=0)
    seen = sorted(int(np.asarray(shuffled[i]["mask"], dtype=np.int64).sum()) for i in range(10))
    assert seen == sorted(int(reference[i][1].astype(np.int64).sum()) for i in range(10))


def test_seeds_and_indices_give_different_scenes():
    a = [arrays(make_synthetic_dataset(4, size=SIZE, seed=0)[i]) for i in range(4)]
    b = [arrays(make_synthetic_dataset(4, size=SIZE, seed=1)[i]) for i in range(4)]
    for (image_a, mask_a), (image_b, mask_b) in zip(a, b):
        assert np.abs(image_a.astype(float) - image_b.astype(float)).mean() > 10
        assert not np.array_equal(mask_a, mask_b)
    for i in range(3):
        assert np.abs(a[i][0].astype(float) - a[i + 1][0].astype(float)).mean() > 10


def test_a_scene_is_the_same_scene_at_every_size():
    """The layout is drawn in size-independent units: 160 px is the 320 px scene, smaller."""
    for index in range(6):
        small_record = describe_synthetic_sample(index, size=80, seed=2)
        big_record = describe_synthetic_sample(index, size=160, seed=2)
        for key in ("background", "horizon", "blur", "clutter", "noise"):
            assert small_record[key] == big_record[key]
        for a, b in zip(small_record["objects"], big_record["objects"], strict=True):
            assert (a["kind"], a["radius"], a["centre"], a["fill"]) == (b["kind"], b["radius"], b["centre"], b["fill"])
        big = np.asarray(render_synthetic_sample(index, size=160, seed=2)[1].resize((80, 80), Image.BILINEAR))
        small = np.asarray(render_synthetic_sample(index, size=80, seed=2)[1])
        big, small = big / 255.0, small / 255.0
        iou = np.minimum(big, small).sum() / np.maximum(big, small).sum()
        assert iou > 0.9, (index, iou)


def test_masks_are_never_empty_nor_full(scenes):
    for _, mask in scenes:
        coverage = mask.mean()
        assert 0.005 < coverage < 0.8
        assert (mask > 0.5).any() and (mask < 0.5).any()


def _gradient(image: np.ndarray) -> np.ndarray:
    gray = image.mean(axis=-1)
    gy, gx = np.gradient(gray)
    return np.hypot(gx, gy)


def _edge_contrast(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean image gradient on the mask's soft boundary over the mean gradient elsewhere."""
    boundary = (mask > 0.1) & (mask < 0.9)
    gradient = _gradient(image)
    return float(gradient[boundary].mean() / (gradient[~boundary].mean() + 1e-6))


def test_mask_edges_sit_on_image_edges(scenes):
    """Where the mask changes, the image changes: the boundary is an image edge, and a mask moved by a few
    pixels loses that (so this would catch any misalignment between the two)."""
    aligned, shifted = [], []
    for image, mask in scenes:
        aligned.append(_edge_contrast(image, mask))
        shifted.append(_edge_contrast(image, np.roll(mask, (4, 3), axis=(0, 1))))
    assert np.median(aligned) > 2.5
    assert np.median(aligned) > 2 * np.median(shifted)
    assert sum(a > s for a, s in zip(aligned, shifted)) >= 0.9 * len(scenes)


def test_salient_region_differs_from_its_surroundings(scenes):
    """The objects pop out: their mean colour is far from the colour of the ring of pixels around them."""
    from scipy import ndimage

    distances = []
    for image, mask in scenes:
        inside = mask > 0.9
        ring = ndimage.binary_dilation(mask > 0.1, iterations=4) & (mask < 0.1)
        distances.append(np.linalg.norm(image[inside].mean(0) - image[ring].mean(0)) / 255)
    assert np.median(distances) > 0.2
    assert min(distances) > 0.03


def test_edges_are_soft_and_only_at_boundaries(scenes):
    from scipy import ndimage

    for _, mask in scenes:
        partial = (mask > 0.02) & (mask < 0.98)
        assert partial.any(), "anti-aliased edges have intermediate values"
        assert partial.mean() < 0.2, "intermediate values belong to edges, not to whole regions"
        # Every intermediate pixel lies within 3 px of both a background and an object pixel.
        near_object = ndimage.binary_dilation(mask >= 0.98, iterations=3)
        near_background = ndimage.binary_dilation(mask <= 0.02, iterations=3)
        stray = partial & ~(near_object & near_background)
        assert stray.mean() < 0.01


def test_real_textures_are_loaded_and_used():
    from u2net_hub.data.synthetic import _textures

    library = _textures()
    assert set(library) == set(texture_names())
    for texture in library.values():
        assert min(texture.image.size) >= 150
        assert np.asarray(texture.image).std() > 10, texture.name  # a real photograph, not a flat stand-in
    used = set()
    real_backgrounds = 0
    for index in range(60):
        record = describe_synthetic_sample(index, size=32, seed=5)
        fills = record["background"] + [o["fill"] for o in record["objects"] if o["fill"]]
        used.update(f.split(":", 1)[1] for f in fills if ":" in f)
        real_backgrounds += record["background"][0].startswith(("texture:", "photo:"))
    assert len(used) >= 10, used
    assert real_backgrounds >= 30


def test_scene_statistics_follow_the_design():
    records = [describe_synthetic_sample(i, size=32, seed=9) for i in range(300)]
    counts = [len(r["objects"]) for r in records]
    assert min(counts) >= 1 and max(counts) <= 3
    assert 0.45 < counts.count(1) / len(counts) < 0.75
    objects = [o for r in records for o in r["objects"]]
    assert {o["kind"] for o in objects} >= {"ellipse", "polygon", "star", "blob", "superellipse", "ring", "horse",
                                            "glyph"}
    assert 0.03 < np.mean([o["low_contrast"] for o in objects]) < 0.25
    assert 0.5 < np.mean([r["clutter"] > 0 for r in records]) < 0.95
    first = np.array([r["objects"][0]["centre"] for r in records])
    off_centre = np.linalg.norm(first - 0.5, axis=1) > 0.2
    assert 0.1 < off_centre.mean() < 0.5


def test_rows_decode_through_the_training_pipeline_in_worker_processes():
    ds = make_synthetic_dataset(6, size=48, seed=4).with_transform(SaliencyTransform(48, 40, seed=0))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_fn)
    batches = list(loader)
    assert [tuple(b["pixel_values"].shape) for b in batches] == [(3, 3, 40, 40)] * 2
    assert all(b["labels"].max() == 1.0 and b["labels"].min() == 0.0 for b in batches)


@pytest.mark.slow
def test_rows_decode_in_spawned_workers_too():
    """A fresh interpreter (spawn/forkserver: macOS, Windows, Python 3.14 on Linux) unpickles the transform,
    which imports u2net_hub.data and so registers the renderer before the first row is decoded."""
    ds = make_synthetic_dataset(4, size=32, seed=8).with_transform(SaliencyTransform(32, train=False))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=1, collate_fn=collate_fn, multiprocessing_context="spawn"
    )
    labels = torch.cat([b["labels"] for b in loader])
    expected = torch.stack([
        torch.from_numpy(np.asarray(render_synthetic_sample(i, size=32, seed=8)[1], dtype=np.float32))[None]
        for i in range(4)
    ])
    expected = expected / expected.amax(dim=(1, 2, 3), keepdim=True)
    assert torch.equal(labels, expected)


def test_decoding_with_a_map_stores_plain_png():
    ds = make_synthetic_dataset(2, size=32, seed=6)
    stored = ds.map(lambda row: {"image": row["image"], "mask": row["mask"]})
    raw = stored.cast_column("mask", datasets.Image(decode=False))[1]["mask"]["bytes"]
    assert raw.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(raw))), np.asarray(ds[1]["mask"]))


@pytest.mark.parametrize(
    "kwargs",
    [dict(num_images=0), dict(num_images=3, size=8), dict(num_images=3, seed=-1), dict(num_images=2.5)],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises((ValueError, TypeError)):
        make_synthetic_dataset(**kwargs)
