"""`u2net predict --dataset`: real `datasets`, real Parquet, real `accelerate launch` processes, a real SIGKILL."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image, ImageDraw

from u2net_hub import U2Net, predict
from u2net_hub.cli import main
from u2net_hub.datasets_io import MANIFEST_NAME, predict_dataset, read_shard_record, shard_path

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")
ROWS = 20
BAD_ROW = 5


def _env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("ACCELERATE_USE_CPU", None)
    env.update(extra)
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _u2net(args: list[str], processes: int = 1, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m u2net_hub predict ...`, or the same under `accelerate launch` with 2 CPU ranks."""
    if processes == 1:
        cmd, env = [sys.executable, "-m", "u2net_hub", "predict"], _env()
    else:
        cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "u2net_hub", "predict"]
        env = _env(ACCELERATE_USE_CPU="1")
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)


def _here(args: list[str], capsys) -> tuple[int, str, str]:
    """`u2net predict ...` in this process (one process, no launcher): exit status, stdout, stderr."""
    capsys.readouterr()
    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ok(result) -> str:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


def _scene(i: int) -> Image.Image:
    rng = np.random.default_rng(i)
    width, height = 40 + 4 * (i % 5), 30 + 6 * (i % 3)  # sizes differ: masks must come back at each one's size
    image = Image.fromarray(rng.integers(0, 120, (height, width, 3), dtype=np.uint8))
    ImageDraw.Draw(image).ellipse([width // 4, height // 4, 3 * width // 4, 3 * height // 4], fill=(230, 200, 40))
    return image


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory) -> Path:
    """20 JPEGs with a metadata.jsonl carrying extra columns; row 5's file is not an image."""
    root = tmp_path_factory.mktemp("shop")
    lines = []
    for i in range(ROWS):
        if i == BAD_ROW:
            (root / f"{i:03d}.jpg").write_bytes(b"this is not a JPEG")
        else:
            _scene(i).save(root / f"{i:03d}.jpg", quality=95)
        lines.append({"file_name": f"{i:03d}.jpg", "sku": f"SKU-{i:04d}", "price": i * 1.5})
    (root / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def _masks(out: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(out), split="train")


def _arrays(dataset) -> list[np.ndarray | None]:
    return [None if m is None else np.asarray(m, dtype=np.int16) for m in dataset["mask"]]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, imagefolder, tiny32_folder) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("one") / "masks"
    output = _ok(_u2net(["--dataset", str(imagefolder), "--output-dataset", str(out), "--model", str(tiny32_folder),
                         "--shard-size", "3", "--batch-size", "2"]))
    return out, output


def test_one_process_keeps_every_column_and_records_the_unreadable_row(one_process, imagefolder, tiny32_folder):
    out, output = one_process
    assert "20 rows in 7 shards (1 with an error)" in output and "world size: 1" in output
    assert "images/s" in output
    rows = _masks(out)
    assert rows.column_names == ["sku", "price", "mask", "error"]  # the image column is left out by default
    assert rows["sku"] == [f"SKU-{i:04d}" for i in range(ROWS)]  # every row once, in the input's order
    assert rows["price"] == [i * 1.5 for i in range(ROWS)]
    assert isinstance(rows.features["mask"], datasets.Image)
    for i, (mask, error) in enumerate(zip(rows["mask"], rows["error"])):
        if i == BAD_ROW:
            assert mask is None and error.startswith("row 5 (") and "005.jpg): not an image file" in error
        else:
            assert error is None and mask.mode == "L" and mask.size == _scene(i).size
    # Row 0's mask is the one predict() gives for its image in its batch (rows 0 and 1 of shard 0).
    model = U2Net.from_pretrained(str(tiny32_folder))
    images = [Image.open(imagefolder / f"{i:03d}.jpg") for i in (0, 1)]
    expected = [np.asarray(p.mask, dtype=np.int16) for p in predict(model, images, batch_size=2, sides=False)]
    assert np.abs(np.asarray(rows[0]["mask"], dtype=np.int16) - expected[0]).max() <= 1
    assert np.abs(np.asarray(rows[1]["mask"], dtype=np.int16) - expected[1]).max() <= 1
    card = (out / "README.md").read_text()
    assert "complete: 7 shards, 20 rows, 1 of them" in card and "| shard_size | `3` |" in card
    assert [read_shard_record(shard_path(out, i))["rows"] for i in range(7)] == [3, 3, 3, 3, 3, 3, 2]


def test_two_processes_split_the_shards_and_give_the_same_masks(one_process, imagefolder, tiny32_folder, tmp_path):
    out1, _ = one_process
    out2 = tmp_path / "masks"
    output = _ok(_u2net(["--dataset", str(imagefolder), "--output-dataset", str(out2), "--model", str(tiny32_folder),
                         "--shard-size", "3", "--batch-size", "2"], processes=2))
    assert "world size: 2" in output
    logs = [json.loads((out2 / ".u2net" / "logs" / f"rank-{r}-of-2.json").read_text()) for r in (0, 1)]
    assert [log["world_size"] for log in logs] == [2, 2]
    assert [log["shards_written"] for log in logs] == [4, 3]  # shards 0,2,4,6 and 1,3,5
    records = [read_shard_record(shard_path(out2, i)) for i in range(7)]
    assert [r["rank"] for r in records] == [0, 1, 0, 1, 0, 1, 0]
    assert {r["world_size"] for r in records} == {2}
    one, two = _masks(out1), _masks(out2)
    assert two["sku"] == one["sku"] and two["error"] == one["error"]
    for a, b in zip(_arrays(one), _arrays(two)):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_a_rerun_skips_finished_shards_and_other_settings_are_refused(one_process, imagefolder, tiny32_folder, capsys):
    out, _ = one_process
    before = {p.name: p.stat().st_mtime_ns for p in (out / "data").iterdir()}
    common = ["--dataset", str(imagefolder), "--output-dataset", str(out), "--model", str(tiny32_folder),
              "--shard-size", "3"]
    code, again, _ = _here(common + ["--batch-size", "2"], capsys)
    assert code == 0 and "0 shards written, 7 already done" in again
    code, _, refused = _here(common + ["--batch-size", "4"], capsys)
    assert code == 2
    assert "other settings" in refused and "batch_size: 2 -> 4" in refused
    assert {p.name: p.stat().st_mtime_ns for p in (out / "data").iterdir()} == before
    assert json.loads((out / MANIFEST_NAME).read_text())["settings"]["batch_size"] == 2


def test_push_to_hub_offline_keeps_the_dataset_and_says_how_to_retry(one_process, imagefolder, tiny32_folder, capsys):
    out, _ = one_process
    code, _, err = _here(["--dataset", str(imagefolder), "--output-dataset", str(out), "--model", str(tiny32_folder),
                          "--shard-size", "3", "--batch-size", "2", "--push-to-hub", "me/shop-masks"], capsys)
    assert code == 1
    assert "offline mode" in err and f"hf upload me/shop-masks {out} --repo-type dataset" in err
    assert len(_masks(out)) == ROWS


def test_sigkill_at_any_moment_then_rerun_gives_every_row_exactly_once(imagefolder, tiny32_folder, tmp_path, capsys):
    out = tmp_path / "masks"
    args = ["--dataset", str(imagefolder), "--output-dataset", str(out), "--model", str(tiny32_folder),
            "--shard-size", "1", "--batch-size", "1"]
    process = subprocess.Popen([sys.executable, "-m", "u2net_hub", "predict", *args], cwd=REPO_ROOT, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if len(list((out / "data").glob("shard-*.parquet"))) >= 3:
                break
            time.sleep(0.01)
        assert process.poll() is None, f"the run ended before the kill: {process.stderr.read()[-3000:]}"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.stderr.close()
    done = len(list((out / "data").glob("shard-*.parquet")))
    assert 3 <= done < ROWS
    # What a kill in the middle of a write leaves: a temporary file, never a final name. It must not count.
    (out / "data" / f".shard-{ROWS - 1:05d}.parquet.tmp-99999").write_bytes(b"PAR1 half a shard")
    code, output, _ = _here(args, capsys)
    assert code == 0
    assert f"{ROWS - done} shards written, {done} already done" in output
    rows = _masks(out)
    assert rows["sku"] == [f"SKU-{i:04d}" for i in range(ROWS)]
    assert [e is None for e in rows["error"]] == [i != BAD_ROW for i in range(ROWS)]
    assert all(m is not None for i, m in enumerate(rows["mask"]) if i != BAD_ROW)
    assert not list((out / "data").glob(".*"))  # the leftover was cleared once its shard was written


def _hub_style_parquet(root: Path) -> Path:
    """A local clone of a Hub dataset repo: data/train-*.parquet with image bytes, a ground-truth mask and ids."""
    def png(image: Image.Image) -> dict:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    features = datasets.Features({"id": datasets.Value("int64"), "image": datasets.Image(), "mask": datasets.Image(),
                                  "caption": datasets.Value("string")})
    rows = {"id": [], "image": [], "mask": [], "caption": []}
    for i in range(7):
        image = _scene(i)
        rows["id"].append(1000 + i)
        rows["image"].append(png(image))
        rows["mask"].append(png(image.convert("L")))
        rows["caption"].append(f"scene {i}")
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


def test_a_hub_style_dataset_keeps_its_columns_and_a_stream_gives_the_same_masks(tmp_path, tiny32_folder, capsys):
    source = _hub_style_parquet(tmp_path / "clone")
    out = tmp_path / "from-folder"
    code, _, err = _here(["--dataset", str(source), "--output-dataset", str(out), "--model", str(tiny32_folder),
                          "--shard-size", "4", "--batch-size", "3", "--keep-image"], capsys)
    assert code == 0, err
    rows = _masks(out)
    # Its own `mask` (the ground truth) is kept as input_mask next to the predicted one.
    assert rows.column_names == ["id", "image", "input_mask", "caption", "mask", "error"]
    assert rows["id"] == [1000 + i for i in range(7)] and rows["caption"][3] == "scene 3"
    assert np.array_equal(np.asarray(rows[2]["image"]), np.asarray(_scene(2)))
    assert np.array_equal(np.asarray(rows[2]["input_mask"]), np.asarray(_scene(2).convert("L")))

    # The same data as a stream (what a Hub id gives): read through once, same shards, same masks.
    stream = datasets.load_dataset("parquet", data_files=str(source / "data" / "*.parquet"), split="train",
                                   streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    result = predict_dataset(str(tiny32_folder), stream, tmp_path / "from-stream", shard_size=4, batch_size=3,
                             keep_image=True, progress=False)
    assert (result.num_rows, result.num_shards, result.world_size) == (7, 2, 1)
    streamed = _masks(tmp_path / "from-stream")
    assert streamed["id"] == rows["id"]
    for a, b in zip(_arrays(rows), _arrays(streamed)):
        assert np.abs(a - b).max() <= 1


def test_usage_errors_are_one_line(imagefolder, tmp_path, tiny32_folder, capsys):
    code, _, err = _here(["--dataset", str(imagefolder), "--output-dataset", str(tmp_path / "o"), "--model",
                          str(tiny32_folder), "--image-column", "picture"], capsys)
    assert code == 2 and "no column 'picture'" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, _, err = _here(["--dataset", str(imagefolder), "--output-dataset", str(tmp_path / "busy"), "--model",
                          str(tiny32_folder)], capsys)
    assert code == 2 and "not written by this command" in err
    code, _, err = _here(["--dataset", str(imagefolder), "--model", str(tiny32_folder)], capsys)
    assert code == 2 and "--dataset and --output-dataset go together" in err
    code, _, err = _here(["--dataset", "nobody/nothing", "--output-dataset", str(tmp_path / "o2")], capsys)
    assert code == 2 and "cannot load Hub dataset 'nobody/nothing'" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_two_outputs_of_the_same_name_load_their_own_rows(tmp_path, tiny32_folder):
    """`datasets` caches a local folder by its name and config: each OUT must still load its own files."""
    source = _hub_style_parquet(tmp_path / "clone")
    predict_dataset(str(tiny32_folder), str(source), tmp_path / "a" / "masks", shard_size=4, progress=False)
    predict_dataset(str(tiny32_folder), str(source), tmp_path / "b" / "masks", shard_size=4, threshold=0.5,
                    progress=False)
    soft = _arrays(_masks(tmp_path / "a" / "masks"))
    hard = _arrays(_masks(tmp_path / "b" / "masks"))
    assert all(set(np.unique(m)) <= {0, 255} for m in hard)
    assert any(len(np.unique(m)) > 2 for m in soft)
