"""A folder of the built-in synthetic scenes (images/ + masks/, PNG), for training mixes and held-out splits.

Seeds in use: 0 (training scenes of train.py and the composites), 1 (validation during training), 5 (the
160 px scenes of train/finetune_released_tiny.sh), 20261125 (the held-out split every demo model is scored on).

    python train/make_synthetic_split.py --out runs/heldout-synthetic-20261125 --seed 20261125 --count 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

from u2net_hub.data import make_synthetic_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, default=160, help="the scenes' side in pixels")
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 16:
        parser.error(f"--count must be at least 1 and --size at least 16, got {args.count} and {args.size}")
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(make_synthetic_dataset(args.count, size=args.size, seed=args.seed)):
        row["image"].save(args.out / "images" / f"{i:04d}.png")
        row["mask"].save(args.out / "masks" / f"{i:04d}.png")
    print(f"wrote {args.count} scenes of {args.size}x{args.size} (seed {args.seed}) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
