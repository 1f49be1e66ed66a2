"""One training folder (images/ + masks/) made of symbolic links into several others, each repeated N times.

``train.py --train_data_dir`` reads one folder; a mix of sources in chosen proportions (a few hundred real
photos repeated beside thousands of composites) is a folder of links, so nothing is copied. Every link is
named ``<source index>-<repeat>-<stem>`` so stems from different sources never collide. A source may keep only
the stems that start with a prefix (``:c8-`` keeps a composite set's composites, ``:s`` its synthetic scenes).

    python train/link_training_set.py --out runs/stage5-data \\
        runs/teacher/gcompris-train:10 runs/cutout-composites-320-seed8-scratch:1:s
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def parse_source(text: str) -> tuple[Path, int, str]:
    folder, _, rest = text.partition(":")
    repeats, _, prefix = rest.partition(":")
    try:
        count = int(repeats or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the repeat count after ':' must be a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the repeat count must be at least 1")
    return Path(folder), count, prefix


def pairs(folder: Path, prefix: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a folder with images/ and masks/ matched by stem; a missing mask is an error."""
    masks = {path.stem: path for path in (folder / "masks").iterdir()} if (folder / "masks").is_dir() else {}
    if not masks:
        sys.exit(f"error: {folder}/masks holds no masks")
    found = []
    for image in sorted((folder / "images").iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES or not image.stem.startswith(prefix):
            continue
        if image.stem not in masks:
            sys.exit(f"error: {image} has no mask in {folder}/masks")
        found.append((image, masks[image.stem]))
    if not found:
        sys.exit(f"error: {folder}/images holds no images" + (f" starting with {prefix!r}" if prefix else ""))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", type=parse_source, metavar="FOLDER[:REPEATS[:PREFIX]]")
    parser.add_argument("--out", type=Path, required=True, help="the folder to (re)write")
    args = parser.parse_args(argv)

    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "images").mkdir(parents=True)
    (args.out / "masks").mkdir()
    for index, (folder, repeats, prefix) in enumerate(args.sources):
        found = pairs(folder, prefix)
        for repeat in range(repeats):
            for image, mask in found:
                name = f"{index}-{repeat}-{image.stem}"
                (args.out / "images" / f"{name}{image.suffix}").symlink_to(image.resolve())
                (args.out / "masks" / f"{name}{mask.suffix}").symlink_to(mask.resolve())
        print(f"{folder}: {len(found)} pairs x {repeats}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
