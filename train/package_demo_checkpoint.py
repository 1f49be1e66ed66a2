"""Package a finished demo training run as the bundled checkpoint, with an honest model card.

Reads the run folder written by train/train.py (weights, train_log.jsonl), the
JSON written by `u2net evaluate` on the held-out synthetic split and, for a
model fine-tuned on real-photo composites (stages 2 to 4 of train/make_demo_checkpoint.sh),
the ones on the real-photo validation set and the held-out cut-out composites, and saves the model with
save_pretrained into the package's checkpoint folder. `--checkpoint` packages the weights of one
checkpoint-N folder of the run instead of its final ones (a run cut short by the end of a device lease);
`--weights_dir` those of a model folder made from the run (train/mix_weights.py), described by `--mix`.
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
    parser.add_argument("--real_metrics_json", type=Path, default=None,
                        help="`u2net evaluate` on the real-photo validation set (train/make_real_validation.py)")
    parser.add_argument("--stage1_dir", type=Path, default=None,
                        help="the synthetic-only run this one was fine-tuned from (its steps and time are added)")
    parser.add_argument("--stage1_summary", default="4,000 steps (batch 8) in 90 min over 2 sessions: the bundled "
                        "model of commit ce7e2be", help="what stage 1 was, when --stage1_dir has no train_log.jsonl")
    parser.add_argument("--hardware", default="CPU only: 2 cores of an AMD EPYC (AVX-512 bf16, no AMX)",
                        help="what the run trained on (lscpu, nvidia-smi)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a checkpoint-N folder whose weights to package (config from --run_dir)")
    parser.add_argument("--batch_size", type=int, default=8, help="the run's total batch size")
    parser.add_argument("--recipe", default=None, help="default: the recipe line of the run's model card")
    parser.add_argument("--stage2_data", default=None, help="what stage 2 trained on (needed with --real_metrics_json)")
    parser.add_argument("--cutout_metrics_json", type=Path, default=None,
                        help="`u2net evaluate` on the composites of the held-out cut-outs")
    parser.add_argument("--stage3_data", default=None,
                        help="what stage 3 trained on: the run is then stage 3, and stage 2 is --stage2_summary")
    parser.add_argument("--stage2_summary", default="2,750 steps (batch 32, 88,000 images seen), 5.9 min of training "
                        "on one NVIDIA H200: the bundled model of commit 8271ef6", help="what stage 2 was, when the run is stage 3")
    parser.add_argument("--stage4_data", default=None,
                        help="what stage 4 trained on: the run is then stage 4, and stage 3 is --stage3_summary")
    parser.add_argument("--stage4_runs", type=int, default=1,
                        help="how many stage-4 runs (one per seed) went into the shipped weights")
    parser.add_argument("--stage3_summary", default="2,000 steps (batch 32, 64,000 images seen), 4.1 min of training "
                        "on one NVIDIA H200, mixed with stage 2: the bundled model of commit 47bded2",
                        help="what stage 3 was, when the run is stage 4")
    parser.add_argument("--weights_dir", type=Path, default=None,
                        help="a model folder whose weights to package instead of the run's (train/mix_weights.py)")
    parser.add_argument("--mix", default=None, help="how --weights_dir was made from the run (needed with it)")
    args = parser.parse_args()
    if args.weights_dir is not None and not args.mix:
        parser.error("--mix: say how the weights of --weights_dir were made")
    if args.stage4_data and not args.stage3_data:
        parser.error("--stage4_data needs --stage3_data: say what stage 3 trained on too")
    if args.stage4_runs < 1:
        parser.error(f"--stage4_runs: at least 1, got {args.stage4_runs}")
    if args.weights_dir is not None and args.checkpoint is not None:
        parser.error("--checkpoint and --weights_dir both name the weights to package: give one")

    model = U2Net.from_pretrained(args.run_dir)
    totals = training_totals(args.run_dir / "train_log.jsonl")
    weights = args.checkpoint or args.weights_dir
    if weights is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(weights / "model.safetensors"))
        if (weights / "config.json").exists():  # test-time settings of the shipped weights (flip_average)
            model.preprocessing = U2Net.from_pretrained(weights).preprocessing
    if args.checkpoint is not None:
        state = json.loads((args.checkpoint / "trainer_state.json").read_text())
        totals.update(steps=state["global_step"], seconds=state["train_seconds"])
    evaluation = json.loads(args.metrics_json.read_text())
    metrics = {name: evaluation[name] for name in HEADLINE if name in evaluation}
    recipe = args.recipe
    if recipe is None and (args.run_dir / "README.md").exists():
        source_card = (args.run_dir / "README.md").read_text()
        recipe = next((line.split("**: ", 1)[1] for line in source_card.splitlines()
                       if line.startswith("- **recipe**")), "")
    elif recipe is None:  # a run folder brought back without its card (train/device_stage3.sh)
        recipe = json.loads((args.run_dir / "training_record.json").read_text())["training"]["recipe"]
    batch = args.batch_size
    real = json.loads(args.real_metrics_json.read_text()) if args.real_metrics_json else None
    stage1 = None
    if args.stage1_dir is not None and (args.stage1_dir / "train_log.jsonl").exists():
        stage1 = training_totals(args.stage1_dir / "train_log.jsonl")
    if real is None:
        dataset = ("the built-in synthetic saliency scenes only (u2net_hub.data.make_synthetic_dataset, seed 0); "
                   "no real photographs")
        steps = f"{totals['steps']:,} (batch {batch}, {totals['steps'] * batch:,} images seen)"
        wall = f"{totals['seconds'] / 60:.0f} min over {totals['sessions']} session(s)"
        notes = (
            "**This is the demo checkpoint bundled with u2net-hub.** It is the tiny U²-Net "
            f"({model.num_parameters:,} parameters) trained from scratch on synthetic scenes only: textured "
            "backgrounds with clutter and one to three salient objects. It makes the package, the CLI and the "
            "Space work offline out of the box; it is not a substitute for the authors' weights on real photographs. "
            "For those, download `u2net.pth` / `u2netp.pth` from the original repository and run "
            "`u2net convert u2net.pth ./u2net-full`, or fine-tune on real data with "
            "`accelerate launch train/train.py --dataset_name nobg/DUTS`."
        )
    else:
        if not args.stage2_data:
            parser.error("--stage2_data: say what stage 2 trained on (train/make_demo_checkpoint.sh passes it)")
        dataset = "stage 1: the built-in synthetic saliency scenes (seed 0); stage 2: " + args.stage2_data
        first = (f"{stage1['steps']:,} steps (batch 8) in {stage1['seconds'] / 60:.0f} min over "
                 f"{stage1['sessions']} session(s)") if stage1 else args.stage1_summary
        last = "stage 4" if args.stage4_data else "stage 3" if args.stage3_data else "stage 2"
        steps = f"stage 1: {first}; "
        if args.stage3_data:
            dataset += "; stage 3: " + args.stage3_data
            steps += f"stage 2: {args.stage2_summary}; "
        if args.stage4_data:
            dataset += "; stage 4: " + args.stage4_data
            steps += f"stage 3: {args.stage3_summary}; "
        runs = f" in each of {args.stage4_runs} runs" if args.stage4_data and args.stage4_runs > 1 else ""
        steps += f"{last}: {totals['steps']:,} steps (batch {batch}, {totals['steps'] * batch:,} images seen){runs}"
        wall = f"{last}: {totals['seconds'] / 60:.1f} min of training over {totals['sessions']} session(s)"
        if runs:
            wall += " (the first run; the others took about as long)"
        if stage1:
            wall += f", {(stage1['seconds'] + totals['seconds']) / 60:.0f} min with stage 1"
        if args.stage3_data and not recipe.startswith("stage"):
            recipe = f"{last}: " + recipe
        if args.mix:
            recipe += f"; shipped weights: {args.mix}"
        rows = "\n".join(f"| {name} | {real[name]:.4f} |" for name in HEADLINE if name in real)
        notes = (
            "**This is the demo checkpoint bundled with u2net-hub.** It is the tiny U²-Net "
            f"({model.num_parameters:,} parameters) trained on synthetic scenes, then fine-tuned on real object "
            "cut-outs and drawn people composited on real photographs"
            + (" in three rounds (the second adds close-ups and sharp distractors at the frame's edges, the third "
               "busy scenes: a sharp backdrop with unmasked objects behind a large subject)" if args.stage4_data
               else " in two rounds (the second adds close-ups and busy scenes)" if args.stage3_data else "")
            + "; it has never seen a labelled real photograph. It makes the "
            "package, the CLI and the Space work offline out of the box; it is not a substitute for the authors' "
            "weights on real photographs. For those, download `u2net.pth` / `u2netp.pth` from the original "
            "repository and run `u2net convert u2net.pth ./u2net-full`, or fine-tune on real data with "
            "`accelerate launch train/train.py --dataset_name nobg/DUTS`.\n\n"
            f"On real photographs ({real.get('count', '?')} photos made by train/make_real_validation.py: "
            "scikit-image's astronaut, coffee, rocket, motorcycle, cameraman and cat, matplotlib's portrait of "
            "Grace Hopper, Debian wallpaper photos of flowers, a leaf, a kite, a ladybird, a bowl, a bird and "
            "two dogs, and the chameleon and castle of KDE's jigsaw puzzles, with hand-seeded random-walker masks; none of them in the training data), measured with "
            "`u2net evaluate --no-fast`:\n\n| metric | value |\n|---|---|\n" + rows
        )
        if args.cutout_metrics_json:
            cutout = json.loads(args.cutout_metrics_json.read_text())
            notes += ("\n\nOn 300 composites of the 36 cut-outs held out from training (another seed): "
                      + ", ".join(f"{name} {cutout[name]:.4f}" for name in ("maxF", "MAE", "Sm") if name in cutout)
                      + ".")
    training = {
        "dataset": dataset,
        "recipe": recipe,
        "steps": steps,
        "hardware": f"{args.hardware}, bf16 autocast + channels_last",
        "wall_time": wall,
        "command": args.command,
    }
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
