#!/usr/bin/env python
"""The paper's block study: the same U²-Net with RSU or another block in every stage, trained and scored alike.

    accelerate launch train/ablation.py --variant tiny --blocks rsu,plain,residual,dense,inception,ppm \\
        --max_train_steps 2000 --resolution 160 --output_dir ablation

Every block's network is trained by train/train.py's own ``main`` with the
same flags (data, recipe, budget, seed: everything but the model), each in
``OUTPUT_DIR/<block>/``, then scored on the same held-out set, in float32,
at the training resolution. Any train.py flag (``--dataset_name``,
``--learning_rate``, ``--mixed_precision``, ...) passes through unchanged.
The results go to ``OUTPUT_DIR``:

* ``ablation.json``: one row per block (block, params, gflops at 320x320,
  ms_per_image at 320x320 on this machine, maxF, MAE, Sm, relaxF, ...);
* ``ablation.md``: the table in the shape of the paper's, with the paper's
  own figures where they can be cited;
* ``ablation.png``: maxF against GFLOPs, one labelled point per block.

Resuming: a block whose row is in ``OUTPUT_DIR/<block>/ablation_row.json`` is
not trained again; a block interrupted mid-training resumes from its latest
checkpoint (train.py's ``--resume_from_checkpoint latest``). The study's
settings are recorded in ``OUTPUT_DIR/study.json``; rerunning with other
settings into the same folder is refused.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train as train_script  # noqa: E402  (train/train.py: its parse_args, build_datasets and main)

from u2net_hub.configs import BLOCK_NAMES  # noqa: E402

STUDY_FILE = "study.json"
ROW_FILE = "ablation_row.json"
#: The size GFLOPs and latency are reported at: the paper's input size.
PROFILE_SIZE = 320

#: train.py flags the study sets itself (per block) or that make no sense for it.
RESERVED_TRAIN_FLAGS = ("--config", "--init_from", "--output_dir", "--resume_from_checkpoint", "--push_to_hub",
                        "--hub_model_id", "--hub_private_repo", "--hub_token", "--variant")

#: What the paper reports for the networks this study builds, from its published results table (the
#: RSU networks: U²-Net and the small U²-Net†; maxF / MAE on DUT-OMRON and ECSSD, frames per second on a
#: GTX 1080Ti at 320x320). The paper's ablation table also lists the other blocks; those figures are not
#: copied here (see docs/ablation.md).
PAPER_RSU = {
    "full": {"name": "U²-Net", "DUT-OMRON": (0.823, 0.054), "ECSSD": (0.951, 0.033), "fps": 30},
    "tiny": {"name": "U²-Net†", "DUT-OMRON": (0.813, 0.060), "ECSSD": (0.943, 0.041), "fps": 40},
}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """(the study's own options, the flags passed through to train.py unchanged)."""
    parser = argparse.ArgumentParser(
        description="Train and score U²-Net with each block of the paper's comparison under one recipe. "
                    "Every other flag is train/train.py's and passes through unchanged (see train.py --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--variant", choices=["full", "tiny"], default="tiny", help="the stage table's sizes")
    parser.add_argument("--blocks", default=",".join(BLOCK_NAMES),
                        help=f"comma-separated blocks to compare, from {', '.join(BLOCK_NAMES)}")
    parser.add_argument("--output_dir", default="u2net-ablation",
                        help="the study's folder: one sub-folder per block and the three result files")
    parser.add_argument("--num_validation_images", type=int, default=None,
                        help="size of the held-out set every network is scored on (synthetic data: "
                             "--synthetic_validation_num_images, default 64; a dataset: --max_eval_samples)")
    parser.add_argument("--timing_repeats", type=int, default=10,
                        help=f"timed batch-1 forward passes at {PROFILE_SIZE}x{PROFILE_SIZE} per block (0: no timing)")
    # Declared here for --help; they pass through to train.py like every other flag.
    parser.add_argument("--max_train_steps", type=int, default=None, help="training budget of every block")
    parser.add_argument("--resolution", type=int, default=None, help="training and scoring resolution (train.py: 320)")
    parser.add_argument("--train_batch_size", type=int, default=None, help="per process (train.py: 12)")
    parser.add_argument("--seed", type=int, default=None, help="one seed for every block (train.py: 0)")
    args, rest = parser.parse_known_args(argv)

    blocks = [b.strip() for b in args.blocks.split(",") if b.strip()]
    unknown = [b for b in blocks if b not in BLOCK_NAMES]
    if not blocks or unknown:
        parser.error(f"--blocks: unknown {unknown}; choose from {', '.join(BLOCK_NAMES)}")
    if len(set(blocks)) != len(blocks):
        parser.error("--blocks names a block twice")
    args.blocks = blocks
    for flag in rest:
        name = flag.split("=", 1)[0]
        if name in RESERVED_TRAIN_FLAGS:
            parser.error(f"{name} is set by the study for each block; it cannot be passed through")
    if args.num_validation_images is not None and args.num_validation_images < 1:
        parser.error("--num_validation_images must be >= 1")
    if args.timing_repeats < 0:
        parser.error("--timing_repeats must be >= 0")

    passthrough = list(rest)
    for name in ("max_train_steps", "resolution", "train_batch_size", "seed"):
        value = getattr(args, name)
        if value is not None:
            passthrough += [f"--{name}", str(value)]
    if args.num_validation_images is not None:
        uses_dataset = any(f.split("=", 1)[0] in ("--dataset_name", "--train_data_dir", "--eval_dataset_name")
                           for f in rest)
        flag = "--max_eval_samples" if uses_dataset else "--synthetic_validation_num_images"
        passthrough += [flag, str(args.num_validation_images)]
    return args, passthrough


def train_argv(passthrough: list[str], config_path: Path, block_dir: Path) -> list[str]:
    return [*passthrough, "--config", str(config_path), "--output_dir", str(block_dir),
            "--resume_from_checkpoint", "latest"]


# ------------------------------------------------------------------ the study


def check_study(output_dir: Path, settings: dict) -> None:
    """Record the study's settings, or refuse when the folder holds a study run with other ones."""
    path = output_dir / STUDY_FILE
    if path.is_file():
        recorded = json.loads(path.read_text())
        if {k: recorded.get(k) for k in settings} != settings:
            raise SystemExit(
                f"error: {output_dir} holds a study run with other settings ({path}: {recorded}); the blocks "
                "would not be comparable. Use another --output_dir, or rerun with the same flags to resume."
            )
    else:
        output_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2) + "\n")


def held_out_loader(train_args, accelerator, logger):
    """The validation set train.py builds from these flags, as a prepared (sharded) DataLoader."""
    import torch

    from u2net_hub.data import SaliencyTransform, collate_fn

    _, validation, info = train_script.build_datasets(train_args, logger)
    if validation is None or len(validation) == 0:
        raise SystemExit("error: the study scores every network on a held-out set, but these flags give none; "
                         "drop --validation_split none, or give a split, a fraction or a count")
    transform = SaliencyTransform(resolution=train_args.resolution, crop_size=None, train=False)
    loader = torch.utils.data.DataLoader(validation.with_transform(transform), batch_size=train_args.eval_batch_size,
                                         shuffle=False, collate_fn=collate_fn, num_workers=0)
    return accelerator.prepare(loader), info.get("validation", f"{len(validation)} held-out images")


def score_block(block: str, block_dir: Path, train_args, accelerator, logger, timing_repeats: int) -> dict:
    """Evaluate the trained network in `block_dir` (float32) and profile it at 320x320."""
    import torch

    from u2net_hub import U2Net
    from u2net_hub.layers import PAPER_NAMES
    from u2net_hub.metrics import SODMetrics
    from u2net_hub.profile import profile_model
    from u2net_hub.training import evaluate

    model = U2Net.from_pretrained(str(block_dir)).to(accelerator.device).eval()
    if model.preprocessing.input_size != train_args.resolution:
        raise SystemExit(f"error: {block_dir} holds a model trained at {model.preprocessing.input_size} px, "
                         f"not --resolution {train_args.resolution}")
    loader, held_out = held_out_loader(train_args, accelerator, logger)
    metrics = evaluate(accelerator, model, loader, SODMetrics, channels_last=False, progress=True)
    row = {"block": block, "paper_name": PAPER_NAMES[block]}
    if accelerator.is_main_process:
        profile = profile_model(model, PROFILE_SIZE, device=accelerator.device, repeats=max(timing_repeats, 1),
                                timing=timing_repeats > 0)
        state = _trainer_state(block_dir)
        row.update(
            params=profile["total"]["params"],
            gflops=profile["total"]["gflops"],
            activations_mb=profile["total"]["activations_mb"],
            ms_per_image=profile["total"]["ms_per_image"],
            maxF=metrics["maxF"], MAE=metrics["MAE"], Sm=metrics["Sm"], relaxF=metrics["relaxF_boundary"],
            wF=metrics["wF"], meanF=metrics["meanF"], num_validation_images=metrics["num_images"],
            held_out_set=held_out, resolution=train_args.resolution,
            train_steps=state.get("global_step"), train_seconds=state.get("train_seconds"),
            device=str(accelerator.device), world_size=accelerator.num_processes,
        )
    del model
    return row


def _trainer_state(block_dir: Path) -> dict:
    from u2net_hub.training import checkpoint_step, latest_checkpoint, read_trainer_state

    checkpoint = latest_checkpoint(block_dir)
    if checkpoint is None:
        return {}
    state = dict(read_trainer_state(checkpoint))
    state.setdefault("global_step", checkpoint_step(checkpoint))
    return state


def _fresh_accelerate_state() -> None:
    """Forget Accelerate's process-wide state so the next Accelerator takes its own flags (mixed precision).

    Accelerate keeps one state per process and refuses a second Accelerator with other settings; it has no
    public reset, so this uses the one its own test suite uses. The process group itself is kept (train.py's
    ``keep_process_group``), and a fresh state finds it initialised and joins it.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _state():
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def run_block(block: str, args, passthrough: list[str], output_dir: Path, logger) -> dict:
    """Train (or resume) one block's network with train.py's main and score it; the row is saved for resuming."""
    import torch
    from accelerate import Accelerator

    from u2net_hub import U2Net

    state = _state()
    block_dir = output_dir / block
    row_path = block_dir / ROW_FILE
    if row_path.is_file():
        state.print(f"[{block}] already trained and scored ({row_path}): skipped")
        return json.loads(row_path.read_text())
    config_path = block_dir / "model_config.json"
    if state.is_main_process:
        block_dir.mkdir(parents=True, exist_ok=True)
        with torch.device("meta"):
            config = U2Net(variant=args.variant, block=block).config
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    state.wait_for_everyone()
    argv = train_argv(passthrough, config_path, block_dir)
    state.print(f"[{block}] training: train.py {' '.join(argv)}")
    started = time.time()
    _fresh_accelerate_state()  # train.py's Accelerator sets the mixed precision of its own flags
    code = train_script.main(argv, keep_process_group=True)  # the group serves the scoring and the next block
    _fresh_accelerate_state()
    if code not in (0, None):
        raise SystemExit(f"error: training the {block!r} network ended with exit code {code}")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    accelerator = Accelerator()
    row = score_block(block, block_dir, train_script.parse_args(argv), accelerator, logger, args.timing_repeats)
    row["wall_seconds_this_run"] = time.time() - started
    if accelerator.is_main_process:
        row_path.write_text(json.dumps(row, indent=2) + "\n")
        accelerator.print(f"[{block}] maxF {row['maxF']:.4f}  MAE {row['MAE']:.4f}  Sm {row['Sm']:.4f}  "
                          f"relaxF {row['relaxF']:.4f}  {row['gflops']:.1f} GFLOPs  {row['params']:,} params")
    accelerator.wait_for_everyone()
    return row


# -------------------------------------------------------------------- reports


def _fmt(value, digits=3):
    return "—" if value is None else f"{value:.{digits}f}"


def write_markdown(rows: list[dict], path: Path, args, command: str, hardware: str) -> None:
    """The table in the paper's shape: one row per block, our held-out scores beside the paper's figures."""
    paper = PAPER_RSU[args.variant]
    first = rows[0]
    lines = [
        f"# Block study: U²-Net ({args.variant}) with each block in every stage",
        "",
        f"Every network: the {args.variant} stage table with one block in all eleven stages, trained with the same "
        f"data, recipe, budget and seed ({first.get('train_steps')} steps at {first['resolution']}x"
        f"{first['resolution']}), scored in float32 on the same held-out set ({first['held_out_set']}, at "
        f"{first['resolution']}x{first['resolution']}). GFLOPs (multiply-add = 2) and parameters of the whole "
        f"network at {PROFILE_SIZE}x{PROFILE_SIZE}; ms per image: median batch-1 float32 forward pass at "
        f"{PROFILE_SIZE}x{PROFILE_SIZE} on {hardware}.",
        "",
        f"| configuration | params | GFLOPs @{PROFILE_SIZE} | ms / image | maxF | MAE | Sm | relaxF | "
        f"paper: DUT-OMRON maxF / MAE | paper: ECSSD maxF / MAE | paper: ms / image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cited = row["block"] == "rsu"
        omron = f"{paper['DUT-OMRON'][0]:.3f} / {paper['DUT-OMRON'][1]:.3f}" if cited else "—"
        ecssd = f"{paper['ECSSD'][0]:.3f} / {paper['ECSSD'][1]:.3f}" if cited else "—"
        ms_paper = f"{1000 / paper['fps']:.0f} ({paper['fps']} FPS, GTX 1080Ti)" if cited else "—"
        lines.append(
            f"| {row['paper_name']} U²-Net ({row['block']}) | {row['params']:,} | {row['gflops']:.1f} | "
            f"{_fmt(row['ms_per_image'], 0)} | {row['maxF']:.3f} | {row['MAE']:.3f} | {row['Sm']:.3f} | "
            f"{row['relaxF']:.3f} | {omron} | {ecssd} | {ms_paper} |"
        )
    lines += [
        "",
        f"The paper's columns: the published results of {paper['name']} (RSU in every stage, trained on "
        "DUTS-TR for about 600k iterations), from the paper's results table. The paper's ablation table also "
        "reports networks with PLN, RES, DSE, INC and PPM blocks, trained on DUTS-TR and tested on DUT-OMRON and "
        "ECSSD; those rows are not copied here.",
        "",
        f"Command: `{command}`",
        "",
    ]
    path.write_text("\n".join(lines))


def plot(rows: list[dict], path: Path, title: str) -> None:
    """maxF against GFLOPs at 320x320, one labelled point per block (RSU in red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for row in rows:
        colour = "#d62728" if row["block"] == "rsu" else "#1f77b4"
        axis.scatter(row["gflops"], row["maxF"], s=40 + row["params"] / 2e4, color=colour, alpha=0.85, zorder=3)
        axis.annotate(f"{row['paper_name']} ({row['params'] / 1e6:.2f} M)", (row["gflops"], row["maxF"]),
                      xytext=(6, 4), textcoords="offset points", fontsize=8)
    axis.set_xlabel(f"GFLOPs per {PROFILE_SIZE}x{PROFILE_SIZE} image (multiply-add = 2)")
    axis.set_ylabel("maxF on the held-out set")
    axis.grid(alpha=0.3, zorder=0)
    axis.set_title(title, fontsize=9)
    axis.spines[["top", "right"]].set_visible(False)
    low, high = min(r["maxF"] for r in rows), max(r["maxF"] for r in rows)
    pad = max(0.01, (high - low) * 0.15)
    axis.set_ylim(low - pad, min(1.0, high + pad) + pad / 2)
    axis.set_xlim(0, max(r["gflops"] for r in rows) * 1.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args, passthrough = parse_args(argv)
    output_dir = Path(args.output_dir)
    # The flags train.py will see: checked now, before any training (argparse exits 2 on a bad one).
    probe = train_script.parse_args(train_argv(passthrough, output_dir / "model_config.json", output_dir))

    from accelerate.logging import get_logger

    from u2net_hub.training import redacted_command

    # No Accelerator yet: train.py's main creates each one with its own mixed precision.
    accelerator = _state()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    logger = get_logger("u2net.ablation")
    settings = {"variant": args.variant, "train_flags": passthrough}
    if accelerator.is_main_process:
        check_study(output_dir, settings)
    accelerator.wait_for_everyone()
    accelerator.print(f"block study: {args.variant} with {', '.join(args.blocks)} | {probe.max_train_steps or 'default'} "
                      f"steps at {probe.resolution} px | world size {accelerator.num_processes} | {output_dir}")

    rows = [run_block(block, args, passthrough, output_dir, logger) for block in args.blocks]
    accelerator = _state()
    if accelerator.is_main_process:
        command = redacted_command(
            ["train/ablation.py", *(argv if argv is not None else sys.argv[1:])],
            launcher="accelerate launch" + (f" --num_processes {accelerator.num_processes}"
                                            if accelerator.num_processes > 1 else ""),
        )
        hardware = train_script.hardware_description(accelerator)
        (output_dir / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
        write_markdown(rows, output_dir / "ablation.md", args, command, hardware)
        plot(rows, output_dir / "ablation.png",
             f"U²-Net ({args.variant}) per block: {rows[0].get('train_steps')} steps at {probe.resolution} px, "
             f"{rows[0]['num_validation_images']} held-out images")
        accelerator.print(f"wrote {output_dir / 'ablation.json'}, ablation.md and ablation.png")
    accelerator.wait_for_everyone()
    accelerator.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
