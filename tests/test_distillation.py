"""Distillation (u2net_hub.distillation, train/train.py --distill_from): the loss, the data and a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import skip_first_batches
from PIL import Image

from u2net_hub import DEMO_MODEL, U2Net, U2NetOutput
from u2net_hub.data import SaliencyTransform, TrainingSamples, collate_samples
from u2net_hub.distillation import DistillationStream, distillation_loss, split_output, unlabelled_images
from u2net_hub.training import EpochShuffleSampler, read_jsonl
from test_train import REPO_ROOT, SCRIPT, SMALL, _check, _env, _launch, _write_scenes


def _output(generator: torch.Generator, batch: int = 2, size: int = 8) -> U2NetOutput:
    maps = [torch.randn(batch, 1, size, size, generator=generator) * 3 for _ in range(7)]
    return U2NetOutput(maps[0], tuple(maps[1:]))


def test_distillation_loss_is_the_cross_entropy_against_each_teacher_map():
    generator = torch.Generator().manual_seed(0)
    student, teacher = _output(generator), _output(generator)
    expected = 0.0
    for s, t in zip(student.all_logits, teacher.all_logits):  # written out in numpy, fused and side k to side k
        s, p = s.double().numpy(), 1 / (1 + np.exp(-t.double().numpy()))
        q = 1 / (1 + np.exp(-s))
        expected += float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q))))
    assert distillation_loss(student, teacher).item() == pytest.approx(expected, rel=1e-5)

    # The student that already matches the teacher gets no gradient; one that differs does.
    same = U2NetOutput(teacher.logits.clone().requires_grad_(), tuple(s.clone().requires_grad_() for s in teacher.side_logits))
    distillation_loss(same, teacher).backward()
    assert all(m.grad.abs().max() < 1e-7 for m in same.all_logits)
    moved = U2NetOutput(student.logits.clone().requires_grad_(), student.side_logits)
    distillation_loss(moved, teacher).backward()
    assert moved.logits.grad.abs().max() > 1e-3

    head, tail = split_output(student, 1)
    assert head.logits.shape[0] == 1 and tail.side_logits[5].shape[0] == 1
    torch.testing.assert_close(tail.side_logits[2], student.side_logits[2][1:])


def test_unlabelled_images_leave_out_masks_and_refuse_an_empty_folder(tmp_path):
    (tmp_path / "photos" / "masks").mkdir(parents=True)
    (tmp_path / "photos" / "more").mkdir()
    for i, (image, mask) in enumerate(_write_scenes(tmp_path, 3)):
        image.save(tmp_path / "photos" / f"{i}.jpg")
        mask.save(tmp_path / "photos" / "masks" / f"{i}.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    Image.new("RGB", (9, 7)).save(tmp_path / "photos" / "gt_racer.png")  # a photo whose name starts like a folder
    Image.new("RGB", (9, 7)).save(tmp_path / "photos" / "more" / "x.png")
    images = unlabelled_images(tmp_path / "photos")
    names = sorted(Path(cell["path"]).relative_to(tmp_path / "photos").as_posix() for cell in images["image"])
    assert names == ["0.jpg", "1.jpg", "2.jpg", "gt_racer.png", "more/x.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image"):
        unlabelled_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="no such folder"):
        unlabelled_images(tmp_path / "nowhere")


def test_a_resumed_stream_draws_what_an_uninterrupted_one_would(tmp_path):
    """5 photos in batches of 2 (the odd one dropped) are 2 batches a pass: a stream started after 3 batches
    continues inside the second pass with the same crops, flips and teacher maps."""
    for i, (image, _) in enumerate(_write_scenes(tmp_path, 5)):
        image.save(tmp_path / f"{i}.jpg")
    images = unlabelled_images(tmp_path)
    torch.manual_seed(0)
    teacher = U2Net(variant="tiny", input_size=32).eval()
    pre = teacher.preprocessing
    transform = SaliencyTransform(resolution=32, crop_size=24, train=True, mean=pre.mean, std=pre.std)

    def stream(start: int) -> DistillationStream:
        sampler = EpochShuffleSampler(len(images), seed=7, keyed=True)
        loader = torch.utils.data.DataLoader(TrainingSamples(images, transform, seed=7, mask_column=None),
                                             batch_size=2, sampler=sampler, collate_fn=collate_samples, drop_last=True)
        return DistillationStream(teacher, loader, sampler, "cpu", start=start, skip_first_batches=skip_first_batches)

    uninterrupted = [next(stream_0) for stream_0 in [stream(0)] for _ in range(6)]
    resumed = stream(3)
    for expected in uninterrupted[3:]:
        batch = next(resumed)
        torch.testing.assert_close(batch["pixel_values"], expected["pixel_values"], rtol=0, atol=0)
        torch.testing.assert_close(batch["targets"].side_logits[3], expected["targets"].side_logits[3])
    # Passes differ (a new order and new crops), and each batch is distinct.
    assert not torch.equal(uninterrupted[0]["pixel_values"], uninterrupted[2]["pixel_values"])


def _mean_probability(model_dir: Path, photos: list[Image.Image]) -> float:
    student = U2Net.from_pretrained(str(model_dir)).train()  # batch statistics: 16 steps do not settle running ones
    pre = student.preprocessing
    transform = SaliencyTransform(resolution=64, crop_size=None, train=False, mean=pre.mean, std=pre.std)
    pixels = torch.stack([transform.apply(photo, Image.new("L", photo.size), (0, 0, False, False))[0]
                          for photo in photos])
    with torch.no_grad():
        return torch.sigmoid(student(pixels).logits).mean().item()


def test_training_with_a_teacher_moves_the_student_towards_it_on_unlabelled_photos(tmp_path):
    """Two real runs from the same start on the same labelled scenes (mostly background), one with
    --distill_weight 0. The teacher calls every pixel of every photo salient (all its maps are a constant
    logit of 4): only the run that distils it ends up marking most of the unlabelled photos."""
    photos = [image for image, _ in _write_scenes(tmp_path, 6, size=64)]
    (tmp_path / "photos").mkdir()
    for i, photo in enumerate(photos):
        photo.save(tmp_path / "photos" / f"{i}.png")
    torch.manual_seed(0)
    U2Net(variant="tiny", input_size=64).save_pretrained(tmp_path / "start")
    teacher = U2Net(variant="tiny", input_size=64)
    with torch.no_grad():
        for name in ("outconv", *(f"side{k}" for k in range(1, 7))):
            getattr(teacher, name).weight.zero_()
            getattr(teacher, name).bias.fill_(4.0)
    teacher.save_pretrained(tmp_path / "teacher")
    marked = {}
    for weight in ("0", "1"):
        out = tmp_path / f"run-{weight}"
        output = _check(_launch(SMALL + [
            "--init_from", str(tmp_path / "start"), "--output_dir", str(out), "--train_batch_size", "2",
            "--synthetic_num_images", "4", "--learning_rate", "2e-3", "--max_train_steps", "16",
            "--validation_steps", "1000", "--checkpointing_steps", "1000", "--distill_from", str(tmp_path / "teacher"),
            "--distill_data_dir", str(tmp_path / "photos"), "--distill_batch_size", "3", "--distill_weight", weight,
        ], timeout=300))
        assert "distilling" in output and "on 6 images, 3 per step" in output
        marked[weight] = _mean_probability(out, photos)
        record = json.loads((out / "training_record.json").read_text())
        assert "on 6 unlabelled images" in json.dumps(record)
        assert len([r for r in read_jsonl(out / "train_log.jsonl") if r.get("event") == "train"]) == 16
    assert marked["1"] > 0.6 and marked["0"] < 0.5, marked


def _run_script(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env=_env(), cwd=REPO_ROOT)


def test_distillation_flags_are_checked(tmp_path):
    alone = _run_script(["--distill_from", DEMO_MODEL, "--max_train_steps", "1"])
    assert alone.returncode == 2 and "--distill_from (the teacher) and --distill_data_dir" in alone.stderr
    missing = _run_script(SMALL + ["--distill_from", str(tmp_path / "missing"), "--distill_data_dir", str(tmp_path),
                                   "--max_train_steps", "1", "--output_dir", str(tmp_path / "out")])
    assert missing.returncode != 0 and "error: --distill_from" in missing.stderr, missing.stderr[-2000:]
    assert "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = _run_script(SMALL + ["--distill_from", DEMO_MODEL, "--distill_data_dir", str(tmp_path / "empty"),
                                 "--max_train_steps", "1", "--output_dir", str(tmp_path / "out")])
    assert empty.returncode != 0 and "error: --distill_data_dir" in empty.stderr and "holds no image" in empty.stderr
    assert "Traceback" not in empty.stderr
