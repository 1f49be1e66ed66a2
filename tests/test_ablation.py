"""train/ablation.py end to end: real `accelerate launch` runs of a two-block study at 64 px, and resuming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from u2net_hub import U2Net

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "train" / "ablation.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")
LAUNCH = [str(ACCELERATE), "launch", "--num_machines", "1", "--num_processes", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no"]
#: Two blocks, three steps of two 56 px crops, four held-out images, one timed pass at 320.
STUDY = ["--variant", "tiny", "--blocks", "rsu,plain", "--max_train_steps", "3", "--resolution", "64",
         "--crop_size", "56", "--train_batch_size", "2", "--num_validation_images", "4",
         "--synthetic_num_images", "8", "--dataloader_num_workers", "0", "--eval_batch_size", "4",
         "--timing_repeats", "1"]


def _run(args, timeout=900):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("ACCELERATE_USE_CPU", None)
    result = subprocess.run(LAUNCH + [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                            env=env, cwd=REPO_ROOT)
    return result, result.stdout + result.stderr


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    output = tmp_path_factory.mktemp("ablation")
    result, log = _run([*STUDY, "--output_dir", str(output)])
    assert result.returncode == 0, log[-3000:]
    return output, log


@pytest.mark.slow
def test_a_two_block_study_writes_the_three_files(study):
    output, log = study
    assert "world size 1" in log
    rows = json.loads((output / "ablation.json").read_text())
    assert [r["block"] for r in rows] == ["rsu", "plain"]
    for row in rows:
        for key in ("params", "gflops", "ms_per_image", "maxF", "MAE", "Sm", "relaxF"):
            assert isinstance(row[key], (int, float)), key
        assert 0 <= row["maxF"] <= 1 and 0 <= row["MAE"] <= 1 and 0 <= row["relaxF"] <= 1
        assert row["params"] == U2Net(variant="tiny", block=row["block"]).num_parameters
        assert row["train_steps"] == 3 and row["num_validation_images"] == 4 and row["world_size"] == 1
        assert row["ms_per_image"] > 0
        # the network that was trained is the block's, and it was saved
        assert U2Net.from_pretrained(output / row["block"]).block == row["block"]
    assert round(rows[0]["gflops"], 1) == 39.5  # tiny RSU U²-Net at 320x320 (REFERENCE)
    table = (output / "ablation.md").read_text()
    assert "| RSU U²-Net (rsu) | 1,131,181 |" in table and "| PLN U²-Net (plain) |" in table
    assert "0.943 / 0.041" in table  # the paper's ECSSD maxF / MAE of U²-Net† beside the RSU row
    assert "train/ablation.py --variant tiny --blocks rsu,plain" in table
    with Image.open(output / "ablation.png") as image:
        assert image.format == "PNG" and image.width > 300


@pytest.mark.slow
def test_rerunning_skips_finished_blocks_and_refuses_other_settings(study):
    output, _ = study
    weights = {b: (output / b / "model.safetensors").stat().st_mtime_ns for b in ("rsu", "plain")}
    rows = (output / "ablation.json").read_text()
    result, log = _run([*STUDY, "--output_dir", str(output)])
    assert result.returncode == 0, log[-3000:]
    assert log.count("already trained and scored") == 2 and "training:" not in log
    assert {b: (output / b / "model.safetensors").stat().st_mtime_ns for b in weights} == weights
    assert (output / "ablation.json").read_text() == rows

    other = [*STUDY, "--output_dir", str(output)]
    other[other.index("--max_train_steps") + 1] = "4"
    result, log = _run(other)
    assert result.returncode != 0 and "other settings" in log


@pytest.mark.slow
def test_a_half_trained_block_resumes_from_its_checkpoint(tmp_path):
    """Interrupted mid-training (a checkpoint at step 2, no model, no row): the rerun resumes at step 2."""
    import shutil

    args = [*STUDY, "--blocks", "plain", "--output_dir", str(tmp_path), "--checkpointing_steps", "2"]
    result, log = _run(args)
    assert result.returncode == 0, log[-3000:]
    block = tmp_path / "plain"
    for name in ("ablation_row.json", "model.safetensors", "config.json"):
        (block / name).unlink()
    shutil.rmtree(block / "checkpoint-3")
    assert (block / "checkpoint-2").is_dir()
    result, log = _run(args)
    assert result.returncode == 0, log[-3000:]
    assert "resumed from" in log and "checkpoint-2" in log
    row = json.loads((tmp_path / "ablation.json").read_text())[0]
    assert row["block"] == "plain" and row["train_steps"] == 3


def test_bad_flags_are_usage_errors():
    for args, message in ((["--blocks", "rsu,unet"], "unknown ['unet']"),
                          (["--config", "x.json"], "--config is set by the study"),
                          (["--no_such_train_flag", "1"], "unrecognized arguments")):
        result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                                cwd=REPO_ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr[-500:])
