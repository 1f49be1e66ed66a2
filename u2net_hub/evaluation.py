"""The evaluation engine behind `u2net evaluate`: pair files with ground truth, or score a model on a dataset.

Both feed a :class:`u2net_hub.metrics.SODMetrics` and report what they could
not score (unmatched files, unreadable items) instead of stopping, so one bad
file in ten thousand costs one warning, not the run.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .data import DatasetLoadError, index_folder, load_saliency_dataset
from .data.integrity import undecoded
from .metrics import MetricInputError, SODMetrics, load_mask, prediction_from_image, to_uint8
from .processing import load_image


class EvaluationError(ValueError):
    """Nothing (or nothing sensible) to score: a missing folder, no pairs, an empty dataset, a bad column."""


@dataclass
class EvaluationRun:
    """What a scoring pass saw, besides the metrics it added to.

    ``per_image``: one dict of scores per scored item (with ``item``);
    ``unmatched``: items without a partner (``item``, ``reason``);
    ``unreadable``: items that could not be decoded (``item``, ``error``);
    ``size_mismatches``: masks of another size than their image (``item``, ``reason``);
    ``meta``: JSON-ready facts about what was scored.
    """

    per_image: list[dict] = field(default_factory=list)
    unmatched: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)
    size_mismatches: list[dict] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


# -------------------------------------------------------------- saved predictions


def pair_files(pred_dir: Path, gt_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[dict], list[dict]]:
    """Pair prediction and ground-truth files by name.

    A file pairs with the file of the same relative path without extension in
    the other folder (``sub/a.png`` with ``sub/a.jpg``); a file left over pairs
    by its bare name when that name occurs exactly once in each folder (so
    ``preds/a.png`` pairs with ``DUTS-TE-Mask/a.png``).

    Args:
        pred_dir: the folder of predicted maps.
        gt_dir: the folder of ground-truth masks.

    Returns:
        The pairs ``(key, pred, gt)``, the unmatched files and the ambiguous ones
        (one relative name with several extensions), each as ``{"item", "reason"}``.
    """
    preds, gts = index_folder(pred_dir), index_folder(gt_dir)
    ambiguous = [
        {"item": str(p), "reason": f"several files named {key}.* in the {side} folder"}
        for side, index in (("prediction", preds), ("ground-truth", gts))
        for key, paths in index.items() if len(paths) > 1 for p in paths
    ]
    preds = {k: v[0] for k, v in preds.items() if len(v) == 1}
    gts = {k: v[0] for k, v in gts.items() if len(v) == 1}
    pairs = [(key, preds[key], gts[key]) for key in sorted(preds.keys() & gts.keys())]
    left_preds = {k: p for k, p in preds.items() if k not in gts}
    left_gts = {k: p for k, p in gts.items() if k not in preds}

    def by_name(index: dict[str, Path]) -> dict[str, list[str]]:
        names: dict[str, list[str]] = {}
        for key in index:
            names.setdefault(key.rsplit("/", 1)[-1], []).append(key)
        return names

    all_pred_names, all_gt_names = by_name(preds), by_name(gts)
    for key in sorted(left_preds):
        name = key.rsplit("/", 1)[-1]
        if len(all_pred_names.get(name, [])) == 1 and len(all_gt_names.get(name, [])) == 1:
            gt_key = all_gt_names[name][0]
            if gt_key in left_gts:
                pairs.append((key, left_preds.pop(key), left_gts.pop(gt_key)))
    unmatched = [{"item": str(p), "reason": "prediction without a ground-truth file"} for p in left_preds.values()]
    unmatched += [{"item": str(p), "reason": "ground truth without a prediction file"} for p in left_gts.values()]
    return pairs, unmatched, ambiguous


def score_folders(pred_dir: str | Path, gt_dir: str | Path, metrics: SODMetrics, *, progress: bool = True) -> EvaluationRun:
    """Score saved prediction images against ground-truth images paired by name (:func:`pair_files`).

    Of an RGBA cutout (what `u2net predict --format rgba` and rembg write) the alpha channel
    is scored, not its colours; ``meta["alpha_predictions"]`` counts them.

    Args:
        pred_dir: the folder of predicted maps (any image format, searched recursively).
        gt_dir: the folder of ground-truth masks.
        metrics: the accumulator the scores go into.
        progress: show a tqdm progress bar.

    Returns:
        What was scored and what was skipped.

    Raises:
        EvaluationError: a folder is missing, or no file pairs with another.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for flag, folder in (("--pred-dir", pred_dir), ("--gt-dir", gt_dir)):
        if not folder.is_dir():
            raise EvaluationError(f"{flag} {folder}: no such folder")
    pairs, unmatched, ambiguous = pair_files(pred_dir, gt_dir)
    if not pairs:
        counts = [sum(len(v) for v in index_folder(d).values()) for d in (pred_dir, gt_dir)]
        raise EvaluationError(
            f"no prediction in {pred_dir} ({counts[0]} image files) matches a ground-truth file in {gt_dir} "
            f"({counts[1]} image files) by name"
        )
    run = EvaluationRun(unmatched=unmatched + ambiguous)
    alpha_predictions = 0
    for key, pred_path, gt_path in tqdm(pairs, desc="evaluate", unit="image", disable=not progress, dynamic_ncols=True):
        images = []
        for path in (pred_path, gt_path):
            try:
                images.append(load_mask(path))
            except Exception as error:  # noqa: BLE001 - any undecodable file is reported, not fatal
                run.unreadable.append({"item": str(path), "error": f"{type(error).__name__}: {error}"})
                break
        if len(images) < 2:
            continue
        images[0], from_alpha = prediction_from_image(images[0])
        alpha_predictions += from_alpha
        try:
            scores = metrics.update(images[0], images[1], key=key)
        except MetricInputError as error:
            run.unreadable.append({"item": str(pred_path), "error": str(error)})
            continue
        if scores is not None:
            run.per_image.append({"item": key, **scores})
    run.meta = {
        "mode": "pred-dir", "alpha_predictions": alpha_predictions, "pred_dir": str(pred_dir), "gt_dir": str(gt_dir),
        "pairs": len(pairs),
    }
    return run


# ------------------------------------------------------------ model on a dataset


def load_dataset_for_evaluation(name: str, split: str | None, image_column: str = "image", mask_column: str = "mask"):
    """The dataset to score (columns ``image``/``mask``), its split, and what the loader left out.

    Loading is :func:`u2net_hub.data.load_saliency_dataset` (Hub id,
    imagefolder with metadata.jsonl, images/ + masks/ folder pair,
    save_to_disk folder). Without a split a Hub dataset uses ``test`` and
    a local folder its only split.

    Args:
        name: a Hub dataset id or a local folder.
        split: the split, or None for the default above.
        image_column: the column of the input images.
        mask_column: the column of the ground-truth masks.

    Returns:
        ``(dataset, split, unmatched)``: the loader's warnings about files it could not
        pair become ``unmatched`` entries.

    Raises:
        EvaluationError: the dataset, split or a column does not exist.
    """
    local = Path(name).expanduser().is_dir()
    if split is None and not local:
        split = "test"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            dataset = load_saliency_dataset(name, split=split, image_column=image_column, mask_column=mask_column)
        except DatasetLoadError as error:
            raise EvaluationError(str(error)) from None
    unmatched = [
        {"item": name, "reason": str(w.message)} for w in caught if issubclass(w.category, UserWarning)
    ]
    return dataset, split, unmatched


def _unwrap_cell(value: Any, what: str) -> Any:
    """The encoded bytes or path of an undecoded Image cell (other cells pass through)."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None:
        raise LookupError(f"the {what} is missing")
    return value


def _open_mask_cell(value: Any) -> Image.Image:
    """A PIL mask from a dataset cell: an undecoded {bytes, path} dict, a path, a PIL image or an array."""
    value = _unwrap_cell(value, "mask")
    if isinstance(value, (bytes, bytearray)):
        with Image.open(io.BytesIO(value)) as image:
            image.load()
            return image.copy()
    if isinstance(value, (str, os.PathLike)):
        return load_mask(value)
    if isinstance(value, Image.Image):
        return value
    return Image.fromarray(np.asarray(value))


def _cell_label(value: Any, index: int) -> str:
    """The file of a dataset cell when it has one, else its row."""
    if isinstance(value, dict) and value.get("path"):
        return str(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    return f"row {index}"


def _cell_name(value: Any) -> str | None:
    if isinstance(value, dict) and value.get("path"):
        return Path(value["path"]).stem
    if isinstance(value, (str, os.PathLike)):
        return Path(value).stem
    return None


def prediction_png(probability: np.ndarray) -> Image.Image:
    """The 8-bit map SODMetrics scores for this probability map, as an "L" image (saved PNGs re-score identically).

    Args:
        probability: a float map in [0, 1].

    Returns:
        The "L" image.
    """
    return Image.fromarray(to_uint8(probability, "prediction"), mode="L")


def score_model(
    model,
    dataset,
    metrics: SODMetrics,
    *,
    batch_size: int = 8,
    fast: bool = True,
    save_predictions: str | Path | None = None,
    progress: bool = True,
) -> EvaluationRun:
    """Run a model over a dataset's ``image`` column and score its maps against the ``mask`` column.

    The maps are the original test script's: min-max normalised ("normPRED"),
    at each image's size. Undecodable rows are reported, not fatal; a mask of
    another size than its image is named in ``size_mismatches`` (the prediction
    is resized onto the mask).

    Args:
        model: a U2Net.
        dataset: a ``datasets.Dataset`` with ``image`` and ``mask`` columns.
        metrics: the accumulator the scores go into.
        batch_size: images per forward pass.
        fast: run the fast path (``fast=False``: the exact float32 network).
        save_predictions: also write each predicted map as an 8-bit PNG to this folder.
        progress: show a tqdm progress bar.

    Returns:
        What was scored and what was skipped.
    """
    if len(dataset) == 0:
        raise EvaluationError("the dataset has no rows")
    dataset = undecoded(dataset, ("image", "mask"))  # one broken file is reported instead of stopping the run
    out_dir = Path(save_predictions) if save_predictions else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    run = EvaluationRun()
    used_names: set[str] = set()
    with tqdm(total=len(dataset), desc="evaluate", unit="image", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(dataset), batch_size):
            rows = dataset[start : start + batch_size]
            batch = []
            for offset, (image_cell, mask_cell) in enumerate(zip(rows["image"], rows["mask"])):
                index = start + offset
                try:
                    image = load_image(_unwrap_cell(image_cell, "image"))
                    mask = _open_mask_cell(mask_cell)
                except LookupError as error:
                    run.unmatched.append({"item": f"row {index}", "reason": str(error)})
                    continue
                except Exception as error:  # noqa: BLE001 - an undecodable row is reported, not fatal
                    run.unreadable.append({"item": f"row {index}", "error": f"{type(error).__name__}: {error}"})
                    continue
                if mask.size != image.size:
                    run.size_mismatches.append({
                        "item": _cell_label(mask_cell, index),
                        "reason": f"{mask.size[0]}x{mask.size[1]} mask for the {image.size[0]}x{image.size[1]} "
                                  f"image {_cell_label(image_cell, index)} (the prediction is resized onto the mask)",
                    })
                batch.append((index, image, mask, _cell_name(image_cell)))
            if batch:
                predictions = model.predict(
                    [image for _, image, _, _ in batch], normalize=True, batch_size=batch_size, fast=fast, sides=False,
                )
                for (index, _, mask, name), prediction in zip(batch, predictions):
                    try:
                        scores = metrics.update(prediction.probability, mask, key=index)
                    except MetricInputError as error:
                        run.unreadable.append({"item": f"row {index}", "error": f"mask: {error}"})
                        continue
                    item = name if name and name not in used_names else f"{index:06d}"
                    used_names.add(item)
                    if out_dir is not None:
                        prediction_png(prediction.probability).save(out_dir / f"{item}.png")
                    run.per_image.append({"item": item, "row": index, **scores})
            bar.update(len(rows["image"]))
    run.meta = {"mode": "model", "fast": bool(fast)}
    return run


__all__ = [
    "EvaluationError", "EvaluationRun", "load_dataset_for_evaluation", "pair_files",
    "prediction_png", "score_folders", "score_model",
]
