"""Training on imperfect data and exact resuming: real `train/train.py` processes on tiny 64 px runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from u2net_hub import training as T

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "train" / "train.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")
LAUNCH = [str(ACCELERATE), "launch", "--num_machines", "1", "--num_processes", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no"]
SMALL = ["--resolution", "64", "--crop_size", "56", "--dataloader_num_workers", "0", "--eval_batch_size", "4",
         "--validation_steps", "1000"]


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def _train(args: list[str], *, launcher: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """train.py under `accelerate launch`, or as a plain `python train/train.py` (what a user may type)."""
    cmd = (LAUNCH if launcher else [sys.executable]) + [str(SCRIPT)] + SMALL + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=REPO_ROOT)


def _ok(result) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


# ------------------------------------------------------------------------------- exact resume


def test_resume_is_bit_exact_with_default_crop_and_flip_and_the_log_has_one_curve(tmp_path):
    """12 steps straight == 8 steps, lose the last checkpoint (a kill -9 after step 8 was logged), resume from
    step 6 and run to 12: the same weights bit for bit, and train_log.jsonl holds each step once."""
    common = ["--synthetic_num_images", "16", "--train_batch_size", "2", "--seed", "5",
              "--validation_split", "none"]  # 8 steps per epoch: the runs cross an epoch boundary
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _ok(_train(common + ["--output_dir", str(straight), "--max_train_steps", "12", "--checkpointing_steps", "1000",
                         "--dataloader_num_workers", "2"]))
    _ok(_train(common + ["--output_dir", str(resumed), "--max_train_steps", "8", "--checkpointing_steps", "3"]))
    assert [T.checkpoint_step(p) for p in T.list_checkpoints(resumed)] == [3, 6, 8]
    shutil.rmtree(resumed / "checkpoint-8")  # as if killed after step 8 was logged, before it was saved
    output = _ok(_train(common + ["--output_dir", str(resumed), "--max_train_steps", "12",
                                  "--resume_from_checkpoint", "latest", "--dataloader_num_workers", "2"]))
    assert "at step 6 (epoch 0, skipping 6 batches)" in output

    from safetensors.torch import load_file

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not np.array_equal(a[k].numpy(), b[k].numpy())]
    assert not different, f"{len(different)} of {len(a)} tensors differ after resuming, e.g. {different[:3]}"

    # One curve: every step once, in order, with the same losses as the straight run.
    steps = [r for r in T.read_jsonl(resumed / T.TRAIN_LOG_NAME) if r.get("event") == "train"]
    assert [r["step"] for r in steps] == list(range(1, 13))
    straight_losses = [r["loss"] for r in T.read_jsonl(straight / T.TRAIN_LOG_NAME) if r.get("event") == "train"]
    assert [r["loss"] for r in steps] == straight_losses
    # The dropped lines are kept aside, not lost.
    superseded = T.read_jsonl(resumed / T.SUPERSEDED_LOG_NAME)
    assert [r["step"] for r in superseded if r.get("event") == "train"] == [7, 8]
