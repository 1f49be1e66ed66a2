"""Package a finished demo training run as the bundled checkpoint, with an honest model card.

Reads the run folder written by train/train.py (weights, train_log.jsonl) and the
JSON written by `u2net evaluate` on the held-out synthetic split, and saves the
model with save_pretrained into the package's checkpoint folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from u2net_hub import DEMO_MODEL, U2Net

HEADLINE = ("maxF", "meanF", "MAE", "wF", "Sm", "maxE", "relaxF_boundary")


def training_totals(log_path: Path) -> dict:
    """Steps and wall time summed over every (resumed) session of the run.

    A session killed to be resumed has no end record: it lasted until the next one started.
    """
    starts, last_wall, steps = [], 0.0, 0
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "start":
            starts.append(record["time"])
        elif record.get("event") == "end":
            last_wall = record.get("wall_seconds", 0.0)
        elif record.get("event") == "train":
            steps = max(steps, record["step"])
    seconds = sum(later - earlier for earlier, later in zip(starts, starts[1:])) + last_wall
    return {"steps": steps, "seconds": seconds, "sessions": len(starts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run_dir", type=Path, required=True)
    parser.add_argument("--metrics_json", type=Path, required=True)
    parser.add_argument("--heldout", required=True, help="a description of the held-out split")
    parser.add_argument("--command", required=True, help="the training command to record")
    parser.add_argument("--dest", type=Path, default=Path(DEMO_MODEL))
    args = parser.parse_args()

    model = U2Net.from_pretrained(args.run_dir)
    evaluation = json.loads(args.metrics_json.read_text())
    metrics = {name: evaluation[name] for name in HEADLINE if name in evaluation}
    totals = training_totals(args.run_dir / "train_log.jsonl")
    source_card = (args.run_dir / "README.md").read_text()
    recipe = next((line.split("**: ", 1)[1] for line in source_card.splitlines() if line.startswith("- **recipe**")), "")
    training = {
        "dataset": "the built-in synthetic saliency scenes only (u2net_hub.data.make_synthetic_dataset, seed 0); "
        "no real photographs",
        "recipe": recipe,
        "steps": f"{totals['steps']:,} (batch 8, {totals['steps'] * 8:,} images seen)",
        "hardware": "CPU only: 2 cores with AVX-512 bf16, bf16 autocast + channels_last",
        "wall_time": f"{totals['seconds'] / 60:.0f} min over {totals['sessions']} session(s), "
        "sharing the machine with other work",
        "command": args.command,
    }
    notes = (
        "**This is the demo checkpoint bundled with u2net-hub.** It is the tiny U²-Net "
        f"({model.num_parameters:,} parameters) trained from scratch on synthetic scenes only: textured "
        "backgrounds with clutter and one to three salient objects. It makes the package, the CLI and the "
        "Space work offline out of the box; it is not a substitute for the authors' weights on real photographs. "
        "For those, download `u2net.pth` / `u2netp.pth` from the original repository and run "
        "`u2net convert u2net.pth ./u2net-full`, or fine-tune on real data with "
        "`accelerate launch train/train.py --dataset_name nobg/DUTS`."
    )
    if args.dest.exists():
        shutil.rmtree(args.dest)
    model.save_pretrained(
        args.dest,
        model_card_kwargs={
            "repo_id": "u2net_hub/checkpoints/u2net-tiny-synthetic",
            "model_ref": "DEMO_MODEL",
            "training": training,
            "metrics": metrics,
            "metrics_dataset": args.heldout,
            "notes": notes,
        },
    )
    size = sum(p.stat().st_size for p in args.dest.iterdir())
    print(f"wrote {args.dest} ({size / 1e6:.2f} MB): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
