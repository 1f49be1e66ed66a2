"""`u2net predict --dataset` throughput: one process vs N processes under `accelerate launch`, side by side.

Writes a local imagefolder of synthetic JPEG photos (the project's synthetic
scenes, ``--images`` of ``--image-size``), then runs the real command on it,
alternating the process counts round after round (so a machine shared with
other work slows every configuration alike), each into a fresh output folder.
The figure is the command's own summary: rows predicted / wall time from the
first shard to the last (process start-up, model loading and the dataset
index are not in it). A configuration is PROCESSESxTHREADS (``OMP_NUM_THREADS``
per process; on CPU the default splits the cores: 1x2 and 2x1 on 2 cores; a trailing
``p``, as in 1x2p, also sets ``OMP_WAIT_POLICY=PASSIVE``). On
GPU every process gets a GPU of its own, or, with more processes than GPUs,
they share them.

Examples::

    python benchmarks/dataset_scale.py --configs 1x2 1x2p 1x1 2x1 --images 64 --rounds 3   # CPU, 2 cores
    python benchmarks/dataset_scale.py --device cuda --configs 1x4 2x4 4x4 --images 4000 --model full
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, gpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) rows in ([\d.]+) s = ([\d.]+) images/s; world size: (\d+)")


def make_images(folder: Path, count: int, size: tuple[int, int]) -> None:
    from u2net_hub.data import render_synthetic_sample

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        image, _ = render_synthetic_sample(i, size=max(size), seed=7)
        image.resize(size).save(folder / f"{i:05d}.jpg", quality=90)
        lines.append(json.dumps({"file_name": f"{i:05d}.jpg", "id": i}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def make_model(kind: str, folder: Path) -> str:
    if kind == "demo":
        from u2net_hub import DEMO_MODEL

        return DEMO_MODEL
    if Path(kind).is_dir():
        return kind
    from u2net_hub import U2Net

    U2Net(variant=kind).save_pretrained(folder)  # random weights: the speed is the same as trained ones
    return str(folder)


def run(config: str, args, data: Path, model: str, out: Path) -> dict:
    passive = config.endswith("p")
    processes, threads = (int(v) for v in config.rstrip("p").split("x"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))
    if passive:  # idle OpenMP threads sleep instead of spinning (matters when the cores are shared)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    predict = ["predict", "--dataset", str(data), "--output-dataset", str(out), "--model", model,
               "--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size)]
    if processes == 1:
        cmd = [sys.executable, "-m", "u2net_hub", *predict] + (["--device", args.device] if args.device else [])
    else:
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        cmd = [accelerate, "launch", "--num_processes", str(processes), "--num_machines", "1",
               "--num_cpu_threads_per_process", str(threads),
               "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", "-m", "u2net_hub", *predict]
        if args.device == "cpu":
            env["ACCELERATE_USE_CPU"] = "1"
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    found = SUMMARY.search(result.stdout)
    if result.returncode != 0 or not found:
        sys.exit(f"run with {processes} process(es) failed:\n{(result.stdout + result.stderr)[-3000:]}")
    rows, seconds, rate, world = found.groups()
    assert int(world) == processes, f"asked for {processes} processes, the command ran {world}"
    return {"config": config, "processes": processes, "threads": threads, "rows": int(rows), "seconds": float(seconds), "images_per_second": float(rate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=None,
                        help="PROCESSESxTHREADS[p] each (default: 1xCORES and 2x(CORES/2); p: OMP_WAIT_POLICY=PASSIVE)")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--image-size", default="640x480", help="WxH of the JPEGs (default 640x480)")
    parser.add_argument("--model", default="demo", help="demo (bundled tiny), full, tiny, or a model folder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    cores = os.cpu_count() or 1
    configs = args.configs or [f"1x{cores}", f"2x{max(1, cores // 2)}"]

    work = Path(tempfile.mkdtemp(prefix="u2net-scale-"))
    try:
        data = work / "images"
        make_images(data, args.images, (width, height))
        model = make_model(args.model, work / "model")
        results: dict[str, list[dict]] = {c: [] for c in configs}
        for r in range(args.rounds):
            for c in configs:
                out = work / f"out-{c}-{r}"
                results[c].append(run(c, args, data, model, out))
                shutil.rmtree(out)
                print(f"round {r + 1}: {c}: {results[c][-1]['images_per_second']:.1f} images/s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    where = cpu_name() if args.device == "cpu" else f"{args.device} ({gpu_name()})"
    print(f"\n{args.images} images {width}x{height}, model {args.model}, batch {args.batch_size}, "
          f"shard {args.shard_size}, {args.rounds} rounds alternating; {where}, {cores} CPU cores")
    print(f"| processes x threads | images/s (median) | best | vs {configs[0]} |")
    print("| --- | --- | --- | --- |")
    base = statistics.median(r["images_per_second"] for r in results[configs[0]])
    summary = []
    for c in configs:
        rates = [r["images_per_second"] for r in results[c]]
        median = statistics.median(rates)
        summary.append({"config": c, "median": median, "best": max(rates), "runs": rates})
        print(f"| {c} | {median:.1f} | {max(rates):.1f} | {median / base:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": where, "args": vars(args), "results": summary}, indent=2))


if __name__ == "__main__":
    main()
