"""train/train.py end to end (real `accelerate launch` subprocesses) and the helpers in u2net_hub.training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from u2net_hub import U2Net
from u2net_hub import training as T

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "train" / "train.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")
LAUNCH = [str(ACCELERATE), "launch", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
# Small and fast: 64 px scenes, the tiny model, no workers (2 shared cores).
SMALL = ["--resolution", "64", "--crop_size", "56", "--dataloader_num_workers", "0",
         "--eval_batch_size", "4", "--synthetic_validation_num_images", "6"]


def _env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    env.pop("ACCELERATE_USE_CPU", None)
    env.update(extra)
    return env


def _launch(args: list[str], *, processes: int = 1, timeout: float = 120, env: dict | None = None):
    if processes == 1:
        cmd = LAUNCH + ["--num_processes", "1"]
        env = env or _env()
    else:
        # --multi_gpu with ACCELERATE_USE_CPU=1 starts `processes` CPU ranks talking over gloo;
        # `--cpu --num_processes 2` would start a single process.
        cmd = LAUNCH + ["--multi_gpu", "--num_processes", str(processes), "--main_process_port", str(_free_port())]
        env = env or _env(ACCELERATE_USE_CPU="1")
    return subprocess.run(cmd + [str(SCRIPT)] + args, capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO_ROOT)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(result) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def _events(output_dir: Path, kind: str) -> list[dict]:
    return [r for r in T.read_jsonl(output_dir / T.TRAIN_LOG_NAME) if r.get("event") == kind]


# ------------------------------------------------------------------ helpers


def test_lr_schedules():
    param = torch.nn.Parameter(torch.zeros(1))

    def lrs(name, warmup, total, steps):
        opt = torch.optim.SGD([param], lr=1.0)
        sched = T.build_lr_scheduler(opt, name, warmup_steps=warmup, total_steps=total)
        out = []
        for _ in range(steps):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out

    assert lrs("constant", 5, 10, 4) == [1.0] * 4
    warm = lrs("constant_with_warmup", 3, 10, 6)
    assert warm[:3] == sorted(warm[:3]) and warm[0] < 1.0 and warm[3:] == [1.0] * 3
    linear = lrs("linear", 0, 10, 11)
    assert linear[0] == 1.0 and linear[5] == pytest.approx(0.5) and linear[10] == 0.0
    cosine = lrs("cosine", 0, 10, 11)
    assert cosine[5] == pytest.approx(0.5) and cosine[10] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown lr scheduler"):
        T.build_lr_scheduler(torch.optim.SGD([param], lr=1.0), "polynomial", warmup_steps=0, total_steps=1)


def _fake_checkpoint(output_dir: Path, step: int, complete: bool = True) -> Path:
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete:
        (path / T.TRAINER_STATE_NAME).write_text(json.dumps({"global_step": step, "complete": True}))
    return path


def test_latest_only_considers_complete_checkpoints(tmp_path):
    assert T.latest_checkpoint(tmp_path / "missing") is None
    _fake_checkpoint(tmp_path, 2)
    _fake_checkpoint(tmp_path, 10)
    _fake_checkpoint(tmp_path, 30, complete=False)            # killed while writing (no marker)
    truncated = _fake_checkpoint(tmp_path, 40, complete=False)
    (truncated / T.TRAINER_STATE_NAME).write_text('{"global_step": 40, "comp')  # marker cut short
    (tmp_path / ".checkpoint-50.tmp").mkdir()                # our own temporary
    (tmp_path / "checkpoint-final").mkdir()                  # not checkpoint-<int>
    assert [p.name for p in T.list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]
    assert T.resolve_resume_checkpoint("latest", tmp_path).name == "checkpoint-10"
    assert T.resolve_resume_checkpoint("checkpoint-2", tmp_path).name == "checkpoint-2"
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        T.resolve_resume_checkpoint(str(tmp_path / "checkpoint-30"), tmp_path)
    with pytest.raises(FileNotFoundError):
        T.resolve_resume_checkpoint(str(tmp_path / "nope"), tmp_path)
    assert T.resolve_resume_checkpoint(None, tmp_path) is None
    assert [p.name for p in T.remove_stale_temporaries(tmp_path)] == [".checkpoint-50.tmp"]
    assert not (tmp_path / ".checkpoint-50.tmp").exists()


def test_epoch_order_is_reproducible_and_resume_skips_what_was_seen():
    from torch.utils.data import BatchSampler

    sampler = T.EpochShuffleSampler(23, seed=7)
    sampler.set_epoch(3)
    full = list(BatchSampler(sampler, batch_size=4, drop_last=False))
    again = T.EpochShuffleSampler(23, seed=7)
    again.set_epoch(3)
    assert list(BatchSampler(again, batch_size=4, drop_last=False)) == full
    again.set_epoch(4)
    assert list(again) != list(sampler) and sorted(again) == list(range(23))
    # 6 batches per epoch, accumulation 2 -> 3 updates per epoch; step 10 = epoch 3, 2 batches in.
    epoch, skip = T.resume_position(10, updates_per_epoch=3, gradient_accumulation_steps=2)
    assert (epoch, skip) == (3, 2)
    assert full[skip:] == list(BatchSampler(sampler, batch_size=4, drop_last=False))[2:]


def test_redacted_command_hides_the_token():
    command = T.redacted_command(["train/train.py", "--hub_token", "hf_secret", "--hub_token=hf_other", "--seed", "1"],
                                 launcher="accelerate launch")
    assert "hf_secret" not in command and "hf_other" not in command
    assert command.startswith("accelerate launch train/train.py") and "--seed 1" in command


def test_tensorboard_tracker_is_checked():
    assert T.check_trackers("none") == []
    assert T.check_trackers("tensorboard") == ["tensorboard"]


def test_mixed_precision_default_follows_the_hardware():
    cpu_default = T.default_mixed_precision(use_cpu=True)
    assert cpu_default == ("bf16" if T.cpu_has_native_bf16() else "no")
