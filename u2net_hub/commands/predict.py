"""`u2net predict INPUTS... --output-dir OUT`: masks, cutouts or side outputs for files, folders and globs.

A file that cannot be read is reported and skipped; the others are still
written, and the exit status is 1 when anything failed (2 for usage errors or
a model that cannot be loaded).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path, PurePath

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..hub import ModelLoadError
from ..inference import iter_predictions
from ..matting import MattingError, MattingOptions, post_process_mask
from ..modeling import U2Net
from ..pipeline import DEFAULT_QUALITY, OUTPUT_SUFFIXES, save_image
from ..processing import IMAGE_EXTENSIONS, ImageLoadError, parse_background, set_max_pixels, to_mask
from ..video import VIDEO_EXTENSIONS
from . import _predict_scale as _scale
from .parsers import MAPPING_NAME, MARKER_NAME

_WALKED = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


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


def _is_our_output(folder: Path, skip: Path) -> bool:
    """The current output folder, or one an earlier run of this command wrote (it holds our marker)."""
    return folder.resolve() == skip or (folder / MARKER_NAME).is_file()


def _walk(folder: Path, skip: Path, skipped: set[Path]) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        kept = []
        for d in sorted(dirs):
            if _is_our_output(root_path / d, skip):
                skipped.add(root_path / d)
            else:
                kept.append(d)
        dirs[:] = kept
        found.extend(root_path / f for f in sorted(files) if Path(f).suffix.lower() in _WALKED)
    return found


def _inside_our_output(path: Path, skip: Path) -> Path | None:
    for parent in path.parents:
        if parent == Path(".") or parent == Path(parent.anchor):
            break
        if _is_our_output(parent, skip):
            return parent
    return None


def collect_inputs(inputs: list[str], output_dir: Path, fmt: str = "mask",
                   skipped: set[Path] | None = None, suffix: str = ".png") -> tuple[list[tuple[Path, PurePath]], list[str]]:
    """(file, output stem relative to DIR) pairs in a stable order, and one message per input that matched nothing.

    Folders that are output folders of this command (the current one, or one
    holding :data:`MARKER_NAME`) are not searched; they are added to `skipped`.
    """
    skip = output_dir.resolve()
    skipped = set() if skipped is None else skipped
    jobs: list[tuple[Path, PurePath]] = []
    problems: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            if _is_our_output(path, skip) and path.resolve() != skip:
                skipped.add(path)
                continue
            files = _walk(path, skip, skipped)
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
                ours = match if match.is_dir() and _is_our_output(match, skip) else _inside_our_output(match, skip)
                if ours is not None:
                    skipped.add(ours)
                elif match.is_dir():
                    jobs.extend((f, f.relative_to(base).with_suffix("")) for f in _walk(match, skip, skipped))
                else:
                    jobs.append((match, match.relative_to(base).with_suffix("")))
        else:
            problems.append(f"{text}: no such file or folder")
    return _deduplicate(jobs, fmt, suffix), problems


def _names(stem: PurePath, fmt: str, suffix: str = ".png") -> list[str]:
    """The output file names of a stem, case-folded (two names that differ in case clash on macOS and Windows)."""
    return [p.as_posix().casefold() for p in _outputs(stem, Path("."), fmt, suffix)]


def _deduplicate(jobs: list[tuple[Path, PurePath]], fmt: str = "mask",
                 suffix: str = ".png") -> list[tuple[Path, PurePath]]:
    """Each file once. Files whose outputs would clash keep their extension in the name (``a.jpg`` ->
    ``a.jpg.png``, then ``a.jpg-2.png``), and no renamed output takes a name that another input's
    output has by right."""
    seen: set[Path] = set()
    unique = []
    for source, stem in jobs:
        key = source.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((source, stem))

    owners: dict[str, int] = {}
    for i, (_, stem) in enumerate(unique):
        for name in _names(stem, fmt, suffix):
            owners[name] = owners.get(name, 0) + 1
    clashing = [any(owners[name] > 1 for name in _names(stem, fmt, suffix)) for _, stem in unique]
    taken = {name for (_, stem), clash in zip(unique, clashing) if not clash for name in _names(stem, fmt, suffix)}
    result = []
    for (source, stem), clash in zip(unique, clashing):
        if clash:
            base = f"{stem.name}{source.suffix.lower() or '.noext'}"
            candidate, n = stem.with_name(base), 1
            while any(name in taken for name in _names(candidate, fmt, suffix)):
                n += 1
                candidate = stem.with_name(f"{base}-{n}")
            stem = candidate
        taken.update(_names(stem, fmt, suffix))
        result.append((source, stem))
    return result


def write_mapping(jobs: list[tuple[Path, PurePath]], output_dir: Path, fmt: str, suffix: str = ".png") -> int:
    """Write DIR/outputs.csv (input, output) for every input when some output name is not its input's stem.

    Returns how many names were changed (0: nothing written)."""
    import csv

    changed = sum(1 for source, stem in jobs if stem.name != source.stem)
    if not changed:
        return 0
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / MAPPING_NAME, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "output"])
        for source, stem in jobs:
            for target in _outputs(stem, output_dir, fmt, suffix):
                writer.writerow([str(source), target.relative_to(output_dir).as_posix()])
    return changed


# ------------------------------------------------------------------- running


def _load_model(name: str | None):
    """The model and None, or None and the reason it cannot be loaded (U2Net.load's one wording; exit status 2)."""
    try:
        return U2Net.load(name), None
    except ModelLoadError as error:
        return None, str(error)


def _outputs(stem: PurePath, output_dir: Path, fmt: str, suffix: str = ".png") -> list[Path]:
    if fmt == "sides":
        names = [f"{stem.name}_side{k}{suffix}" for k in range(1, 7)] + [f"{stem.name}_fused{suffix}"]
    else:
        names = [f"{stem.name}{suffix}"]
    return [output_dir / stem.parent / name for name in names]


def _save(image, target: Path, args) -> None:
    save_image(image, target, args.output_format, compress_level=args.compress_level, quality=args.quality)


MATTING_KNOBS = ("alpha_matting_foreground_threshold", "alpha_matting_background_threshold", "alpha_matting_erode_size")
MATTING_DEFAULTS = {"alpha_matting_foreground_threshold": 240, "alpha_matting_background_threshold": 10,
                    "alpha_matting_erode_size": 10}


def _matting_kwargs(args) -> dict:
    return {name: MATTING_DEFAULTS[name] if getattr(args, name) is None else getattr(args, name) for name in MATTING_KNOBS}


def _write(prediction, targets: list[Path], args, background) -> None:
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    if args.format == "mask":
        if args.alpha_matting:  # the refined alpha, as the mask
            cut = prediction.cutout(alpha_matting=True, post_process_mask=args.post_process_mask, **_matting_kwargs(args))
            _save(cut.getchannel("A"), targets[0], args)
            return
        mask = prediction.mask if not args.threshold else to_mask(prediction.probability, args.threshold)
        if args.post_process_mask:
            mask = Image.fromarray(post_process_mask(np.asarray(mask)), mode="L")
        _save(mask, targets[0], args)
    elif args.format == "rgba":
        extra = _matting_kwargs(args) if args.alpha_matting else {}
        cut = prediction.cutout(background=background, threshold=args.threshold, alpha_matting=args.alpha_matting,
                                post_process_mask=args.post_process_mask, **extra)
        _save(cut, targets[0], args)
    else:
        maps = [*prediction.side_probabilities, prediction.probability]
        for target, probability in zip(targets, maps, strict=True):
            _save(to_mask(probability, args.threshold), target, args)


class _WriteError(Exception):
    """An output that could not be written (the message says which and why)."""


def _check_matting(args) -> str | None:
    """The one-line usage error for a bad combination of the matting flags, or None."""
    given = [name for name in MATTING_KNOBS if getattr(args, name) is not None]
    if given and not args.alpha_matting:
        return f"--{given[0].replace('_', '-')} only applies with --alpha-matting"
    if args.alpha_matting and args.format == "sides":
        return "--alpha-matting applies to --format rgba or mask, not sides"
    if args.post_process_mask and args.format == "sides":
        return "--post-process-mask applies to --format rgba or mask, not sides"
    if args.alpha_matting and args.threshold:
        return "--alpha-matting estimates a soft alpha; it cannot be combined with --threshold"
    if not args.alpha_matting:
        return None
    values = _matting_kwargs(args)
    for name in ("alpha_matting_foreground_threshold", "alpha_matting_background_threshold"):
        if not 0 <= values[name] <= 255:
            return f"--{name.replace('_', '-')} must be from 0 to 255, got {values[name]}"
    if values["alpha_matting_erode_size"] < 0:
        return f"--alpha-matting-erode-size must be at least 0, got {values['alpha_matting_erode_size']}"
    try:
        MattingOptions(foreground_threshold=values["alpha_matting_foreground_threshold"],
                       background_threshold=values["alpha_matting_background_threshold"],
                       erode_size=values["alpha_matting_erode_size"])
    except MattingError as error:
        return f"alpha matting: {error}"
    return None


def _check_output_format(args) -> str | None:
    """The one-line usage error for --output-format, --quality and --compress-level that do not fit, or None.

    Sets ``args.output_format`` (default png) and ``args.quality`` (default 90) when they are fine."""
    fmt = args.output_format or "png"
    if args.quality is not None and fmt == "png":
        return "--quality applies to --output-format webp or jpeg (PNG is lossless; see --compress-level)"
    if args.quality is not None and not 1 <= args.quality <= 100:
        return f"--quality must be from 1 to 100, got {args.quality}"
    if args.compress_level is not None and fmt != "png":
        return f"--compress-level applies to PNG outputs, not --output-format {fmt}"
    if fmt == "jpeg" and args.format == "rgba" and args.background is None:
        return ("--output-format jpeg has no alpha channel: give --background (e.g. white) for RGB cutouts, "
                "or write rgba as png or webp")
    args.output_format = fmt
    args.quality = DEFAULT_QUALITY if args.quality is None else args.quality
    return None


def run(args: argparse.Namespace) -> int:
    def usage(message: str) -> int:
        print(f"u2net predict: {message}", file=sys.stderr)
        return 2

    if args.only_mask and args.format not in (None, "mask"):
        return usage(f"--only-mask means --format mask; it contradicts --format {args.format}")
    args.format = args.format or "mask"
    if args.batch_size < 1:
        return usage(f"--batch-size must be at least 1, got {args.batch_size}")
    if _scale.uses_dataset(args):
        return _scale.run_dataset(args, _load_model)
    if not args.inputs:
        return usage("give INPUT files, folders or globs (or --dataset D --output-dataset DIR)")
    if args.output_dir is None:
        return usage("--output-dir/-o is required with INPUT files")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return usage(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.background is not None and args.format != "rgba":
        return usage("--background only applies to --format rgba")
    if args.compile and not args.fast:
        return usage("--compile compiles the fast path; it cannot be combined with --no-fast")
    problem = _check_output_format(args)
    if problem:
        return usage(problem)
    problem = _check_matting(args)
    if problem:
        return usage(problem)
    try:
        background = parse_background(args.background)
    except ValueError as error:
        return usage(str(error))

    output_dir = Path(args.output_dir)
    blocking = next((p for p in (output_dir, *output_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        return usage(f"--output-dir {output_dir}: {blocking} is a file, not a folder")
    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)
    skipped: set[Path] = set()
    suffix = OUTPUT_SUFFIXES[args.output_format]
    jobs, problems = collect_inputs(args.inputs, output_dir, args.format, skipped, suffix)
    for folder in sorted(skipped):
        if folder.resolve() != output_dir.resolve():
            print(f"u2net predict: not reading {folder}: an output folder of an earlier run", file=sys.stderr)
    for problem in problems:
        print(f"u2net predict: {problem}", file=sys.stderr)
    if not jobs:
        return usage("no images found in the inputs given")
    videos = [job for job in jobs if _scale.is_video(job[0])]
    jobs = [job for job in jobs if job not in videos]

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
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        resolved = output_dir.resolve()
        if not any(resolved == source.parent or resolved in source.parents for source in sources):
            # Only a folder of outputs is marked: one that also holds inputs must stay readable to later runs.
            (output_dir / MARKER_NAME).write_text(json.dumps({"written_by": "u2net predict",
                                                               "format": args.format}) + "\n")
        renamed = write_mapping(jobs, output_dir, args.format, suffix)
    except OSError as error:
        return usage(f"cannot write to --output-dir {output_dir}: {error}")
    if renamed:
        print(f"u2net predict: {renamed} inputs share a name with another input; their outputs keep the "
              f"extension (e.g. {next(s for src, s in jobs if s.name != src.stem).name}{suffix}). "
              f"{output_dir / MAPPING_NAME} maps every input to its output.", file=sys.stderr)

    def fail(source: Path, reason: str) -> None:
        nonlocal failed
        failed += 1
        tqdm.write(f"u2net predict: skipped {source}: {reason}", file=sys.stderr)

    def unreadable(error: ImageLoadError) -> None:  # its message already starts with the file name
        nonlocal failed
        failed += 1
        tqdm.write(f"u2net predict: skipped {error}", file=sys.stderr)

    ok += _scale.run_videos(videos, args, model, output_dir, fail)
    runnable = []
    for source, stem in jobs:
        targets = _outputs(stem, output_dir, args.format, suffix)
        if any(t.resolve() in sources for t in targets):
            fail(source, "its output would overwrite an input image; choose another --output-dir")
        else:
            runnable.append((source, targets))

    def write(index: int, prediction) -> None:  # on the worker threads, overlapping the network
        targets = runnable[index][1]
        try:
            _write(prediction, targets, args, background)
        except OSError as error:
            raise _WriteError(f"cannot write {targets[0]}: {error}") from None

    with tqdm(total=len(jobs), desc="predict", unit="image", file=sys.stderr, disable=not jobs) as bar:
        bar.update(len(jobs) - len(runnable))
        results = iter_predictions(
            model, [source for source, _ in runnable], normalize=args.normalize, batch_size=args.batch_size,
            fast=args.fast, compile=args.compile, sides=args.format == "sides",
            draft=args.draft and args.format != "rgba" and not args.alpha_matting, then=write,
        )
        for index, result in results:
            source = runnable[index][0]
            if isinstance(result, ImageLoadError):
                unreadable(result)
            elif isinstance(result, _WriteError):
                fail(source, str(result))
            elif isinstance(result, (RuntimeError, ValueError)):
                fail(source, f"prediction failed: {result}")
            elif isinstance(result, Exception):
                raise result
            else:
                ok += 1
            bar.update(1)
    print(f"u2net predict: {ok} ok, {failed} failed; outputs in {output_dir}")
    return 0 if failed == 0 else 1
