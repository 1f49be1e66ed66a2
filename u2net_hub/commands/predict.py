"""`u2net predict INPUTS... --output-dir OUT`: masks, cutouts or side outputs for files, folders and globs.

A file that cannot be read is reported and skipped; the others are still
written, and the exit status is 1 when anything failed (2 for usage errors or
a model that cannot be loaded).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from pathlib import Path, PurePath

import torch
from huggingface_hub import constants
from tqdm.auto import tqdm

from ..hub import DEMO_MODEL
from ..inference import predict
from ..modeling import U2Net
from ..processing import ImageLoadError, load_image, parse_background, to_mask
from . import add_fast_path_arguments

#: Extensions picked up when walking folders (files named explicitly are always tried).
IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".avif",
}
FORMATS = ("mask", "rgba", "sides")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="write saliency masks or RGBA cutouts for images, folders and globs",
        description=(
            "Predict saliency for every image given (files, folders searched recursively, glob patterns) and "
            "write PNGs to OUT, keeping the inputs' relative paths: OUT/<stem>.png, or with --format sides "
            "OUT/<stem>_side1.png .. _side6.png and OUT/<stem>_fused.png."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--model", "-m", default=None,
                        help="a save_pretrained folder or a Hub repo id (default: the bundled demo model)")
    parser.add_argument("--output-dir", "-o", required=True, help="where to write the PNGs")
    parser.add_argument("--format", "-f", choices=FORMATS, default="mask",
                        help="mask: 8-bit mask; rgba: cutout with the mask as alpha; sides: the six side outputs and the fused map")
    parser.add_argument("--normalize", action="store_true", help="min-max each map per image (the original's normPRED)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="binarise at this probability (0..1) instead of writing soft masks")
    parser.add_argument("--background", default=None,
                        help="with --format rgba: fill the background with a colour (white, '#00ff00', 0,255,0) or 'blur'")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    add_fast_path_arguments(parser)
    parser.add_argument("--compile", action="store_true",
                        help="also run the fast path through torch.compile (slow start, faster on long GPU batch jobs)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.set_defaults(run=run)


# ---------------------------------------------------------------- the inputs


def _non_magic_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: outputs are named relative to it."""
    parts = PurePath(pattern).parts
    base: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def _walk(folder: Path, skip: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if (root_path / d).resolve() != skip)
        found.extend(root_path / f for f in sorted(files) if Path(f).suffix.lower() in IMAGE_EXTENSIONS)
    return found


def collect_inputs(inputs: list[str], output_dir: Path) -> tuple[list[tuple[Path, PurePath]], list[str]]:
    """(file, output stem relative to OUT) pairs in a stable order, and one message per input that matched nothing."""
    skip = output_dir.resolve()
    jobs: list[tuple[Path, PurePath]] = []
    problems: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = _walk(path, skip)
            if not files:
                problems.append(f"{text}: no images in this folder")
            jobs.extend((f, f.relative_to(path).with_suffix("")) for f in files)
        elif path.exists():
            jobs.append((path, PurePath(path.stem)))
        elif glob.has_magic(text):
            base = _non_magic_base(text)
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                problems.append(f"{text}: no files match")
            for match in map(Path, matches):
                if match.is_dir():
                    jobs.extend((f, f.relative_to(base).with_suffix("")) for f in _walk(match, skip))
                elif skip not in match.resolve().parents:
                    jobs.append((match, match.relative_to(base).with_suffix("")))
        else:
            problems.append(f"{text}: no such file or folder")
    return _deduplicate(jobs), problems


def _deduplicate(jobs: list[tuple[Path, PurePath]]) -> list[tuple[Path, PurePath]]:
    """Each file once; files that would write the same output get their extension, then a number, in the name."""
    seen: set[Path] = set()
    unique = []
    for source, stem in jobs:
        key = source.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((source, stem))

    def clashing(pairs):
        counts: dict[PurePath, int] = {}
        for _, stem in pairs:
            counts[stem] = counts.get(stem, 0) + 1
        return {stem for stem, n in counts.items() if n > 1}

    clash = clashing(unique)
    unique = [
        (source, stem.with_name(f"{stem.name}_{source.suffix.lstrip('.').lower() or 'noext'}") if stem in clash else stem)
        for source, stem in unique
    ]
    taken: dict[PurePath, int] = {}
    numbered = []
    for source, stem in unique:
        taken[stem] = taken.get(stem, 0) + 1
        numbered.append((source, stem if taken[stem] == 1 else stem.with_name(f"{stem.name}_{taken[stem]}")))
    return numbered


# ------------------------------------------------------------------ the model


def _load_model(name: str | None):
    """The model, or an error message (exit status 2)."""
    if name is None:
        if not Path(DEMO_MODEL).is_dir():
            return None, (
                f"the bundled demo model is missing (expected the folder {DEMO_MODEL}); "
                "pass --model FOLDER_OR_HUB_ID"
            )
        name = str(DEMO_MODEL)
    path = Path(name)
    if path.is_file():
        hint = f"; convert it first: u2net convert {name} OUT_DIR" if path.suffix in (".pth", ".pt") else ""
        return None, f"--model {name} is a file; it takes a save_pretrained folder or a Hub repo id{hint}"
    try:
        return U2Net.from_pretrained(name), None
    except Exception as error:  # noqa: BLE001 - the CLI boundary: every failure becomes one clear line
        where = "the local folder" if path.is_dir() else "the Hub repo (no local folder has that name)"
        offline = ""
        if not path.is_dir() and constants.HF_HUB_OFFLINE:
            offline = " HF_HUB_OFFLINE=1 is set, so only models already in the local cache can be used."
        return None, f"cannot load model {name!r} from {where}: {type(error).__name__}: {str(error).rstrip('. ')}.{offline}"


def _parse_background(text: str | None):
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", text)
    return parse_background(tuple(int(v) for v in match.groups()) if match else text)


# ------------------------------------------------------------------- running


def _outputs(stem: PurePath, output_dir: Path, fmt: str) -> list[Path]:
    if fmt == "sides":
        names = [f"{stem.name}_side{k}.png" for k in range(1, 7)] + [f"{stem.name}_fused.png"]
    else:
        names = [f"{stem.name}.png"]
    return [output_dir / stem.parent / name for name in names]


def _write(prediction, targets: list[Path], args, background) -> None:
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    if args.format == "mask":
        mask = prediction.mask if not args.threshold else to_mask(prediction.probability, args.threshold)
        mask.save(targets[0])
    elif args.format == "rgba":
        prediction.cutout(background=background, threshold=args.threshold).save(targets[0])
    else:
        maps = [*prediction.side_probabilities, prediction.probability]
        for target, probability in zip(targets, maps, strict=True):
            to_mask(probability, args.threshold).save(target)


def run(args: argparse.Namespace) -> int:
    def usage(message: str) -> int:
        print(f"u2net predict: {message}", file=sys.stderr)
        return 2

    if args.batch_size < 1:
        return usage(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return usage(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.background is not None and args.format != "rgba":
        return usage("--background only applies to --format rgba")
    if args.compile and not args.fast:
        return usage("--compile compiles the fast path; it cannot be combined with --no-fast")
    try:
        background = _parse_background(args.background)
    except ValueError as error:
        return usage(str(error))

    output_dir = Path(args.output_dir)
    jobs, problems = collect_inputs(args.inputs, output_dir)
    for problem in problems:
        print(f"u2net predict: {problem}", file=sys.stderr)
    if not jobs:
        return usage("no images found in the inputs given")

    model, error = _load_model(args.model)
    if model is None:
        return usage(error)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as error:
        return usage(f"cannot use device {device!r}: {error}")

    sources = {source.resolve() for source, _ in jobs}
    ok, failed = 0, len(problems)

    def fail(source: Path, reason: str) -> None:
        nonlocal failed
        failed += 1
        tqdm.write(f"u2net predict: skipped {source}: {reason}", file=sys.stderr)

    def unreadable(error: ImageLoadError) -> None:  # its message already starts with the file name
        nonlocal failed
        failed += 1
        tqdm.write(f"u2net predict: skipped {error}", file=sys.stderr)

    with tqdm(total=len(jobs), desc="predict", unit="image", file=sys.stderr) as bar:
        for start in range(0, len(jobs), args.batch_size):
            chunk = jobs[start : start + args.batch_size]
            ready = []
            for source, stem in chunk:
                targets = _outputs(stem, output_dir, args.format)
                if any(t.resolve() in sources for t in targets):
                    fail(source, "its output would overwrite an input image; choose another --output-dir")
                    continue
                try:
                    ready.append((source, targets, load_image(source)))
                except ImageLoadError as error:
                    unreadable(error)
            if ready:
                try:
                    predictions = predict(
                        model, [image for _, _, image in ready], normalize=args.normalize,
                        batch_size=len(ready), fast=args.fast, compile=args.compile, sides=args.format == "sides",
                    )
                except (RuntimeError, ValueError) as error:
                    for source, _, _ in ready:
                        fail(source, f"prediction failed: {error}")
                    predictions = []
                for (source, targets, _), prediction in zip(ready, predictions):
                    try:
                        _write(prediction, targets, args, background)
                        ok += 1
                    except OSError as error:
                        fail(source, f"cannot write {targets[0]}: {error}")
            bar.update(len(chunk))
    print(f"u2net predict: {ok} ok, {failed} failed; outputs in {output_dir}")
    return 0 if failed == 0 else 1
