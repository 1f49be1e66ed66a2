"""The training pairs a model gets most wrong, as a folder of links: hard examples to repeat in a labelled mix.

A fine-tune that draws every scene equally spends most steps on scenes it already gets right; on the synthetic
scenes half the error sits in a tenth of them (docs/demo-model-journal.md, session 21). Score the model on its
own training folder, one row per image, then link the worst ones by mean absolute error:

    u2net evaluate --model runs/run/checkpoint-160/average --dataset runs/ft-synthetic-160 --no-fast \\
        --per-image --output runs/ft-synthetic-160-scores.json
    python train/select_hardest.py --scores runs/ft-synthetic-160-scores.json --data runs/ft-synthetic-160 \\
        --count 200 --out runs/ft-synthetic-160-hard
    python train/link_training_set.py --out runs/mix runs/ft-synthetic-160:1 runs/ft-synthetic-160-hard:3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from link_training_set import pairs  # noqa: E402


def worst_items(document: dict, count: int, metric: str = "MAE") -> list[tuple[str, float]]:
    """The ``count`` items with the highest ``metric`` in a ``u2net evaluate --per-image`` document, worst first."""
    rows = document.get("per_image") if isinstance(document, dict) else None
    if not rows or not isinstance(rows, list):
        raise ValueError("the scores hold no per-image rows: run `u2net evaluate` with --per-image")
    scored = [(str(row["item"]), float(row[metric])) for row in rows
              if isinstance(row, dict) and "item" in row and isinstance(row.get(metric), (int, float))]
    if not scored:
        raise ValueError(f"no per-image row has a {metric!r} score")
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, required=True, help="`u2net evaluate --per-image --output` JSON")
    parser.add_argument("--data", type=Path, required=True, help="the scored folder (images/ and masks/)")
    parser.add_argument("--count", type=int, default=200, help="how many of the worst pairs to keep (default 200)")
    parser.add_argument("--out", type=Path, required=True, help="the folder of links to (re)write")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        document = json.loads(args.scores.read_text())
        worst = worst_items(document, args.count)
    except (OSError, ValueError) as error:
        sys.exit(f"error: {args.scores}: {error}")
    paired = {image.stem: (image, mask) for image, mask in pairs(args.data, prefix="")}
    missing = [item for item, _ in worst if item not in paired]
    if missing:
        sys.exit(f"error: {len(missing)} scored items have no image and mask pair in {args.data} "
                 f"(first: {missing[0]!r}); were the scores made on another folder?")

    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "images").mkdir(parents=True)
    (args.out / "masks").mkdir()
    for item, _ in worst:
        for kind, path in zip(("images", "masks"), paired[item]):
            (args.out / kind / path.name).symlink_to(path.resolve())
    (args.out / "hardest.json").write_text(json.dumps([{"item": i, "MAE": s} for i, s in worst], indent=1))
    print(f"linked the {len(worst)} worst of {len(document['per_image'])} scored pairs (MAE {worst[-1][1]:.3f} to "
          f"{worst[0][1]:.3f}) into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
