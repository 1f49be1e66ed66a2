"""The large-job half of `u2net predict`: `--dataset D --output-dataset OUT`, and video files.

Only argument parsing and calls into :mod:`u2net_hub.datasets_io` and
:mod:`u2net_hub.video`; `commands/predict.py` dispatches here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..convert import PushError
from ..datasets_io import DatasetPredictionError, predict_dataset
from ..video import VideoError, is_video_file, output_name, predict_video


DEMO_NAME = "u2net-tiny-synthetic (bundled demo)"


def uses_dataset(args: argparse.Namespace) -> bool:
    return args.dataset is not None or args.output_dataset is not None


def run_dataset(args: argparse.Namespace, load_model) -> int:
    """`u2net predict --dataset D --output-dataset OUT`; ``load_model(name)`` -> (model, error)."""
    def usage(message: str) -> int:
        print(f"u2net predict: {message}", file=sys.stderr)
        return 2

    if args.dataset is None or args.output_dataset is None:
        return usage("--dataset and --output-dataset go together")
    if args.inputs or args.output_dir is not None:
        return usage("--dataset goes with --output-dataset DIR; INPUT files and --output-dir are the other mode")
    if args.format != "mask":
        return usage(f"--dataset writes masks; --format {args.format} applies to files only")
    if args.background is not None:
        return usage("--background only applies to --format rgba")
    if args.output_format is not None or args.quality is not None:
        return usage("--dataset stores masks as PNG in Parquet; --output-format and --quality apply to files only")
    if args.shard_size < 1:
        return usage(f"--shard-size must be at least 1, got {args.shard_size}")
    model, error = load_model(args.model)
    if model is None:
        return usage(error)
    try:
        result = predict_dataset(
            model, args.dataset, args.output_dataset, split=args.split, config_name=args.dataset_config,
            image_column=args.image_column, shard_size=args.shard_size, keep_image=args.keep_image,
            batch_size=args.batch_size, normalize=args.normalize, threshold=args.threshold, fast=args.fast,
            compile=args.compile, device=args.device, push_to_hub=args.push_to_hub, private=args.private,
            model_name=args.model or DEMO_NAME,
        )
    except DatasetPredictionError as error:
        return usage(str(error))
    except PushError as error:
        print(f"u2net predict: {error}", file=sys.stderr)
        return 1
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"u2net predict: {result.summary()}")
        if result.pushed_to:
            print(f"pushed to {result.pushed_to}")
    return 0


def is_video(path: Path) -> bool:
    return is_video_file(path)


def run_videos(jobs, args: argparse.Namespace, model, output_dir: Path, fail) -> int:
    """Each (video, stem) job -> OUT/<stem>.mp4 (mask) or .mov (rgba); returns how many were written."""
    if not jobs:
        return 0
    if args.format == "sides":
        for source, _ in jobs:
            fail(source, "--format sides is for images; videos take --format mask or rgba")
        return 0
    if args.background is not None:
        for source, _ in jobs:
            fail(source, "--background is for images; a video cutout keeps its alpha")
        return 0
    ok = 0
    for source, stem in jobs:
        target = output_dir / stem.parent / output_name(stem.name, args.format)
        if target.resolve() == Path(source).resolve():
            fail(source, "its output would overwrite the input video; choose another --output-dir")
            continue
        try:
            predict_video(model, source, target, format=args.format, batch_size=args.batch_size,
                          normalize=args.normalize, threshold=args.threshold, fast=args.fast,
                          compile=args.compile)
            ok += 1
        except VideoError as error:
            fail(source, error.reason)
    return ok
