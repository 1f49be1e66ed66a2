"""`u2net evaluate`: SOD metrics for a model on a dataset, or for saved predictions against masks.

Two forms:

* ``u2net evaluate [--model M] --dataset NAME_OR_DIR [--split S]`` runs the
  model over a Hugging Face dataset (a Hub id, an imagefolder with
  ``metadata.jsonl``, or an ``images/`` + ``masks/`` folder pair) and scores
  its maps against the mask column;
* ``u2net evaluate --pred-dir P --gt-dir G`` scores prediction images against
  ground-truth images paired by name.

Both print a table (see :mod:`u2net_hub.metrics` for the definitions), can
write JSON (``--output``), and report unmatched or unreadable items as
warnings instead of stopping. Exit status: 0; 1 with ``--strict`` when some
item was unmatched or unreadable; 2 for usage errors (missing folder, unknown
column, a model that cannot be loaded, nothing to score).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Image as ImageFeature
from PIL import Image
from tqdm.auto import tqdm

from ..data import DatasetLoadError, load_saliency_dataset
from ..hub import DEMO_MODEL, __version__
from ..metrics import (
    BETA2, BOUNDARY_RADIUS, MetricInputError, SODMetrics, format_table, load_mask, prediction_from_image, to_uint8,
)
from ..modeling import U2Net
from ..processing import load_image, set_max_pixels
from . import add_fast_path_arguments

#: Shown in full up to this many; the JSON output always lists all of them.
MAX_LISTED = 10


class UsageError(Exception):
    """A problem with the command line or its inputs: printed as one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="SOD metrics (maxF, MAE, wF, S-measure, E-measure, relaxed boundary F) for a model or saved masks",
        description=(
            "Score a model on a dataset (--dataset, with --model or the bundled demo model) or saved predictions "
            "against ground-truth masks (--pred-dir and --gt-dir, files paired by name). Prints a table; --output "
            "writes the metrics and what was scored as JSON."
        ),
    )
    model = parser.add_argument_group("model on a dataset")
    model.add_argument("--model", "-m", default=None,
                       help="a save_pretrained folder or a Hub repo id (default: the bundled demo model)")
    model.add_argument("--dataset", "-d", default=None,
                       help="a Hub dataset id, an imagefolder with metadata.jsonl, or a folder with images/ and masks/")
    model.add_argument("--split", default=None, help="dataset split (default: test for a Hub dataset, the only "
                       "split of a local folder)")
    model.add_argument("--image-column", default="image", help="column of the input images (default: image)")
    model.add_argument("--mask-column", default="mask", help="column of the ground-truth masks (default: mask)")
    model.add_argument("--limit", type=_positive_int, default=None, help="score only the first N rows")
    model.add_argument("--batch-size", type=_positive_int, default=8, help="images per forward pass (default 8)")
    add_fast_path_arguments(model)
    model.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    model.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                       help="refuse images of more than N pixels (default: about 179 million, Pillow's guard "
                            "against decompression bombs)")
    model.add_argument("--save-predictions", metavar="DIR", default=None,
                       help="also write each predicted map as an 8-bit PNG to DIR (re-scorable with --pred-dir)")
    saved = parser.add_argument_group("saved predictions")
    saved.add_argument("--pred-dir", default=None,
                       help="folder of prediction images (searched recursively); of an RGBA cutout, the alpha "
                            "channel is scored")
    saved.add_argument("--gt-dir", default=None, help="folder of ground-truth masks (searched recursively)")
    out = parser.add_argument_group("output")
    out.add_argument("--output", "-o", default=None, help="write the metrics and metadata to this JSON file")
    out.add_argument("--per-image", action="store_true", help="include every image's scores in the JSON output")
    out.add_argument("--strict", action="store_true",
                     help="exit with status 1 when any item was unmatched or unreadable, or a mask's size differs "
                          "from its image's (still prints the metrics)")
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


# -------------------------------------------------------------- saved predictions


def _image_extensions() -> set[str]:
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _index_folder(root: Path, extensions: set[str]) -> dict[str, list[Path]]:
    """Image files under ``root`` by their relative path without extension (hidden files and folders skipped)."""
    index: dict[str, list[Path]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if name.startswith(".") or path.suffix.lower() not in extensions:
                continue
            key = path.relative_to(root).with_suffix("").as_posix()
            index.setdefault(key, []).append(path)
    return index


def pair_files(pred_dir: Path, gt_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[dict], list[dict]]:
    """Pair prediction and ground-truth files by name.

    A file pairs with the file of the same relative path without extension in
    the other folder (``sub/a.png`` with ``sub/a.jpg``); a file left over pairs
    by its bare name when that name occurs exactly once in each folder (so
    ``preds/a.png`` pairs with ``DUTS-TE-Mask/a.png``). Returns the pairs
    ``(key, pred, gt)``, the unmatched files and the ambiguous ones (one
    relative name with several extensions).
    """
    extensions = _image_extensions()
    preds, gts = _index_folder(pred_dir, extensions), _index_folder(gt_dir, extensions)
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


def _score_folders(args, metrics, per_image: list, unreadable: list, progress) -> dict[str, Any]:
    pred_dir, gt_dir = Path(args.pred_dir), Path(args.gt_dir)
    for flag, folder in (("--pred-dir", pred_dir), ("--gt-dir", gt_dir)):
        if not folder.is_dir():
            raise UsageError(f"{flag} {folder}: no such folder")
    pairs, unmatched, ambiguous = pair_files(pred_dir, gt_dir)
    if not pairs:
        extensions = _image_extensions()
        counts = [sum(len(v) for v in _index_folder(d, extensions).values()) for d in (pred_dir, gt_dir)]
        raise UsageError(
            f"no prediction in {pred_dir} ({counts[0]} image files) matches a ground-truth file in {gt_dir} "
            f"({counts[1]} image files) by name"
        )
    alpha_predictions = 0
    for key, pred_path, gt_path in progress(pairs, desc="evaluate", unit="image"):
        images = []
        for path in (pred_path, gt_path):
            try:
                images.append(load_mask(path))
            except Exception as error:  # noqa: BLE001 - any undecodable file is reported, not fatal
                unreadable.append({"item": str(path), "error": f"{type(error).__name__}: {error}"})
                break
        if len(images) < 2:
            continue
        images[0], from_alpha = prediction_from_image(images[0])
        alpha_predictions += from_alpha
        try:
            scores = metrics.update(images[0], images[1], key=key)
        except MetricInputError as error:
            unreadable.append({"item": str(pred_path), "error": str(error)})
            continue
        if scores is not None:
            per_image.append({"item": key, **scores})
    if alpha_predictions:
        print(f"note: {alpha_predictions} of {len(pairs)} predictions are transparent cutouts (RGBA): their alpha "
              "channel was scored, not their colours", file=sys.stderr)
    return {
        "mode": "pred-dir",
        "alpha_predictions": alpha_predictions,
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
        "pairs": len(pairs),
        "unmatched": unmatched + ambiguous,
    }


# ------------------------------------------------------------ model on a dataset


def _load_model(name: str | None, device: str | None):
    if name is None:
        if not Path(DEMO_MODEL).is_dir():
            raise UsageError(f"the bundled demo model is missing (expected {DEMO_MODEL}); pass --model FOLDER_OR_HUB_ID")
        name = str(DEMO_MODEL)
    if not Path(name).exists() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise UsageError(f"--model {name}: no such folder")
    if Path(name).is_file():
        raise UsageError(f"--model {name} is a file; it takes a save_pretrained folder or a Hub repo id "
                         "(convert released .pth files with `u2net convert`)")
    try:
        model = U2Net.from_pretrained(name)
    except Exception as error:  # noqa: BLE001 - the CLI boundary: one clear line
        where = "local folder" if Path(name).is_dir() else "Hub repo (no local folder has that name)"
        raise UsageError(f"cannot load model {name!r} from the {where}: {type(error).__name__}: {error}") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = model.to(device)
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"cannot use device {device!r}: {error}") from None
    return model.eval(), name


def load_dataset_for_evaluation(name: str, split: str | None, image_column: str, mask_column: str):
    """The dataset to score (columns ``image``/``mask``), its split, and what the loader left out.

    Loading is :func:`u2net_hub.data.load_saliency_dataset` (Hub id,
    imagefolder with metadata.jsonl, images/ + masks/ folder pair,
    save_to_disk folder). Without ``--split`` a Hub dataset uses ``test`` and
    a local folder its only split. The loader's warnings about files it could
    not pair become ``unmatched`` entries.
    """
    local = Path(name).expanduser().is_dir()
    if split is None and not local:
        split = "test"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            dataset = load_saliency_dataset(name, split=split, image_column=image_column, mask_column=mask_column)
        except DatasetLoadError as error:
            raise UsageError(str(error)) from None
    unmatched = [
        {"item": name, "reason": str(w.message)} for w in caught if issubclass(w.category, UserWarning)
    ]
    return dataset, split, unmatched


def _undecoded(dataset, columns: list[str]):
    """Turn off decoding of Image columns, so one broken file is reported instead of stopping the run."""
    for column in columns:
        if isinstance(dataset.features[column], ImageFeature):
            dataset = dataset.cast_column(column, ImageFeature(decode=False))
    return dataset


def _unwrap_cell(value: Any, what: str) -> Any:
    """The encoded bytes or path of an undecoded Image cell (other cells pass through)."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None:
        raise LookupError(f"the {what} is missing")
    return value


def _open_image_cell(value: Any):
    """The input image exactly as `u2net predict` reads it (EXIF orientation, alpha over white, any mode)."""
    return load_image(_unwrap_cell(value, "image"))


def _open_cell(value: Any, what: str):
    """A PIL image (mask) from a dataset cell: an undecoded {bytes, path} dict, a path, a PIL image or an array."""
    value = _unwrap_cell(value, what)
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


def _score_model(args, metrics, per_image: list, unreadable: list, progress) -> dict[str, Any]:
    if args.save_predictions and Path(args.save_predictions).exists() and not Path(args.save_predictions).is_dir():
        raise UsageError(f"--save-predictions {args.save_predictions} exists and is not a folder")
    model, model_name = _load_model(args.model, args.device)  # first: it fails fast, a Hub dataset may be slow
    dataset, split, unmatched = load_dataset_for_evaluation(
        args.dataset, args.split, args.image_column, args.mask_column
    )
    if args.limit is not None and args.limit < len(dataset):
        dataset = dataset.select(range(args.limit))
    if len(dataset) == 0:
        raise UsageError(f"dataset {args.dataset!r} (split {split!r}) has no rows")
    dataset = _undecoded(dataset, ["image", "mask"])
    out_dir = Path(args.save_predictions) if args.save_predictions else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    used_names: set[str] = set()
    size_mismatches: list[dict] = []
    bar = progress(total=len(dataset), desc="evaluate", unit="image")
    try:
        for start in range(0, len(dataset), args.batch_size):
            rows = dataset[start : start + args.batch_size]
            batch = []
            for offset, (image_cell, mask_cell) in enumerate(zip(rows["image"], rows["mask"])):
                index = start + offset
                try:
                    image = _open_image_cell(image_cell)
                    mask = _open_cell(mask_cell, "mask")
                except LookupError as error:
                    unmatched.append({"item": f"row {index}", "reason": str(error)})
                    continue
                except Exception as error:  # noqa: BLE001 - an undecodable row is reported, not fatal
                    unreadable.append({"item": f"row {index}", "error": f"{type(error).__name__}: {error}"})
                    continue
                if mask.size != image.size:
                    size_mismatches.append({
                        "item": _cell_label(mask_cell, index),
                        "reason": f"{mask.size[0]}x{mask.size[1]} mask for the {image.size[0]}x{image.size[1]} "
                                  f"image {_cell_label(image_cell, index)} (the prediction is resized onto the mask)",
                    })
                batch.append((index, image, mask, _cell_name(image_cell)))
            if batch:
                predictions = model.predict(
                    [image for _, image, _, _ in batch], normalize=True, batch_size=args.batch_size,
                    fast=args.fast, sides=False,
                )
                for (index, _, mask, name), prediction in zip(batch, predictions):
                    try:
                        scores = metrics.update(prediction.probability, mask, key=index)
                    except MetricInputError as error:
                        unreadable.append({"item": f"row {index}", "error": f"mask: {error}"})
                        continue
                    item = name if name and name not in used_names else f"{index:06d}"
                    used_names.add(item)
                    if out_dir is not None:
                        Image.fromarray(_to_png_array(prediction.probability), mode="L").save(out_dir / f"{item}.png")
                    per_image.append({"item": item, "row": index, **scores})
            bar.update(len(rows["image"]))
    finally:
        bar.close()
    return {
        "mode": "model",
        "model": model_name,
        "dataset": args.dataset,
        "split": split,
        "image_column": args.image_column,
        "mask_column": args.mask_column,
        "limit": args.limit,
        "fast": bool(args.fast),
        "unmatched": unmatched,
        "size_mismatches": size_mismatches,
    }


def _to_png_array(probability):
    """The 8-bit map SODMetrics scores for this probability map (so saved PNGs re-score identically)."""
    return to_uint8(probability, "prediction")


# ---------------------------------------------------------------------- running


def _warn_list(title: str, entries: list[dict], detail: str) -> None:
    if not entries:
        return
    print(f"warning: {len(entries)} {title}:", file=sys.stderr)
    for entry in entries[:MAX_LISTED]:
        print(f"  {entry['item']}: {entry[detail]}", file=sys.stderr)
    if len(entries) > MAX_LISTED:
        print(f"  ... and {len(entries) - MAX_LISTED} more (all are listed in the --output JSON)", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as error:
        print(f"u2net evaluate: error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    folder_mode = args.pred_dir is not None or args.gt_dir is not None
    if folder_mode and args.dataset is not None:
        raise UsageError("give either --dataset (score a model) or --pred-dir/--gt-dir (score saved masks), not both")
    if folder_mode and (args.pred_dir is None or args.gt_dir is None):
        raise UsageError("--pred-dir and --gt-dir go together")
    if not folder_mode and args.dataset is None:
        raise UsageError("nothing to evaluate: give --dataset NAME_OR_DIR, or --pred-dir P --gt-dir G")
    if folder_mode and args.model is not None:
        raise UsageError("--model has no effect with --pred-dir/--gt-dir (the predictions are already made)")
    if args.output and Path(args.output).is_dir():
        raise UsageError(f"--output {args.output} is a folder; give a file name such as metrics.json")

    def progress(iterable=None, **kwargs):
        return tqdm(iterable, disable=args.no_progress, dynamic_ncols=True, **kwargs)

    if getattr(args, "max_pixels", None) is not None:
        set_max_pixels(args.max_pixels)
    metrics = SODMetrics()
    per_image: list[dict] = []
    unreadable: list[dict] = []
    if folder_mode:
        meta = _score_folders(args, metrics, per_image, unreadable, progress)
    else:
        meta = _score_model(args, metrics, per_image, unreadable, progress)

    _warn_list("items without a partner (skipped)", meta["unmatched"], "reason")
    _warn_list("unreadable items (skipped)", unreadable, "error")
    _warn_list("masks of another size than their image (--strict: exit status 1)", meta.get("size_mismatches", []),
               "reason")
    if len(metrics) == 0:
        raise UsageError("no pair could be scored (every matched item was unreadable; see the warnings above)")
    results = metrics.compute()
    print(format_table(results))

    if args.output:
        document: dict[str, Any] = dict(results)
        document.update(meta)
        document["unreadable"] = unreadable
        document["protocol"] = {
            "beta2": BETA2, "boundary_radius_px": BOUNDARY_RADIUS, "s_measure_alpha": 0.5,
            "weighted_f_beta2": 1.0, "thresholds": 256,
        }
        document["u2net_hub_version"] = __version__
        if args.per_image:
            document["per_image"] = per_image
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {output}", file=sys.stderr)
    if args.strict and (meta["unmatched"] or unreadable or meta.get("size_mismatches")):
        return 1
    return 0
