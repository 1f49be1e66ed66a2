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

from u2net_hub.training import SUPERSEDED_LOG_NAME, TRAIN_LOG_NAME, checkpoint_step, list_checkpoints, read_jsonl

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
    assert [checkpoint_step(p) for p in list_checkpoints(resumed)] == [3, 6, 8]
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
    steps = [r for r in read_jsonl(resumed / TRAIN_LOG_NAME) if r.get("event") == "train"]
    assert [r["step"] for r in steps] == list(range(1, 13))
    straight_losses = [r["loss"] for r in read_jsonl(straight / TRAIN_LOG_NAME) if r.get("event") == "train"]
    assert [r["loss"] for r in steps] == straight_losses
    # The dropped lines are kept aside, not lost.
    superseded = read_jsonl(resumed / SUPERSEDED_LOG_NAME)
    assert [r["step"] for r in superseded if r.get("event") == "train"] == [7, 8]
    # The resume above read no pickle of RNG states: the checkpoints hold JSON ones instead.
    for checkpoint in list_checkpoints(resumed):
        assert not list(checkpoint.glob("*.pkl")), sorted(p.name for p in checkpoint.iterdir())
        assert (checkpoint / "rng_state_0.json").is_file()


# A real Accelerator in a fresh interpreter (its state is process-wide): save, draw, load, draw again;
# then an optimizer.bin whose pickle would open a file if it were unpickled without restriction.
_RNG_AND_PAYLOAD = r"""
import json, random, sys
from pathlib import Path
import numpy as np, torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from u2net_hub.training import CheckpointError, build_lr_scheduler, load_checkpoint, save_checkpoint

out, marker = Path(sys.argv[1]), Path(sys.argv[2])
accelerator = Accelerator(cpu=True)
set_seed(3)
model = torch.nn.Linear(4, 2)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = build_lr_scheduler(optimizer, "constant", warmup_steps=0, total_steps=10)
model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
model(torch.randn(3, 4)).sum().backward()
optimizer.step()
random.gauss(0, 1)  # leaves a cached second value, part of the state
path = save_checkpoint(accelerator, out, 1, {})
files = sorted(p.name for p in path.iterdir())
draw = lambda: [random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.randn()),
                torch.rand(3).tolist(), torch.randint(0, 1000, (2,)).tolist()]
first = draw()
load_checkpoint(accelerator, path)
again = draw()

class Payload:
    def __reduce__(self):
        return (open, (str(marker), "w"))

torch.save({"state": {}, "param_groups": [], "payload": Payload()}, path / "optimizer.bin")
try:
    load_checkpoint(accelerator, path)
    refused = None
except CheckpointError as error:
    refused = str(error)
print("RESULT " + json.dumps({"files": files, "first": first, "again": again, "refused": refused}))
"""


def test_resume_restores_every_rng_from_json_and_runs_no_code_from_a_checkpoint(tmp_path):
    marker = tmp_path / "code-ran"
    result = subprocess.run([sys.executable, "-c", _RNG_AND_PAYLOAD, str(tmp_path / "run"), str(marker)],
                            capture_output=True, text=True, timeout=180, env=_env(), cwd=REPO_ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (result.stdout + result.stderr)[-4000:]
    report = json.loads(lines[-1][len("RESULT "):])
    assert "rng_state_0.json" in report["files"] and not [f for f in report["files"] if f.endswith(".pkl")]
    assert report["again"] == report["first"]  # Python (with its cached gauss), NumPy and torch, exactly
    assert report["refused"] and "cannot resume" in report["refused"]
    assert not marker.exists(), "loading the checkpoint ran code from its pickle"


# ------------------------------------------------------------------------------- imperfect data


def _scene(rng, size: int = 48) -> tuple[Image.Image, Image.Image]:
    image = Image.fromarray(rng.integers(0, 120, (size, size, 3), dtype=np.uint8), "RGB")
    mask = Image.new("L", (size, size), 0)
    r = int(rng.integers(size // 6, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    ImageDraw.Draw(image).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(230, 200, 90))
    ImageDraw.Draw(mask).ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    return image, mask


def _pairs(images: Path, masks: Path, count: int, seed: int = 0) -> None:
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, mask = _scene(rng)
        image.save(images / f"good_{i}.jpg", quality=90)
        mask.save(masks / f"good_{i}.png")


def _truncated_jpeg(images: Path, masks: Path, stem: str = "truncated") -> None:
    image, mask = _scene(np.random.default_rng(7))
    image.save(images / f"{stem}.jpg", quality=95)
    data = (images / f"{stem}.jpg").read_bytes()
    (images / f"{stem}.jpg").write_bytes(data[: len(data) // 2])  # the header survives, the scan does not
    mask.save(masks / f"{stem}.png")


@pytest.fixture()
def imperfect_folder(tmp_path) -> Path:
    """6 good pairs, a truncated JPEG, a text file named .jpg and a mask of the wrong size."""
    root = tmp_path / "data"
    _pairs(root / "images", root / "masks", 6)
    _truncated_jpeg(root / "images", root / "masks")
    (root / "images" / "notes.jpg").write_text("this is not a photo\n")
    Image.new("L", (48, 48), 255).save(root / "masks" / "notes.png")
    image, mask = _scene(np.random.default_rng(9))
    image.save(root / "images" / "small_mask.jpg")
    mask.resize((32, 32)).save(root / "masks" / "small_mask.png")
    return root


def test_bad_files_are_all_named_before_training_and_nothing_starts(imperfect_folder, tmp_path):
    out = tmp_path / "out"
    result = _train(["--train_data_dir", str(imperfect_folder), "--output_dir", str(out), "--max_train_steps", "2",
                     "--train_batch_size", "2", "--validation_split", "none"], launcher=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    assert "error: 2 of 9 training samples cannot be used" in output
    assert "truncated.jpg: cannot decode (image file is truncated" in output
    assert "notes.jpg: not an image file" in output
    # The size mismatch is named in the same go, as a warning (an error with --strict).
    assert "warning: 1 training mask(s) have another size than their image" in output
    assert "small_mask.png: 32x32 mask for the 48x48 image" in output
    assert "--skip_bad_samples" in output
    assert not list_checkpoints(out) and not (out / "model.safetensors").exists()


def test_skip_bad_samples_with_strict_trains_on_the_rest_and_says_which(imperfect_folder, tmp_path):
    out = tmp_path / "out"
    output = _ok(_train(["--train_data_dir", str(imperfect_folder), "--output_dir", str(out), "--max_train_steps",
                         "3", "--train_batch_size", "2", "--validation_split", "none", "--skip_bad_samples",
                         "--strict", "--cache_resized"]))  # the check comes before anything decodes every file
    assert "leaving out 3 of 9 training samples" in output
    for name in ("truncated.jpg", "notes.jpg", "small_mask.png"):
        assert name in output
    assert "6 training images" in output
    (check,) = [r for r in read_jsonl(out / TRAIN_LOG_NAME) if r.get("event") == "data_check"]
    assert len(check["skipped"]["training"]) == 3
    assert [r["step"] for r in read_jsonl(out / TRAIN_LOG_NAME) if r.get("event") == "train"] == [1, 2, 3]
    assert "3 unusable sample(s) left out" in (out / "README.md").read_text()


def test_a_file_that_fails_while_training_saves_a_checkpoint_first(tmp_path):
    """Headers-only check: a truncated JPEG in the validation split gets through and fails at the first
    validation; the steps trained so far are saved, and the run continues from them."""
    root = tmp_path / "data"
    _pairs(root / "train-images", root / "train-masks", 6)
    _pairs(root / "test-images", root / "test-masks", 2, seed=1)
    _truncated_jpeg(root / "test-images", root / "test-masks", "broken_photo")
    out = tmp_path / "out"
    common = ["--train_data_dir", str(root), "--output_dir", str(out), "--train_batch_size", "2",
              "--validation_split", "test", "--validation_steps", "2", "--data_check", "headers"]
    result = _train(common + ["--max_train_steps", "4"], launcher=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    assert "a sample could not be read at step 2" in output and "broken_photo.jpg" in output
    assert "Saved checkpoint-2 first" in output
    assert [checkpoint_step(p) for p in list_checkpoints(out)] == [2]
    output = _ok(_train(common + ["--max_train_steps", "4", "--resume_from_checkpoint", "latest",
                                  "--skip_bad_samples"]))
    assert "at step 2" in output and "skipped" in output and "broken_photo.jpg" in output
    validations = [r for r in read_jsonl(out / TRAIN_LOG_NAME) if r.get("event") == "validation"]
    assert validations and validations[-1]["num_images"] == 2 and validations[-1]["step"] == 4
