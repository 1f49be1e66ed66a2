"""One entry point for every place saliency data lives, always returning ``image``/``mask`` Image columns.

Layouts (see the README's data section):

* a Hub dataset id (``nobg/DUTS``), through ``datasets.load_dataset``;
* a local ``imagefolder`` with a ``metadata.jsonl`` whose lines read
  ``{"file_name": "images/0.jpg", "mask_file_name": "masks/0.png"}``
  (``datasets`` turns every ``*_file_name`` key into an Image column);
* a plain pair of folders with the same stems, as DUTS ships them:
  ``images/*.jpg`` + ``masks/*.png``, or ``DUTS-TR-Image/`` + ``DUTS-TR-Mask/``
  (any ``<prefix>image(s)`` + ``<prefix>mask(s)``/``gt``); files without a
  partner are reported, never silently paired;
* a folder written by ``Dataset.save_to_disk`` or a local clone of a Hub
  dataset repository (parquet files);
* nothing: the built-in synthetic scenes (:mod:`u2net_hub.data.synthetic`).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

from ..processing import IMAGE_EXTENSIONS
from .synthetic import make_synthetic_dataset

__all__ = ["load_saliency_dataset", "load_dataset_as_stored", "split_for_validation", "pair_folders", "index_folder",
           "DatasetLoadError", "IMAGE_EXTENSIONS"]

logger = logging.getLogger(__name__)

_IMAGE_WORDS = ("images", "image", "imgs", "img")
_MASK_WORDS = ("masks", "mask", "gts", "gt", "ground_truth", "groundtruth", "labels", "label", "annotations")
_SPLIT_ALIASES = {
    "train": ("train", "tr", "training"),
    "test": ("test", "te", "testing"),
    "validation": ("validation", "val", "valid", "dev"),
}
_METADATA_NAMES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")


class DatasetLoadError(ValueError):
    """A dataset that cannot be loaded as image/mask pairs; the message says why and what exists instead."""


# -- folder pairs ------------------------------------------------------------------------------------


def _split_name(name: str, words: tuple[str, ...]) -> str | None:
    """'DUTS-TR-Image' -> 'duts-tr-' for word 'image'; None when the name does not end with one of `words`."""
    lowered = name.lower()
    for word in words:
        if lowered.endswith(word) and (len(lowered) == len(word) or not lowered[-len(word) - 1].isalnum()):
            return lowered[: len(lowered) - len(word)]
    return None


def _folder_pairs(root: Path) -> list[tuple[Path, Path]]:
    """Every (images folder, masks folder) pair directly under `root`, matched by a shared name prefix."""
    folders = [p for p in sorted(root.iterdir()) if p.is_dir()]
    images = {prefix: p for p in folders if (prefix := _split_name(p.name, _IMAGE_WORDS)) is not None}
    masks: dict[str, Path] = {}
    for p in folders:
        prefix = _split_name(p.name, _MASK_WORDS)
        if prefix is not None and prefix not in masks:
            masks[prefix] = p
    return [(images[prefix], masks[prefix]) for prefix in images if prefix in masks]


def index_folder(root: str | Path) -> dict[str, list[Path]]:
    """Image files under `root` by their relative path without extension ("stem").

    Hidden files and folders are skipped; the extensions are :data:`u2net_hub.processing.IMAGE_EXTENSIONS`.
    Dataset folders and `u2net evaluate --pred-dir/--gt-dir` are read through this.

    Args:
        root: the folder, searched recursively.

    Returns:
        Stem (posix) to the files that have it, in sorted order.
    """
    root = Path(root)
    index: dict[str, list[Path]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            index.setdefault(path.relative_to(root).with_suffix("").as_posix(), []).append(path)
    return index


def _files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Files by stem; stems that occur twice are returned as ambiguous."""
    found: dict[str, Path] = {}
    ambiguous: list[str] = []
    for stem, paths in index_folder(folder).items():
        found[stem] = paths[0]
        ambiguous += [f"{p.relative_to(folder)} (same stem as {paths[0].relative_to(folder)})" for p in paths[1:]]
    return found, ambiguous


def pair_folders(image_dir: str | Path, mask_dir: str | Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pair images with masks of the same stem: (pairs, problems), problems naming every unpaired file.

    Args:
        image_dir: the folder of images (searched recursively).
        mask_dir: the folder of masks.

    Returns:
        The (image, mask) pairs sorted by stem, and one line per file without a partner or with an ambiguous stem.
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    images, ambiguous_images = _files(image_dir)
    masks, ambiguous_masks = _files(mask_dir)
    pairs = [(images[stem], masks[stem]) for stem in sorted(images) if stem in masks]
    problems = [f"{image_dir.name}/{images[s].relative_to(image_dir)}: no mask"
                for s in sorted(images) if s not in masks]
    problems += [f"{mask_dir.name}/{masks[s].relative_to(mask_dir)}: no image"
                 for s in sorted(masks) if s not in images]
    problems += [f"{image_dir.name}/{a}: ambiguous" for a in ambiguous_images]
    problems += [f"{mask_dir.name}/{a}: ambiguous" for a in ambiguous_masks]
    return pairs, problems


def _known_split(split: str | None) -> bool:
    """None, or one of the usual names of train/test/validation (what a folder without split names accepts)."""
    return split is None or any(str(split).lower() in names for names in _SPLIT_ALIASES.values())


def _choose_pair(root: Path, pairs: list[tuple[Path, Path]], split: str | None) -> tuple[Path, Path]:
    if len(pairs) == 1:
        if not _known_split(split):
            image_dir, mask_dir = pairs[0]
            raise DatasetLoadError(
                f"{root} has no split {split!r}: it holds one image/mask folder pair ({image_dir.name} + "
                f"{mask_dir.name}), loaded for any of the splits {', '.join(_SPLIT_ALIASES)} (or none)"
            )
        return pairs[0]
    names = ", ".join(f"{i.name} + {m.name}" for i, m in pairs)
    aliases = _SPLIT_ALIASES.get(str(split).lower(), (str(split).lower(),))
    chosen = [
        (i, m) for i, m in pairs
        if set(re.split(r"[^0-9a-z]+", i.name.lower())) & set(aliases)
    ]
    if len(chosen) == 1:
        return chosen[0]
    raise DatasetLoadError(
        f"{root} holds several image/mask folder pairs ({names}) and split {split!r} does not pick exactly one; "
        "pass the folder of one pair, or a split named in the folder names (e.g. 'train' for *-TR-*)"
    )


def _folder_pair_dataset(root: Path, split: str | None):
    from datasets import Dataset, DatasetInfo, Features, Image

    image_dir, mask_dir = _choose_pair(root, _folder_pairs(root), split)
    pairs, problems = pair_folders(image_dir, mask_dir)
    if not pairs:
        raise DatasetLoadError(
            f"{root}: no file in {image_dir.name}/ has a mask with the same name in {mask_dir.name}/ "
            f"(extensions: {sorted(IMAGE_EXTENSIONS)}); e.g. {problems[:3]}"
        )
    description = f"image/mask folder pair {image_dir} + {mask_dir}: {len(pairs)} pairs"
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems) - 10} more)" if len(problems) > 10 else "")
        message = f"{root}: {len(problems)} file(s) left out because they have no partner or clash: {shown}"
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=4)  # points at the caller of load_saliency_dataset
        description += f"; {len(problems)} unpaired file(s) left out"
    features = Features({"image": Image(), "mask": Image()})
    data = {"image": [str(i) for i, _ in pairs], "mask": [str(m) for _, m in pairs]}
    dataset = Dataset.from_dict(data, info=DatasetInfo(description=description, features=features))
    return dataset


# -- everything else -----------------------------------------------------------------------------------


def _pick_split(loaded: Any, split: str | None, where: str):
    from datasets import DatasetDict, IterableDatasetDict

    if not isinstance(loaded, (DatasetDict, IterableDatasetDict)):
        own = getattr(loaded, "split", None)
        if not _known_split(split) and (own is None or str(own) != split):
            raise DatasetLoadError(
                f"{where} has no split {split!r}; it is a single dataset"
                + (f" (split {str(own)!r})" if own is not None else "")
                + f", loaded for any of the splits {', '.join(_SPLIT_ALIASES)} (or none)"
            )
        return loaded
    if split is None:
        if len(loaded) == 1:
            return next(iter(loaded.values()))
        raise DatasetLoadError(f"{where} has several splits ({', '.join(loaded)}); pass split=")
    if split in loaded:
        return loaded[split]
    raise DatasetLoadError(f"{where} has no split {split!r}; its splits: {', '.join(loaded)}")


def _has_metadata(root: Path) -> bool:
    return any((root / name).is_file() for name in _METADATA_NAMES) or any(
        (child / name).is_file() for child in root.iterdir() if child.is_dir() for name in _METADATA_NAMES
    )


def _load_local(root: Path, config_name: str | None, split: str | None, cache_dir: str | None):
    import datasets

    if (root / "state.json").is_file() or (root / "dataset_dict.json").is_file():
        return _pick_split(datasets.load_from_disk(str(root)), split, str(root))
    if _has_metadata(root):
        loaded = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=cache_dir)
        return _pick_split(loaded, split, f"imagefolder {root}")
    if _folder_pairs(root):
        return _folder_pair_dataset(root, split)
    # A clone of a Hub dataset repository (parquet, csv, json files, or a loading script).
    try:
        loaded = datasets.load_dataset(str(root), config_name, split=split, cache_dir=cache_dir)
    except Exception as error:  # noqa: BLE001 - re-raised with the layouts this function understands
        raise DatasetLoadError(
            f"{root} is not a saliency dataset folder: expected a metadata.jsonl (imagefolder), an images/ + masks/ "
            f"folder pair, a save_to_disk folder or data files ({type(error).__name__}: {error})"
        ) from error
    return loaded


def _load_hub(name: str, config_name: str | None, split: str | None, cache_dir: str | None, streaming: bool = False):
    import datasets

    try:
        loaded = datasets.load_dataset(name, config_name, split=split, cache_dir=cache_dir, streaming=streaming)
    except Exception as error:  # noqa: BLE001 - one clear message whatever went wrong underneath
        raise DatasetLoadError(
            f"cannot load Hub dataset {name!r} (config {config_name!r}, split {split!r}): "
            f"{type(error).__name__}: {error}. A local folder of that name does not exist either."
        ) from error
    return _pick_split(loaded, split, name)


def load_dataset_as_stored(
    source: str,
    config_name: str | None = None,
    split: str | None = "train",
    *,
    streaming: bool = True,
    cache_dir: str | None = None,
):
    """A dataset with every one of its columns, from the places :func:`load_saliency_dataset` knows.

    For predicting over a dataset rather than training on it: nothing is
    selected or renamed, so each row keeps its identity. A Hub id is streamed
    (``streaming=True``, an `IterableDataset`: nothing is materialised); a local
    folder (imagefolder with or without ``metadata.jsonl``, ``save_to_disk``
    folder, images/ + masks/ pair, parquet clone) gives a map-style `Dataset`.

    Args:
        source: a Hub dataset id or a local folder.
        config_name: the dataset configuration (Hub datasets and clones).
        split: the split to return; None is fine when there is only one.
        streaming: stream Hub datasets instead of downloading them first.
        cache_dir: the `datasets` cache folder.

    Returns:
        A `datasets.Dataset` or `datasets.IterableDataset`. Raises
        :class:`DatasetLoadError` naming the splits or layouts that exist.
    """
    path = Path(str(source)).expanduser()
    if path.is_dir():
        loaded = _load_local(path, config_name, split, cache_dir)
        return _pick_split(loaded, split, str(path))
    if path.exists():
        raise DatasetLoadError(f"{source}: not a folder")
    if str(source).startswith((".", "/", "~")) or str(source).count("/") > 1:
        raise DatasetLoadError(f"{source}: no such folder (and not a Hub id like 'nobg/DUTS')")
    return _load_hub(str(source), config_name, split, cache_dir, streaming=streaming)


def _to_image_mask(dataset, image_column: str, mask_column: str, where: str):
    """Keep the two columns, named image/mask, decoded as Image features (path strings are cast)."""
    from datasets import Image, Value

    columns = list(dataset.column_names)
    missing = [c for c in (image_column, mask_column) if c not in columns]
    if missing:
        image_like = [c for c in columns if isinstance(dataset.features.get(c), Image)]
        raise DatasetLoadError(
            f"{where}: no column {', '.join(repr(c) for c in missing)}; the columns are {columns}"
            + (f" (image columns: {image_like})" if image_like else "")
            + "; pass image_column=/mask_column= (train.py: --image_column/--mask_column)"
        )
    if image_column == mask_column:
        raise DatasetLoadError(f"image_column and mask_column are both {image_column!r}")
    dataset = dataset.select_columns([image_column, mask_column])
    if (image_column, mask_column) != ("image", "mask"):
        dataset = dataset.rename_columns(
            {old: new for old, new in ((image_column, "__image"), (mask_column, "__mask"))}
        ).rename_columns({"__image": "image", "__mask": "mask"})
    for column, original in (("image", image_column), ("mask", mask_column)):
        feature = dataset.features[column]
        if isinstance(feature, Image):
            continue
        if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
            dataset = dataset.cast_column(column, Image())  # file paths
            continue
        raise DatasetLoadError(f"{where}: column {original!r} holds {feature}, not images or image paths")
    return dataset


def load_saliency_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    data_dir: str | None = None,
    split: str | None = "train",
    image_column: str = "image",
    mask_column: str = "mask",
    synthetic_num_images: int = 2000,
    synthetic_size: int = 320,
    synthetic_seed: int = 0,
    cache_dir: str | None = None,
    *,
    config_name: str | None = None,
):
    """A `datasets.Dataset` with Image columns ``image`` and ``mask``, from wherever the data lives.

    Args:
        dataset_name: a Hub id or a local folder.
        dataset_config_name: the configuration of a Hub dataset that has several.
        data_dir: a local folder (imagefolder with metadata.jsonl, images/ + masks/ pair, save_to_disk
            folder, parquet clone). Neither this nor `dataset_name`: the synthetic scenes.
        split: the split to load.
        image_column: the column (or alias) holding the images; renamed ``image``.
        mask_column: the column holding the masks; renamed ``mask``.
        synthetic_num_images: how many synthetic scenes (without a dataset).
        synthetic_size: their side in pixels.
        synthetic_seed: their seed.
        cache_dir: the `datasets` cache to use.
        config_name: an alias of `dataset_config_name`.

    Returns:
        The dataset.

    Raises:
        DatasetLoadError: (a ValueError) naming the columns or splits that exist when the requested ones do
            not, or the folder that does not.
    """
    if config_name is not None:
        if dataset_config_name is not None and dataset_config_name != config_name:
            raise DatasetLoadError(
                f"dataset_config_name={dataset_config_name!r} and config_name={config_name!r} differ"
            )
        dataset_config_name = config_name
    if dataset_name is not None and data_dir is not None:
        name_path = Path(dataset_name).expanduser()
        if not (name_path.is_dir() and name_path.resolve() == Path(data_dir).expanduser().resolve()):
            raise DatasetLoadError("give either dataset_name (a Hub id or folder) or data_dir, not both")
    if dataset_name is None and data_dir is None:
        return make_synthetic_dataset(synthetic_num_images, size=synthetic_size, seed=synthetic_seed)

    source = data_dir if data_dir is not None else dataset_name
    path = Path(str(source)).expanduser()
    if path.is_dir():
        dataset = _load_local(path, dataset_config_name, split, cache_dir)
        where = str(path)
    elif data_dir is not None or path.exists():
        raise DatasetLoadError(f"{source}: not a folder" if path.exists() else f"{source}: no such folder")
    elif str(source).startswith((".", "/", "~")) or str(source).count("/") > 1:
        raise DatasetLoadError(f"{source}: no such folder (and not a Hub id like 'nobg/DUTS')")
    else:
        dataset = _load_hub(str(source), dataset_config_name, split, cache_dir)
        where = f"Hub dataset {source!r}"
    return _to_image_mask(dataset, image_column, mask_column, where)


def split_for_validation(dataset, size: float | int = 0.1, seed: int = 0):
    """(train, validation): hold out a fraction (0 < size < 1) or a count (size >= 1) of rows, shuffled by `seed`.

    Args:
        dataset: a `datasets.Dataset`.
        size: the fraction (a float) or the number of rows (an int) to hold out.
        seed: the shuffle's seed.

    Returns:
        The training rows and the held-out rows.

    Raises:
        ValueError: the split would leave a side empty.
    """
    n = len(dataset)
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"size must be a fraction or a count, got {size!r}")
    if isinstance(size, float) and not 0 < size < 1:
        raise ValueError(f"a fractional size must lie in (0, 1), got {size}")
    count = round(n * size) if isinstance(size, float) else int(size)
    if not 1 <= count < n:
        raise ValueError(f"cannot hold out {count} of {n} rows: keep at least one row on each side")
    parts = dataset.train_test_split(test_size=count, seed=seed, shuffle=True)
    return parts["train"], parts["test"]
