"""train/train.py end to end (real `accelerate launch` subprocesses) and the helpers in u2net_hub.training."""

from __future__ import annotations

import copy
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
from u2net_hub.acceleration import cpu_supports_bf16
from u2net_hub.training import (
    EpochShuffleSampler,
    TRAINER_STATE_NAME,
    TRAIN_LOG_NAME,
    build_lr_scheduler,
    check_trackers,
    checkpoint_step,
    default_mixed_precision,
    idle_cpu_cores,
    is_complete_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    read_jsonl,
    read_trainer_state,
    redacted_command,
    remove_stale_temporaries,
    resolve_resume_checkpoint,
    resume_position,
)

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
    return [r for r in read_jsonl(output_dir / TRAIN_LOG_NAME) if r.get("event") == kind]


# ------------------------------------------------------------------ helpers


def test_lr_schedules():
    param = torch.nn.Parameter(torch.zeros(1))

    def lrs(name, warmup, total, steps):
        opt = torch.optim.SGD([param], lr=1.0)
        sched = build_lr_scheduler(opt, name, warmup_steps=warmup, total_steps=total)
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
        build_lr_scheduler(torch.optim.SGD([param], lr=1.0), "polynomial", warmup_steps=0, total_steps=1)


def _fake_checkpoint(output_dir: Path, step: int, complete: bool = True) -> Path:
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete:
        (path / TRAINER_STATE_NAME).write_text(json.dumps({"global_step": step, "complete": True}))
    return path


def test_latest_only_considers_complete_checkpoints(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    _fake_checkpoint(tmp_path, 2)
    _fake_checkpoint(tmp_path, 10)
    _fake_checkpoint(tmp_path, 30, complete=False)            # killed while writing (no marker)
    truncated = _fake_checkpoint(tmp_path, 40, complete=False)
    (truncated / TRAINER_STATE_NAME).write_text('{"global_step": 40, "comp')  # marker cut short
    (tmp_path / ".checkpoint-50.tmp").mkdir()                # our own temporary
    (tmp_path / "checkpoint-final").mkdir()                  # not checkpoint-<int>
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]
    assert resolve_resume_checkpoint("latest", tmp_path).name == "checkpoint-10"
    assert resolve_resume_checkpoint("checkpoint-2", tmp_path).name == "checkpoint-2"
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-30"), tmp_path)
    with pytest.raises(FileNotFoundError):
        resolve_resume_checkpoint(str(tmp_path / "nope"), tmp_path)
    assert resolve_resume_checkpoint(None, tmp_path) is None
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".checkpoint-50.tmp"]
    assert not (tmp_path / ".checkpoint-50.tmp").exists()


def test_epoch_order_is_reproducible_and_resume_skips_what_was_seen():
    from torch.utils.data import BatchSampler

    sampler = EpochShuffleSampler(23, seed=7)
    sampler.set_epoch(3)
    full = list(BatchSampler(sampler, batch_size=4, drop_last=False))
    again = EpochShuffleSampler(23, seed=7)
    again.set_epoch(3)
    assert list(BatchSampler(again, batch_size=4, drop_last=False)) == full
    again.set_epoch(4)
    assert list(again) != list(sampler) and sorted(again) == list(range(23))
    # 6 batches per epoch, accumulation 2 -> 3 updates per epoch; step 10 = epoch 3, 2 batches in.
    epoch, skip = resume_position(10, updates_per_epoch=3, gradient_accumulation_steps=2)
    assert (epoch, skip) == (3, 2)
    assert full[skip:] == list(BatchSampler(sampler, batch_size=4, drop_last=False))[2:]


def test_redacted_command_hides_the_token():
    command = redacted_command(["train/train.py", "--hub_token", "hf_secret", "--hub_token=hf_other", "--seed", "1"],
                                 launcher="accelerate launch")
    assert "hf_secret" not in command and "hf_other" not in command
    assert command.startswith("accelerate launch train/train.py") and "--seed 1" in command


def test_tensorboard_tracker_is_checked():
    assert check_trackers("none") == []
    assert check_trackers("tensorboard") == ["tensorboard"]


def test_mixed_precision_default_follows_the_hardware():
    cpu_default = default_mixed_precision(use_cpu=True)
    assert cpu_default == ("bf16" if cpu_supports_bf16() else "no")


# --------------------------------------------------------------- end to end


def test_idle_cpu_cores_counts_the_cores_no_thread_computes_on():
    cores, threads = len(os.sched_getaffinity(0)), torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert idle_cpu_cores(torch.device("cpu"), 1) == cores - 1
        assert idle_cpu_cores(torch.device("cuda"), 1) == 0  # a GPU run does not compute on the cores
        torch.set_num_threads(cores)
        assert idle_cpu_cores(torch.device("cpu"), 1) == 0
    finally:
        torch.set_num_threads(threads)


def test_one_process_training_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    out = tmp_path / "run"
    result = _launch(SMALL + [
        "--output_dir", str(out), "--train_batch_size", "4", "--max_train_steps", "32", "--learning_rate", "1e-3",
        "--synthetic_num_images", "8", "--seed", "0", "--validation_steps", "1000", "--checkpointing_steps", "1000",
        "--push_to_hub", "--hub_model_id", "someone/u2net-test", "--report_to", "tensorboard",
    ])
    output = result.stdout + result.stderr
    # Offline, the push fails *after* everything was saved, with its own documented exit code
    # (which `accelerate launch` reports as its own exit status 1 plus the script's status).
    assert result.returncode != 0 and "returned non-zero exit status 3." in output, output[-4000:]
    assert "cannot push to the Hub: HF_HUB_OFFLINE" in output
    assert "world size: 1" in output
    cores = len(os.sched_getaffinity(0))
    if cores > 1:  # one thread (OMP_NUM_THREADS=1, as `accelerate launch` sets it) leaves cores idle: it says so
        assert f"warning: {cores - 1} CPU cores idle" in output
        assert f"--num_cpu_threads_per_process {cores}" in output

    losses = [r["loss"] for r in _events(out, "train")]
    assert [r["step"] for r in _events(out, "train")] == list(range(1, 33))
    # Per-batch losses are noisy (scenes differ a lot); 8 scenes seen 16 times each are learnt well enough.
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < 0.85 * first, f"loss did not fall: first 8 steps {first:.3f}, last 8 steps {last:.3f}"

    assert list((out / "logs").rglob("events.out.tfevents*")), "tensorboard recorded nothing"
    (validation,) = _events(out, "validation")  # only the final one
    assert validation["step"] == 32 and validation["num_images"] == 6
    assert 0.0 <= validation["maxF"] <= 1.0 and 0.0 <= validation["MAE"] <= 1.0
    end = _events(out, "end")[-1]
    if default_mixed_precision(use_cpu=True) == "bf16":
        assert end["forward_dtype"] == "torch.bfloat16"  # autocast really ran in bf16 on this CPU

    # The final checkpoint exists and is complete; the model folder loads strictly.
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-32"]
    model = U2Net.from_pretrained(str(out))
    assert model.variant == "tiny" and model.preprocessing.input_size == 64
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 1, 64, 64)
    card = (out / "README.md").read_text()
    assert "**steps**: 32" in card and "synthetic" in card
    assert "train/train.py" in card and "--max_train_steps 32" in card
    assert f"{validation['maxF']:.4f}" in card  # the final validation metrics are in the card


def test_two_cpu_processes_shard_the_data_and_gather_metrics(tmp_path):
    out = tmp_path / "ddp"
    result = _launch(SMALL + [
        "--output_dir", str(out), "--train_batch_size", "2", "--max_train_steps", "3", "--synthetic_num_images", "12",
        "--synthetic_validation_num_images", "5", "--eval_batch_size", "2", "--checkpointing_steps", "2",
    ], processes=2)
    output = _check(result)
    assert "world size: 2" in output
    for rank in (0, 1):  # both ranks trained, each on its own half of every global batch
        assert f"rank {rank}/2: 3 optimizer steps on 6 samples this run" in output
    assert _events(out, "start")[0]["world_size"] == 2
    # 5 validation images over 2 ranks x batches of 2: Accelerate pads the last batch; no image counted twice.
    (validation,) = _events(out, "validation")
    assert validation["num_images"] == 5
    # Each rank's RNG states, as JSON: no pickle in a checkpoint for resuming to read.
    assert sorted(p.name for p in (out / "checkpoint-3").glob("rng_state_*")) == ["rng_state_0.json", "rng_state_1.json"]
    assert not list((out / "checkpoint-3").glob("*.pkl"))
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-3"]
    assert read_trainer_state(out / "checkpoint-3")["world_size"] == 2
    U2Net.from_pretrained(str(out))


def test_sigkill_then_resume_latest_continues_at_the_same_step(tmp_path):
    out = tmp_path / "resume"
    # No random crop, so a batch's foreground share depends only on which scenes it holds (flips keep it).
    common = SMALL + ["--output_dir", str(out), "--train_batch_size", "2", "--synthetic_num_images", "16",
                      "--checkpointing_steps", "3", "--validation_steps", "1000", "--seed", "3", "--crop_size", "0"]
    cmd = LAUNCH + ["--num_processes", "1", str(SCRIPT)] + common + ["--max_train_steps", "200"]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            latest = latest_checkpoint(out)
            if latest is not None and checkpoint_step(latest) >= 6:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"training ended early: {process.stderr.read()[-3000:]}"
        os.killpg(process.pid, signal.SIGKILL)  # no chance to clean up or finish a save
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.stderr.close()
    assert not (out / "config.json").exists()  # it really died before the end
    killed_at = checkpoint_step(latest_checkpoint(out))
    assert killed_at >= 6 and killed_at % 3 == 0

    # What a kill during a save leaves behind, and a foreign half-written folder: both must be ignored.
    (out / f".checkpoint-{killed_at + 3}.tmp").mkdir(exist_ok=True)
    (out / f".checkpoint-{killed_at + 3}.tmp" / "model.safetensors").write_bytes(b"partial")
    (out / "checkpoint-999").mkdir()
    (out / "checkpoint-999" / "optimizer.bin").write_bytes(b"partial")

    total = killed_at + 4
    output = _check(_launch(common + ["--max_train_steps", str(total), "--resume_from_checkpoint", "latest"]))
    position = killed_at % 8  # 16 images / batch 2 = 8 steps per epoch
    assert f"resumed from {out / f'checkpoint-{killed_at}'} at step {killed_at} " \
           f"(epoch {killed_at // 8}, skipping {position} batches)" in output
    starts = _events(out, "start")
    assert starts[-1]["global_step"] == killed_at and starts[-1]["resumed_from"].endswith(f"checkpoint-{killed_at}")
    records = read_jsonl(out / TRAIN_LOG_NAME)
    last_start = max(i for i, r in enumerate(records) if r.get("event") == "start")
    resumed_steps = [r["step"] for r in records[last_start:] if r.get("event") == "train"]
    assert resumed_steps == list(range(killed_at + 1, total + 1))
    assert "rank 0/1: 4 optimizer steps on 8 samples this run" in output
    assert not (out / f".checkpoint-{killed_at + 3}.tmp").exists()
    assert (out / "checkpoint-999").is_dir() and not is_complete_checkpoint(out / "checkpoint-999")
    complete = [checkpoint_step(p) for p in list_checkpoints(out)]
    assert complete[-1] == total and killed_at in complete
    assert read_trainer_state(out / f"checkpoint-{total}")["images_seen"] == total * 2
    assert "**steps**: " + str(total) in (out / "README.md").read_text()
    U2Net.from_pretrained(str(out))

    # Same place in the data: every step, before and after the kill, used the batch of the epoch's shuffle
    # (seed 3) that comes at that position, identified by its share of foreground pixels.
    from u2net_hub.data import SaliencyTransform, make_synthetic_dataset

    scenes = make_synthetic_dataset(16, size=64, seed=0).with_transform(
        SaliencyTransform(resolution=64, crop_size=None, train=False))
    foreground = [float(scenes[i]["labels"].sum()) for i in range(16)]
    sampler = EpochShuffleSampler(16, seed=3)
    for record in _events(out, "train"):
        step = record["step"] - 1
        sampler.set_epoch(step // 8)
        batch = list(sampler)[2 * (step % 8): 2 * (step % 8) + 2]
        expected = sum(foreground[i] for i in batch) / (2 * 64 * 64)
        assert record["mask_fraction"] == pytest.approx(expected, abs=1e-6), f"step {step + 1} used other data"


def _write_scenes(folder: Path, count: int, size: int = 48) -> list[tuple[Image.Image, Image.Image]]:
    """Real little JPEG photos of a disc on a noisy background, with PNG masks."""
    from PIL import ImageDraw

    rng = np.random.default_rng(0)
    pairs = []
    for i in range(count):
        background = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        image = Image.fromarray(background, "RGB")
        mask = Image.new("L", (size, size), 0)
        r = int(rng.integers(size // 6, size // 3))
        cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
        colour = tuple(int(v) for v in rng.integers(150, 256, 3))
        ImageDraw.Draw(image).ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        ImageDraw.Draw(mask).ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        pairs.append((image, mask))
    return pairs


def _imagefolder(root: Path, count: int = 6) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lines = []
    for i, (image, mask) in enumerate(_write_scenes(root, count)):
        image.save(root / "images" / f"{i}.jpg", quality=90)
        mask.save(root / "masks" / f"{i}.png")
        lines.append(json.dumps({"file_name": f"images/{i}.jpg", "mask_file_name": f"masks/{i}.png"}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _folder_pair(root: Path, count: int = 6) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (image, mask) in enumerate(_write_scenes(root, count)):
        image.save(root / "images" / f"scene_{i:03d}.jpg", quality=90)
        mask.save(root / "masks" / f"scene_{i:03d}.png")
    return root


@pytest.mark.parametrize("layout", ["imagefolder", "folder_pair"])
def test_local_folders_train_with_a_held_out_count(tmp_path, layout):
    data = (_imagefolder if layout == "imagefolder" else _folder_pair)(tmp_path / "data")
    out = tmp_path / "out"
    extra = []
    if layout == "imagefolder":  # fine-tune a saved model
        U2Net(variant="tiny", input_size=64).save_pretrained(tmp_path / "init")
        extra = ["--init_from", str(tmp_path / "init")]
    else:  # a custom stage table in config.json's format
        config = U2Net(variant="tiny").config
        for spec in config["stages"].values():
            spec["mid_channels"] = 8
        config["variant"] = "custom"
        (tmp_path / "custom.json").write_text(json.dumps(config))
        extra = ["--config", str(tmp_path / "custom.json")]
    output = _check(_launch(SMALL + extra + [
        "--train_data_dir", str(data), "--validation_split", "2", "--output_dir", str(out),
        "--train_batch_size", "2", "--max_train_steps", "2", *(["--cache_resized"] if layout == "folder_pair" else []),
    ]))
    assert "4 training images, 2 validation images" in output
    (validation,) = _events(out, "validation")
    assert validation["num_images"] == 2
    model = U2Net.from_pretrained(str(out))
    card = (out / "README.md").read_text()
    assert "local folder data" in card and "2 images held out" in card
    if layout == "imagefolder":
        assert "fine-tuned from" in card and model.variant == "tiny"
    else:
        assert model.variant == "custom" and model.stages["stage1"].mid_channels == 8


def test_a_wrong_column_name_lists_the_columns(tmp_path):
    data = _imagefolder(tmp_path / "data", count=2)
    result = _launch(SMALL + ["--train_data_dir", str(data), "--image_column", "photo",
                              "--output_dir", str(tmp_path / "out"), "--max_train_steps", "1"])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'photo'" in output and "['image', 'mask']" in output
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_optimizer_is_the_fused_adam_on_cpu_and_it_steps():
    from u2net_hub.training import build_optimizer

    for decay, kind in ((0.0, torch.optim.Adam), (0.01, torch.optim.AdamW)):
        weight = torch.nn.Parameter(torch.ones(5))
        optimizer = build_optimizer([weight], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=decay, device="cpu")
        assert type(optimizer) is kind and optimizer.defaults.get("fused") is True
        weight.grad = torch.ones(5)
        optimizer.step()
        assert torch.all(weight < 1)


def test_frozen_batch_norms_keep_their_statistics_while_the_weights_train(tmp_path):
    """--freeze_batch_norm (the demo fine-tune from the released weights): the BatchNorms normalise with their
    running statistics and never update them, in every step of a real run; the convolutions and the BatchNorms'
    scale and shift still learn, and the card says so."""
    torch.manual_seed(0)
    start = U2Net(variant="tiny", input_size=64)
    for module in start.modules():  # running statistics no batch of these scenes would give
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    start.save_pretrained(tmp_path / "start")
    out = tmp_path / "run"
    _check(_launch(SMALL + [
        "--init_from", str(tmp_path / "start"), "--freeze_batch_norm", "--output_dir", str(out),
        "--train_batch_size", "4", "--max_train_steps", "3", "--synthetic_num_images", "8",
        "--validation_steps", "1000", "--checkpointing_steps", "1000",
    ]))
    before, after = start.state_dict(), U2Net.from_pretrained(str(out)).state_dict()
    statistics = [name for name in before if name.endswith(("running_mean", "running_var"))]
    assert len(statistics) == 2 * 112
    for name in statistics:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert not torch.equal(after["stage1.rebnconvin.conv_s1.weight"], before["stage1.rebnconvin.conv_s1.weight"])
    assert not torch.equal(after["stage1.rebnconvin.bn_s1.weight"], before["stage1.rebnconvin.bn_s1.weight"])
    assert "BatchNorms frozen in inference mode" in (out / "README.md").read_text()


def test_frozen_batch_norms_compute_the_inference_map_in_training_mode():
    from u2net_hub.training import freeze_batch_norms

    torch.manual_seed(0)
    model = U2Net(variant="tiny", input_size=64)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        reference = model.eval()(x).logits
        unfrozen = copy.deepcopy(model)
        assert not torch.allclose(unfrozen.train()(x).logits, reference, atol=1e-3)  # batch statistics differ
        assert freeze_batch_norms(model) == 112
        torch.testing.assert_close(model.train()(x).logits, reference)


def test_weight_average_is_the_exponential_mean_of_the_steps_and_survives_a_resume(tmp_path):
    """--use_ema: each checkpoint's average/ folder is a model that loads, holding the warmed-up exponential mean
    of the weights after every step (BatchNorm statistics included); a resumed run continues that mean (its
    values and its update count), and the model saved at the end is the mean, not the last step's weights."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    U2Net(variant="tiny", input_size=64).save_pretrained(tmp_path / "start")
    out = tmp_path / "run"
    common = SMALL + ["--init_from", str(tmp_path / "start"), "--output_dir", str(out), "--use_ema",
                      "--ema_decay", "0.15", "--train_batch_size", "4", "--synthetic_num_images", "8",
                      "--learning_rate", "1e-2", "--validation_steps", "1000", "--checkpointing_steps", "1"]
    _check(_launch(common + ["--max_train_steps", "2"]))
    resumed = _check(_launch(common + ["--max_train_steps", "3", "--resume_from_checkpoint", "latest"]))
    assert "resumed from" in resumed

    def weights(folder: Path) -> dict[str, torch.Tensor]:
        return load_file(folder / "model.safetensors")

    expected = {k: v.double() for k, v in weights(tmp_path / "start").items() if v.is_floating_point()}
    for step, decay in ((1, 0.1), (2, 0.15), (3, 0.15)):  # min(0.15, (1 + t) / (10 + t)) for t = 0, 1, 2
        raw = weights(out / f"checkpoint-{step}")
        expected = {k: decay * v + (1 - decay) * raw[k].double() for k, v in expected.items()}
        saved = weights(out / f"checkpoint-{step}" / "average")
        for name, value in expected.items():
            torch.testing.assert_close(saved[name].double(), value, rtol=0, atol=1e-6, msg=f"step {step}: {name}")
    U2Net.from_pretrained(str(out / "checkpoint-3" / "average"))  # a model folder of its own
    final = U2Net.from_pretrained(str(out)).state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(final[name].double(), value, rtol=0, atol=1e-6)
    last = weights(out / "checkpoint-3")["stage1.rebnconvin.conv_s1.weight"]
    assert not torch.allclose(final["stage1.rebnconvin.conv_s1.weight"], last, atol=1e-6)
    assert "exponential moving average (decay 0.15)" in (out / "README.md").read_text()


def test_weight_average_applied_only_inside_the_block():
    from u2net_hub.training import WeightAverage

    torch.manual_seed(0)
    model = U2Net(variant="tiny", input_size=64)
    start = copy.deepcopy(model.state_dict())
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    average.update()  # first update: decay min(0.5, 1/10) = 0.1
    name = "stage1.rebnconvin.conv_s1.weight"
    trained = model.state_dict()[name].clone()
    with average.applied():
        torch.testing.assert_close(model.state_dict()[name], 0.1 * start[name] + 0.9 * trained)
    torch.testing.assert_close(model.state_dict()[name], trained, rtol=0, atol=0)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)
    alone = subprocess.run([sys.executable, str(SCRIPT), "--ema_decay", "0.99"], capture_output=True, text=True,
                           timeout=60, env=_env(), cwd=REPO_ROOT)
    assert alone.returncode == 2 and "pass --use_ema too" in alone.stderr
