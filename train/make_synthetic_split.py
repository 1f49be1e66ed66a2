"""A folder of the built-in synthetic scenes (images/ + masks/, PNG), for training mixes and held-out splits.

Seeds in use: 0 (training scenes of train.py and the composites), 1 (validation during training), 5 (the
160 px scenes of train/finetune_released_tiny.sh), 20261125 (the held-out split every demo model is scored on).

    python train/make_synthetic_split.py --out runs/heldout-synthetic-20261125 --seed 20261125 --count 300

Scene i is the same image whatever ``--workers`` renders it (row i of ``make_synthetic_dataset``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from multiprocessing import Pool
from pathlib import Path

from tqdm.auto import tqdm

from u2net_hub.data import render_synthetic_sample


def write_scene(index: int, out: Path, size: int, seed: int) -> None:
    image, mask = render_synthetic_sample(index, size=size, seed=seed)
    image.save(out / "images" / f"{index:04d}.png")
    mask.save(out / "masks" / f"{index:04d}.png")


def write_folder(out: Path, write: Callable[[int], None], count: int, workers: int, progress: bool) -> None:
    """Make ``out``/images and ``out``/masks, then ``write(i)`` scenes 0..count-1 in ``workers`` processes.

    Also used by train/make_hair_composites.py; ``write`` must be picklable (a module-level function or a
    partial of one) when ``workers`` > 1.
    """
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=count, unit="scene", desc="rendering", disable=not progress)
    if workers == 1:
        for index in range(count):
            write(index)
            bar.update()
    else:
        with Pool(workers) as pool:
            for _ in pool.imap_unordered(write, range(count), chunksize=16):
                bar.update()
    bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, default=160, help="the scenes' side in pixels")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the scenes")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 16 or args.workers < 1:
        parser.error(f"--count and --workers must be at least 1 and --size at least 16, got {args.count}, "
                     f"{args.workers} and {args.size}")
    write_folder(args.out, partial(write_scene, out=args.out, size=args.size, seed=args.seed), args.count,
                 args.workers, args.progress)
    print(f"wrote {args.count} scenes of {args.size}x{args.size} (seed {args.seed}) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
