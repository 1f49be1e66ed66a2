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
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ..evaluation import EvaluationError, EvaluationRun, load_dataset_for_evaluation, score_folders, score_model
from ..hub import DEMO_MODEL, ModelLoadError, __version__
from ..metrics import BETA2, BOUNDARY_RADIUS, SODMetrics, format_table
from ..modeling import U2Net
from ..processing import set_max_pixels

#: Shown in full up to this many; the JSON output always lists all of them.
MAX_LISTED = 10


class UsageError(Exception):
    """A problem with the command line or its inputs: printed as one line, exit status 2."""


# ------------------------------------------------------------ model on a dataset


def _score_model(args, metrics: SODMetrics) -> EvaluationRun:
    if args.save_predictions and Path(args.save_predictions).exists() and not Path(args.save_predictions).is_dir():
        raise UsageError(f"--save-predictions {args.save_predictions} exists and is not a folder")
    try:  # first: it fails fast, a Hub dataset may be slow
        model = U2Net.load(args.model)
    except ModelLoadError as error:
        raise UsageError(str(error)) from None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = model.to(device)
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"cannot use device {device!r}: {error}") from None
    dataset, split, unmatched = load_dataset_for_evaluation(
        args.dataset, args.split, args.image_column, args.mask_column
    )
    if args.limit is not None and args.limit < len(dataset):
        dataset = dataset.select(range(args.limit))
    if len(dataset) == 0:
        raise UsageError(f"dataset {args.dataset!r} (split {split!r}) has no rows")
    run = score_model(
        model, dataset, metrics, batch_size=args.batch_size, fast=args.fast,
        save_predictions=args.save_predictions, progress=not args.no_progress,
    )
    run.unmatched[:0] = unmatched
    run.meta = {
        "mode": "model",
        "model": args.model or DEMO_MODEL,
        "dataset": args.dataset,
        "split": split,
        "image_column": args.image_column,
        "mask_column": args.mask_column,
        "limit": args.limit,
        "fast": bool(args.fast),
    }
    return run


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
    except (UsageError, EvaluationError) as error:
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

    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)
    metrics = SODMetrics()
    if folder_mode:
        run = score_folders(args.pred_dir, args.gt_dir, metrics, progress=not args.no_progress)
    else:
        run = _score_model(args, metrics)

    _warn_list("items without a partner (skipped)", run.unmatched, "reason")
    _warn_list("unreadable items (skipped)", run.unreadable, "error")
    _warn_list("masks of another size than their image (--strict: exit status 1)", run.size_mismatches, "reason")
    if run.meta.get("alpha_predictions"):
        print(f"note: {run.meta['alpha_predictions']} of {run.meta['pairs']} predictions are transparent cutouts "
              "(RGBA): their alpha channel was scored, not their colours", file=sys.stderr)
    if len(metrics) == 0:
        raise UsageError("no pair could be scored (every matched item was unreadable; see the warnings above)")
    results = metrics.compute()
    print(format_table(results))

    if args.output:
        document: dict[str, Any] = dict(results)
        document.update(run.meta)
        document["unmatched"] = run.unmatched
        document["unreadable"] = run.unreadable
        if run.meta["mode"] == "model":
            document["size_mismatches"] = run.size_mismatches
        document["protocol"] = {
            "beta2": BETA2, "boundary_radius_px": BOUNDARY_RADIUS, "s_measure_alpha": 0.5,
            "weighted_f_beta2": 1.0, "thresholds": 256,
        }
        document["u2net_hub_version"] = __version__
        if args.per_image:
            document["per_image"] = run.per_image
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {output}", file=sys.stderr)
    if args.strict and (run.unmatched or run.unreadable or run.size_mismatches):
        return 1
    return 0
