"""`u2net evaluate` through real subprocesses: saved masks against ground truth, and a tiny model on a folder dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import py_sod_metrics as psm
import pytest
from PIL import Image

from u2net_hub import U2Net
from u2net_hub.cli import main
from u2net_hub.metrics import METRIC_KEYS, SODMetrics

pytestmark = pytest.mark.slow


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(cache), TQDM_DISABLE="0")
    return subprocess.run(
        [sys.executable, "-m", "u2net_hub.cli", "evaluate", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )


def blob_pair(rng, h, w):
    """A rectangle mask and a noisy prediction of it (8-bit)."""
    gt = np.zeros((h, w), dtype=np.uint8)
    top, left = int(rng.integers(2, h // 3)), int(rng.integers(2, w // 3))
    gt[top : top + h // 2, left : left + w // 2] = 255
    pred = np.clip(0.6 * gt / 255.0 + 0.5 * rng.random((h, w)), 0, 1)
    return np.rint(pred * 255).astype(np.uint8), gt


def metric_values(document: dict) -> dict:
    return {k: document[k] for k in METRIC_KEYS}


@pytest.fixture()
def folders(tmp_path):
    """pred/ and gt/ trees: two good pairs (one in a subfolder, one by bare name), one orphan on each side,
    one pair whose ground truth is not a decodable image, plus files that are not images at all."""
    rng = np.random.default_rng(0)
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    (pred_dir / "sub").mkdir(parents=True)
    (gt_dir / "sub").mkdir(parents=True)
    (gt_dir / "masks").mkdir()
    pairs = {}
    for name, pred_path, gt_path, size in [
        ("a", pred_dir / "a.png", gt_dir / "a.png", (40, 52)),
        ("sub/b", pred_dir / "sub" / "b.png", gt_dir / "sub" / "b.bmp", (36, 30)),  # any image extension
        ("c", pred_dir / "c.png", gt_dir / "masks" / "c.png", (30, 30)),  # paired by its bare name
    ]:
        pred, gt = blob_pair(rng, *size)
        Image.fromarray(pred).save(pred_path)
        Image.fromarray(gt).save(gt_path)
        pairs[name] = (pred, gt)
    Image.fromarray(blob_pair(rng, 20, 20)[0]).save(pred_dir / "orphan.png")
    Image.fromarray(blob_pair(rng, 20, 20)[1]).save(gt_dir / "lonely.png")
    Image.fromarray(blob_pair(rng, 20, 20)[0]).save(pred_dir / "broken.png")
    (gt_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    (gt_dir / "notes.txt").write_text("not an image: ignored")
    return pred_dir, gt_dir, pairs


def test_pred_dir_form(folders, tmp_path):
    pred_dir, gt_dir, pairs = folders
    out = tmp_path / "report" / "metrics.json"
    result = run_cli("--pred-dir", str(pred_dir), "--gt-dir", str(gt_dir), "--output", str(out), "--per-image",
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["count"] == 3 and document["mode"] == "pred-dir"

    # The same pairs straight through pysodmetrics.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = psm.Fmeasure(beta=0.3)
    mae, sm, wfm = psm.MAE(), psm.Smeasure(), psm.WeightedFmeasure()
    for pred, gt in pairs.values():
        for metric in (fm, mae, sm, wfm):
            metric.step(pred, gt)
    assert document["maxF"] == pytest.approx(float(fm.get_results()["fm"]["curve"].max()), abs=1e-6)
    assert document["MAE"] == pytest.approx(float(mae.get_results()["mae"]), abs=1e-6)
    assert document["Sm"] == pytest.approx(float(sm.get_results()["sm"]), abs=1e-6)
    assert document["wF"] == pytest.approx(float(wfm.get_results()["wfm"]), abs=1e-6)
    library = SODMetrics()
    for pred, gt in pairs.values():
        library.update(pred, gt)
    assert metric_values(document) == pytest.approx(metric_values(library.compute()), abs=1e-12)

    # The table on stdout; unmatched and unreadable files reported as warnings and in the JSON.
    for name in METRIC_KEYS:
        assert name in result.stdout
    unmatched = {Path(e["item"]).name: e["reason"] for e in document["unmatched"]}
    assert set(unmatched) == {"orphan.png", "lonely.png"}
    assert "without a ground-truth" in unmatched["orphan.png"]
    assert [Path(e["item"]).name for e in document["unreadable"]] == ["broken.png"]
    assert "warning: 2 items without a partner" in result.stderr
    assert "orphan.png" in result.stderr and "lonely.png" in result.stderr
    assert "warning: 1 unreadable" in result.stderr and "broken.png" in result.stderr
    assert sorted(entry["item"] for entry in document["per_image"]) == ["a", "c", "sub/b"]
    assert "evaluate: 100%" in result.stderr  # the tqdm bar


@pytest.fixture()
def model_dir(tiny_folder):
    return tiny_folder


def make_imagefolder(root: Path, count: int, rng) -> list[tuple[Image.Image, np.ndarray]]:
    """An imagefolder dataset (metadata.jsonl pairing file_name / mask_file_name) with one corrupt image."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lines, samples = [], []
    for i in range(count):
        image = Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8))
        _, mask = blob_pair(rng, 40, 48)
        image.save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
        lines.append(json.dumps({"file_name": f"images/{i}.png", "mask_file_name": f"masks/{i}.png"}))
        samples.append((image, mask))
    (root / "images" / "bad.png").write_bytes(b"garbage")
    lines.append(json.dumps({"file_name": "images/bad.png", "mask_file_name": "masks/0.png"}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return samples


def test_model_form_on_imagefolder_and_rescoring_saved_predictions(model_dir, tmp_path):
    rng = np.random.default_rng(1)
    samples = make_imagefolder(tmp_path / "ds", 3, rng)
    out, saved = tmp_path / "m.json", tmp_path / "saved"
    result = run_cli("--model", str(model_dir), "--dataset", str(tmp_path / "ds"), "--split", "train",
                     "--batch-size", "2", "--no-fast", "--save-predictions", str(saved), "--output", str(out),
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["count"] == 3
    assert (document["mode"], document["model"], document["dataset"], document["split"]) == (
        "model", str(model_dir), str(tmp_path / "ds"), "train")
    assert document["fast"] is False
    assert len(document["unreadable"]) == 1 and document["unreadable"][0]["item"].startswith("row ")
    assert "unreadable" in result.stderr
    for name in METRIC_KEYS:
        assert 0.0 <= document[name] <= 1.01, name

    # The model really ran on these images: the same model in this process gives the same scores
    # (up to float32 differences between processes flipping an 8-bit rounding).
    model = U2Net.from_pretrained(model_dir)
    predictions = model.predict([image for image, _ in samples], normalize=True, fast=False, sides=False)
    library = SODMetrics()
    for prediction, (_, mask) in zip(predictions, samples):
        library.update(prediction.probability, mask)
    assert metric_values(document) == pytest.approx(metric_values(library.compute()), abs=2e-3)

    # The saved PNGs re-score to exactly the same numbers through the other form.
    assert sorted(p.name for p in saved.iterdir()) == ["0.png", "1.png", "2.png"]
    rescored = tmp_path / "rescored.json"
    result = run_cli("--pred-dir", str(saved), "--gt-dir", str(tmp_path / "ds" / "masks"), "--output", str(rescored),
                     "--no-progress", cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert metric_values(json.loads(rescored.read_text())) == metric_values(document)


def test_model_form_on_folder_pair_with_limit_and_strict(model_dir, tmp_path):
    root = tmp_path / "pair"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(2)
    for name in ("x", "y", "z"):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "images" / f"{name}.jpg")
        Image.fromarray(blob_pair(rng, 32, 32)[1]).save(root / "masks" / f"{name}.png")
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "images" / "no_mask.jpg")
    out = tmp_path / "m.json"
    result = run_cli("--model", str(model_dir), "--dataset", str(root), "--limit", "2", "--strict",
                     "--output", str(out), "--per-image", cache=tmp_path / "cache")
    assert result.returncode == 1, result.stderr  # --strict: the image without a mask counts as a problem
    document = json.loads(out.read_text())
    assert document["count"] == 2 and document["limit"] == 2
    assert [e["item"] for e in document["per_image"]] == ["x", "y"]
    # The data loader's report of the unpaired image ends up in the JSON and on stderr.
    assert len(document["unmatched"]) == 1 and "no_mask.jpg" in document["unmatched"][0]["reason"]
    assert "no_mask.jpg" in result.stderr and "maxF" in result.stdout


# ------------------------------------------- usage errors (in-process: the same `main`, no interpreter start-up)


def test_missing_folder_is_exit_2(model_dir, tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    assert main(["evaluate", "--pred-dir", str(tmp_path / "nope"), "--gt-dir", str(tmp_path / "gt")]) == 2
    assert f"--pred-dir {tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(model_dir), "--dataset", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: no such folder" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "no_model"), "--dataset", str(tmp_path / "gt")]) == 2
    assert "no_model: no such folder" in capsys.readouterr().err


def test_zero_matched_pairs_is_exit_2(tmp_path, capsys):
    for side, name in (("pred", "a.png"), ("gt", "b.png")):
        (tmp_path / side).mkdir()
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / side / name)
    code = main(["evaluate", "--pred-dir", str(tmp_path / "pred"), "--gt-dir", str(tmp_path / "gt"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "matches a ground-truth file" in err and "1 image files" in err


def test_every_pair_unreadable_is_exit_2(tmp_path, capsys):
    for side in ("pred", "gt"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "a.png").write_bytes(b"nope")
    code = main(["evaluate", "--pred-dir", str(tmp_path / "pred"), "--gt-dir", str(tmp_path / "gt"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "a.png" in err and "no pair could be scored" in err


def test_unknown_column_lists_the_columns(model_dir, tmp_path, capsys):
    root = tmp_path / "pair"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "masks" / "a.png")
    code = main(["evaluate", "--model", str(model_dir), "--dataset", str(root), "--mask-column", "label"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no column 'label'" in err and "['image', 'mask']" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to evaluate"),
        (["--pred-dir", "p"], "go together"),
        (["--dataset", "d", "--pred-dir", "p", "--gt-dir", "g"], "not both"),
        (["--model", "m", "--pred-dir", "p", "--gt-dir", "g"], "no effect"),
    ],
)
def test_conflicting_arguments_are_exit_2(argv, message, capsys):
    assert main(["evaluate", *argv]) == 2
    assert message in capsys.readouterr().err
