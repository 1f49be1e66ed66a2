"""The rough edges a new user hits on the command line and in the library (issue 11, items 2 and 5-15).

CLI checks run the real `u2net` entry point in a subprocess (exit codes, stderr, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from u2net_hub import U2Net
from u2net_hub.cli import main


def u2net(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "u2net_hub.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny64"
    U2Net(variant="tiny", input_size=64).save_pretrained(path)
    return path


def _blob(rng, h: int, w: int) -> np.ndarray:
    gt = np.zeros((h, w), dtype=np.uint8)
    top, left = int(rng.integers(2, h // 3)), int(rng.integers(2, w // 3))
    gt[top: top + h // 2, left: left + w // 2] = 255
    return gt


def _folder_pair(root: Path, names=("x", "y", "z"), size=(32, 40)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(2)
    for name in names:
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(root / "images" / f"{name}.jpg")
        Image.fromarray(_blob(rng, *size)).save(root / "masks" / f"{name}.png")
    return root


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_dataset_names_a_mask_of_another_size_and_strict_fails(tiny_model, tmp_path, capsys):
    root = _folder_pair(tmp_path / "pair")
    Image.fromarray(_blob(np.random.default_rng(0), 16, 20)).save(root / "masks" / "y.png")  # half the image's size
    out = tmp_path / "m.json"
    result = u2net("evaluate", "--model", str(tiny_model), "--dataset", str(root), "--no-progress", "--output",
                   str(out))
    assert result.returncode == 0, result.stderr
    assert "warning: 1 masks of another size than their image" in result.stderr
    assert "y.png: 20x16 mask for the 40x32 image" in result.stderr and "images/y.jpg" in result.stderr
    assert len(json.loads(out.read_text())["size_mismatches"]) == 1
    assert main(["evaluate", "--model", str(tiny_model), "--dataset", str(root), "--no-progress", "--strict"]) == 1
    captured = capsys.readouterr()
    assert "y.png" in captured.err and "maxF" in captured.out


def test_evaluate_an_unknown_split_of_a_local_folder_lists_the_splits(tiny_model, tmp_path):
    root = _folder_pair(tmp_path / "pair")
    result = u2net("evaluate", "--model", str(tiny_model), "--dataset", str(root), "--split", "bogus")
    assert result.returncode == 2
    assert "has no split 'bogus'" in result.stderr and "train, test, validation" in result.stderr
    assert "Traceback" not in result.stderr and "maxF" not in result.stdout
    # A folder without split names serves the usual split names (train.py asks for 'train' by default).
    assert main(["evaluate", "--model", str(tiny_model), "--dataset", str(root), "--split", "test",
                 "--no-progress"]) == 0


def test_evaluate_pred_dir_scores_the_alpha_of_rgba_cutouts(tmp_path, capsys):
    rng = np.random.default_rng(3)
    gt_dir, cutouts, masks = tmp_path / "gt", tmp_path / "cutouts", tmp_path / "masks"
    for folder in (gt_dir, cutouts, masks):
        folder.mkdir()
    for i in range(3):
        gt = _blob(rng, 40, 48)
        prediction = np.clip(gt * 0.8 + rng.random(gt.shape) * 50, 0, 255).astype(np.uint8)
        photo = (rng.random((40, 48, 3)) * 255).astype(np.uint8)  # the cutout's colours: the photo, not the mask
        Image.fromarray(gt).save(gt_dir / f"{i}.png")
        Image.fromarray(np.dstack([photo, prediction]), "RGBA").save(cutouts / f"{i}.png")
        Image.fromarray(prediction).save(masks / f"{i}.png")
    scores = {}
    for name, folder in (("cutouts", cutouts), ("masks", masks)):
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", "--pred-dir", str(folder), "--gt-dir", str(gt_dir), "--no-progress",
                     "--output", str(out)]) == 0
        scores[name] = json.loads(out.read_text())
        if name == "cutouts":
            note = "3 of 3 predictions are transparent cutouts (RGBA): their alpha channel was scored"
            assert note in capsys.readouterr().err
    assert scores["cutouts"]["maxF"] > 0.9
    assert scores["cutouts"]["maxF"] == scores["masks"]["maxF"] and scores["cutouts"]["MAE"] == scores["masks"]["MAE"]


# ---------------------------------------------------------------------------- predict


def _photo(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_predict_clashing_names_keep_their_extension_and_a_mapping_says_which_is_which(tiny_model, tmp_path):
    sizes = {"x.jpg": (20, 30), "x.png": (22, 30), "x_jpg.jpg": (24, 30), "x.jpg.jpg": (26, 30)}
    for i, (name, size) in enumerate(sizes.items()):
        _photo(tmp_path / "in" / name, size, seed=i)
    done = u2net("predict", "in", "--model", str(tiny_model), "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    # x_jpg.jpg and x.jpg.jpg keep the names that are theirs by right; the clashing x.jpg and x.png keep their
    # extension, and x.jpg, whose "x.jpg.png" is x.jpg.jpg's, is numbered.
    expected = {"x.jpg": "x.jpg-2.png", "x.png": "x.png.png", "x_jpg.jpg": "x_jpg.png", "x.jpg.jpg": "x.jpg.png"}
    for name, output in expected.items():
        with Image.open(out / output) as mask:
            assert mask.size == sizes[name], (name, output)
    import csv

    with open(out / "outputs.csv", newline="") as handle:
        rows = {Path(row["input"]).name: row["output"] for row in csv.DictReader(handle)}
    assert rows == expected
    assert "outputs.csv maps every input to its output" in done.stderr


def test_predict_skips_earlier_output_folders_and_refuses_a_file_as_output(tiny_model, tmp_path):
    for i in range(2):
        _photo(tmp_path / "photos" / f"p{i}.jpg", (20, 24), seed=i)
    for _ in range(2):  # the second run must not predict on the first run's masks
        done = u2net("predict", "photos", "--model", str(tiny_model), "-o", "photos/out", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "2 ok, 0 failed" in done.stdout
    done = u2net("predict", "photos", "photos/*", "--model", str(tiny_model), "-o", "photos/again", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 ok, 0 failed" in done.stdout and "not reading photos/out: an output folder of an earlier run" in done.stderr
    assert sorted(p.name for p in (tmp_path / "photos" / "again").glob("*.png")) == ["p0.png", "p1.png"]

    (tmp_path / "taken.png").write_bytes(b"keep me")
    done = u2net("predict", "photos", "--model", str(tiny_model), "-o", "taken.png", cwd=tmp_path)
    assert done.returncode == 2
    assert "--output-dir taken.png: taken.png is a file, not a folder" in done.stderr and "ok" not in done.stdout
    assert (tmp_path / "taken.png").read_bytes() == b"keep me"


def test_predict_max_pixels_flag_and_help_texts(tiny_model, tmp_path):
    _photo(tmp_path / "big.png", (100, 100))
    refused = u2net("predict", "big.png", "--model", str(tiny_model), "-o", "out", "--max-pixels", "5000",
                    cwd=tmp_path)
    assert refused.returncode == 1
    assert "more than the 5,000 allowed" in refused.stderr and "--max-pixels N" in refused.stderr
    assert "MAX_IMAGE_PIXELS" not in refused.stderr
    allowed = u2net("predict", "big.png", "--model", str(tiny_model), "-o", "out", "--max-pixels", "10000",
                    cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr

    predict_help = u2net("predict", "--help").stdout
    assert "--output-dir DIR" in predict_help and " OUT" not in predict_help
    train_help = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "train" / "train.py"),
                                 "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "(default: None)" not in train_help
    assert "(default: tiny)" in " ".join(train_help.split())


# ---------------------------------------------------------------------------- export-onnx


def test_export_onnx_single_onnx_argument_and_rembg_size_warning(tmp_path):
    pytest.importorskip("onnxruntime")
    # One argument ending in .onnx: the output, with the bundled demo model (320 px, rembg's own size: no warning).
    done = u2net("export-onnx", "demo.onnx", "--exporter", "torchscript", "--no-check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "demo.onnx").is_file() and "does not exist" not in done.stderr
    assert "exporting the bundled demo model" in done.stderr
    assert "rembg always resizes" not in done.stderr
    # A model trained at 160 px is warned about.
    small = U2Net(variant="tiny", input_size=160).eval()
    small.save_pretrained(tmp_path / "small")
    done = u2net("export-onnx", str(tmp_path / "small"), "small.onnx", "--exporter", "torchscript", "--no-check",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warning = " ".join(done.stderr.split())
    assert "warning: this model was trained at 160x160, but rembg always resizes images to 320x320" in warning
    assert "docs/reliability.md" in warning

    size_help = " ".join(u2net("export-onnx", "--help").stdout.split())
    assert "default: the model's own input size" in size_help and "own, 320" not in size_help


def test_the_rembg_warning_is_only_for_other_sizes():
    from u2net_hub.export import rembg_size_warning

    assert rembg_size_warning(320) is None
    assert "trained at 288x288" in rembg_size_warning(288)


# ---------------------------------------------------------------------------- the Hub mixin


def test_a_model_keeps_its_training_record_across_save_and_load(tmp_path):
    from u2net_hub import DEMO_MODEL

    demo = U2Net.from_pretrained(DEMO_MODEL)
    assert demo.training_record and "synthetic" in demo.training_record["training"]["dataset"]
    demo.save_pretrained(tmp_path / "copy")
    card = (tmp_path / "copy" / "README.md").read_text()
    assert "DUTS-TR" not in card and "built-in synthetic scenes" in card and "distilled" in card
    assert f"| maxF | {demo.training_record['metrics']['maxF']:.4f} |" in card  # the recorded figures, not others
    again = U2Net.from_pretrained(tmp_path / "copy")
    assert again.training_record == demo.training_record
    again.save_pretrained(tmp_path / "copy2")
    assert (tmp_path / "copy2" / "README.md").read_text() == card


def test_weights_without_a_record_say_their_provenance_is_unknown(tmp_path):
    U2Net(variant="tiny").save_pretrained(tmp_path / "fresh")
    card = (tmp_path / "fresh" / "README.md").read_text()
    assert "Unknown provenance" in card and "DUTS-TR" not in card
    assert not (tmp_path / "fresh" / "training_record.json").exists()
    assert U2Net.from_pretrained(tmp_path / "fresh").training_record is None


@pytest.mark.parametrize("name", ["./no-such-folder/", "no-such-folder/", "/tmp/u2net-none/x/y"])
def test_from_pretrained_of_a_missing_local_folder_says_so(name):
    with pytest.raises(FileNotFoundError, match="the local folder .* does not exist"):
        U2Net.from_pretrained(name)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        U2Net.from_pretrained(Path("no-such-folder"))


@pytest.mark.parametrize("argv", [
    ["predict", "a.jpg", "--batch-size", "0"],
    ["predict", "a.jpg", "--max-pixels", "-5"],
    ["predict", "--dataset", "d", "--output-dataset", "o", "--shard-size", "0"],
    ["evaluate", "--dataset", "d", "--batch-size", "0"],
    ["evaluate", "--dataset", "d", "--limit", "two"],
    ["profile", "--size", "0"],
    ["convert", "a.pth", "out", "--input-size", "0"],
    ["export-onnx", "m", "m.onnx", "--size", "0"],
])
def test_every_count_flag_refuses_a_bad_value_the_same_way(argv, capsys):
    """One argparse type (u2net_hub.commands.positive_int) for every count: exit 2, one line, nothing run."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "expected a positive integer, got " in error and "Traceback" not in error


def test_repeats_may_be_zero_but_not_negative(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "--repeats", "-1"])
    assert exit_info.value.code == 2 and "expected an integer >= 0, got -1" in capsys.readouterr().err
