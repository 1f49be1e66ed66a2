"""load_saliency_dataset: every layout becomes a real `datasets.Dataset` with Image columns image/mask."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from u2net_hub.data import (
    DatasetLoadError,
    SaliencyTransform,
    collate_fn,
    load_saliency_dataset,
    make_synthetic_dataset,
    split_for_validation,
)


def write_pair(image_path: Path, mask_path: Path, index: int) -> None:
    """A small JPEG photo and a PNG mask that both encode `index` (so pairing can be checked)."""
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((24, 32, 3), 20 * index + 10, np.uint8)
    Image.fromarray(image).save(image_path, quality=95)
    mask = np.zeros((24, 32), np.uint8)
    mask[: 2 + 2 * index, :] = 255  # the number of foreground rows encodes the index
    Image.fromarray(mask, "L").save(mask_path)


def check_rows(ds, expected_indices) -> None:
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["image", "mask"]
    assert isinstance(ds.features["image"], datasets.Image) and isinstance(ds.features["mask"], datasets.Image)
    assert len(ds) == len(expected_indices)
    found = []
    for row in ds:
        image = np.asarray(row["image"].convert("RGB"), dtype=np.float32)
        mask = np.asarray(row["mask"])
        index_from_image = round((image.mean() - 10) / 20)
        index_from_mask = (int((mask > 127).all(axis=1).sum()) - 2) // 2
        assert index_from_image == index_from_mask, "image and mask come from different pairs"
        found.append(index_from_mask)
    assert sorted(found) == sorted(expected_indices)


@pytest.fixture
def imagefolder(tmp_path):
    root = tmp_path / "imagefolder"
    lines = []
    for i in range(4):
        write_pair(root / "images" / f"{i}.jpg", root / "masks" / f"{i}.png", i)
        lines.append(json.dumps({"file_name": f"images/{i}.jpg", "mask_file_name": f"masks/{i}.png"}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_imagefolder_with_metadata_jsonl(imagefolder, tmp_path):
    ds = load_saliency_dataset(data_dir=str(imagefolder), cache_dir=str(tmp_path / "cache"))
    check_rows(ds, range(4))
    # the same folder given as dataset_name (what train.py passes for --train_data_dir)
    check_rows(load_saliency_dataset(str(imagefolder), cache_dir=str(tmp_path / "cache")), range(4))


def test_plain_folder_pair_reports_unpaired_files(tmp_path):
    root = tmp_path / "pair"
    for i in range(3):
        write_pair(root / "images" / f"img_{i}.jpg", root / "masks" / f"img_{i}.png", i)
    write_pair(root / "images" / "lonely.jpg", root / "masks" / "orphan.png", 5)
    (root / "images" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="2 file") as caught:
        ds = load_saliency_dataset(data_dir=str(root))
    message = str(caught[0].message)
    assert "lonely.jpg: no mask" in message and "orphan.png: no image" in message
    check_rows(ds, range(3))


def test_duts_style_folders_choose_the_split_by_name(tmp_path):
    root = tmp_path / "DUTS"
    for i in range(3):
        write_pair(root / "DUTS-TR-Image" / f"ILSVRC_{i}.jpg", root / "DUTS-TR-Mask" / f"ILSVRC_{i}.png", i)
    for i in range(3, 5):
        write_pair(root / "DUTS-TE-Image" / f"ILSVRC_{i}.jpg", root / "DUTS-TE-Mask" / f"ILSVRC_{i}.png", i)
    check_rows(load_saliency_dataset(data_dir=str(root), split="train"), range(3))
    check_rows(load_saliency_dataset(data_dir=str(root), split="test"), range(3, 5))
    # The archive's own nesting: DUTS-TE/DUTS-TE-Image + DUTS-TE/DUTS-TE-Mask, one pair, any split name.
    single = tmp_path / "DUTS-TE"
    for i in range(2):
        write_pair(single / "DUTS-TE-Image" / f"{i}.jpg", single / "DUTS-TE-Mask" / f"{i}.png", i)
    check_rows(load_saliency_dataset(data_dir=str(single)), range(2))
    with pytest.raises(DatasetLoadError, match="DUTS-TR-Image"):
        load_saliency_dataset(data_dir=str(root), split="validation")


def test_parquet_clone_of_a_hub_repository_with_custom_column_names(tmp_path):
    """The layout of a Hub dataset repository (data/train-*.parquet), loaded through datasets.load_dataset."""
    pairs_dir = tmp_path / "files"
    for i in range(3):
        write_pair(pairs_dir / f"{i}.jpg", pairs_dir / f"{i}_gt.png", i)
    table = datasets.Dataset.from_dict(
        {
            "photo": [str(pairs_dir / f"{i}.jpg") for i in range(3)],
            "gt": [str(pairs_dir / f"{i}_gt.png") for i in range(3)],
            "name": [f"sample {i}" for i in range(3)],
        },
        features=datasets.Features(
            {"photo": datasets.Image(), "gt": datasets.Image(), "name": datasets.Value("string")}
        ),
    )
    # Embed the bytes, as a pushed dataset has them, then write the parquet shard.
    table = table.map(lambda row: {"photo": row["photo"], "gt": row["gt"]})
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    table.to_parquet(str(repo / "data" / "train-00000-of-00001.parquet"))
    ds = load_saliency_dataset(str(repo), image_column="photo", mask_column="gt", cache_dir=str(tmp_path / "c"))
    check_rows(ds, range(3))


def test_path_string_columns_are_cast_to_images(tmp_path):
    for i in range(2):
        write_pair(tmp_path / "f" / f"{i}.jpg", tmp_path / "f" / f"{i}.png", i)
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict(
        {"image": [str(tmp_path / "f" / f"{i}.jpg") for i in range(2)],
         "mask": [str(tmp_path / "f" / f"{i}.png") for i in range(2)]}
    ).save_to_disk(str(saved))
    ds = load_saliency_dataset(data_dir=str(saved))
    check_rows(ds, range(2))


def test_wrong_column_names_list_the_columns_that_exist(imagefolder, tmp_path):
    with pytest.raises(DatasetLoadError) as error:
        load_saliency_dataset(data_dir=str(imagefolder), mask_column="label", cache_dir=str(tmp_path / "c"))
    assert isinstance(error.value, ValueError)
    assert "'label'" in str(error.value) and "['image', 'mask']" in str(error.value)


def test_missing_splits_folders_and_unreachable_hub_ids_are_explained(imagefolder, tmp_path):
    with pytest.raises(DatasetLoadError, match="no split 'test'.*train"):
        load_saliency_dataset(data_dir=str(imagefolder), split="test", cache_dir=str(tmp_path / "c"))
    with pytest.raises(DatasetLoadError, match="no such folder"):
        load_saliency_dataset(data_dir=str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    with pytest.raises(DatasetLoadError, match="no file in images/"):
        load_saliency_dataset(data_dir=str(empty))
    with pytest.raises(DatasetLoadError, match="nobg/no-such-dataset-here"):  # offline in the tests
        load_saliency_dataset("nobg/no-such-dataset-here")


def test_no_dataset_means_the_synthetic_scenes():
    ds = load_saliency_dataset(synthetic_num_images=7, synthetic_size=48, synthetic_seed=3)
    reference = make_synthetic_dataset(7, size=48, seed=3)
    assert len(ds) == 7 and ds.column_names == ["image", "mask"]
    np.testing.assert_array_equal(np.asarray(ds[6]["image"]), np.asarray(reference[6]["image"]))


def test_split_for_validation_is_disjoint_and_seeded():
    ds = datasets.Dataset.from_dict({"image": list(range(50)), "mask": list(range(50))})
    train, validation = split_for_validation(ds, 0.2, seed=1)
    assert (len(train), len(validation)) == (40, 10)
    assert set(train["image"]).isdisjoint(validation["image"])
    assert set(train["image"]) | set(validation["image"]) == set(range(50))
    again = split_for_validation(ds, 0.2, seed=1)[1]
    other = split_for_validation(ds, 0.2, seed=2)[1]
    assert validation["image"] == again["image"] and validation["image"] != other["image"]
    assert len(split_for_validation(ds, 7)[1]) == 7
    for bad in (0.0, 1.0, 50, 0):
        with pytest.raises(ValueError):
            split_for_validation(ds, bad)


def test_a_loaded_folder_trains_through_transform_and_collate(tmp_path):
    root = tmp_path / "pair"
    for i in range(4):
        write_pair(root / "images" / f"{i}.jpg", root / "masks" / f"{i}.png", i)
    ds = load_saliency_dataset(data_dir=str(root)).with_transform(SaliencyTransform(32, 24, seed=0))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_fn)))
    assert batch["pixel_values"].shape == (4, 3, 24, 24) and batch["labels"].shape == (4, 1, 24, 24)
    assert 0 < batch["labels"].mean() < 1
