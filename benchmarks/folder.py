"""A folder of photos end to end: `u2net predict DIR -o OUT` against `rembg p`, whole processes timed.

Both tools run the same weights: ours from the save_pretrained folder, rembg from that model exported with
`u2net export-onnx` and loaded as `u2net_custom` (rembg only loads custom models from its models folder, so
the file goes to a temporary U2NET_HOME). Masks (`rembg p -om`) and RGBA cutouts (`rembg p`) are timed
side by side, round after round, start-up included; the table gives the best and the median of the rounds
and the ratio of the medians. It also gives the limit: the network alone at the same batch size (on the
folder's first photos, warm, the CLI's allocator setting), as one pass on all threads and as the pipeline
runs it (the batch split into single-threaded lanes), each under OpenMP's PASSIVE (what `import u2net_hub`
sets) and ACTIVE wait policies; and the masks' end-to-end throughput against it, with start-up and without
(from a second run on a single photo: (N - 1) / (T_N - T_1)), and once more in one process, the folder and
the network alone in turn, so both see the same load on a shared machine. Last, the start-up of whole processes (import,
`--help`, the demo model built), optionally beside an older source tree (--startup-baseline SRC).

rembg runs from its own virtual environment (default /work/wt/rembg-venv/bin/rembg, or --rembg PATH; create
one with `python3 -m venv VENV && VENV/bin/pip install "rembg[cpu,cli]"`); without it, its columns are skipped
with a message. The photos are written by benchmarks/photos.py (scikit-image's photographs at camera sizes).

    python benchmarks/folder.py [--rounds 3] [--batch-size 8] [--photos DIR] [--rembg PATH] [--startup-baseline SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, load_average, one_pass_model  # noqa: E402
from photos import make_photos  # noqa: E402

DEFAULT_REMBG = "/work/wt/rembg-venv/bin/rembg"

NETWORK_ONLY = r"""
from u2net_hub import U2Net  # first, so torch loads with the OpenMP setting the CLI runs with
import glob, json, sys, time, numpy as np, torch
from concurrent.futures import ThreadPoolExecutor
from u2net_hub.acceleration import optimized_for_inference, reuse_freed_memory
from u2net_hub.pipeline import _forward, _lane_threads, cpu_lanes
from u2net_hub.processing import image_to_array, load_image
reuse_freed_memory()
model = U2Net.from_pretrained(sys.argv[1]).eval(); batch = int(sys.argv[2]); repeats = int(sys.argv[3])
network = optimized_for_inference(model)
# The folder's own first photos: on torch.randn input this network runs several times slower than on images.
photos = sorted(glob.glob(sys.argv[4] + "/*"))[:batch]
x = np.stack([image_to_array(load_image(p), model.preprocessing) for p in photos])
threads = torch.get_num_threads()
lanes = cpu_lanes(torch.device("cpu"), batch, threads)
pool = ThreadPoolExecutor(lanes, initializer=_lane_threads, initargs=(max(1, threads // lanes),))
def one_pass():
    _forward(network, torch.device("cpu"), x, False)
def in_lanes():  # what the pipeline does: the batch split, single-threaded passes at once
    for f in [pool.submit(_forward, network, torch.device("cpu"), part, False) for part in np.array_split(x, lanes)]:
        f.result()
result = {"lane_count": lanes}
for name, run in (("one_pass", one_pass), ("lanes", in_lanes)):
    for _ in range(3):
        run()
    times = []
    cpu = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter(); run(); times.append(time.perf_counter() - start)
    result[name] = {"seconds_per_batch": sorted(times)[len(times) // 2],
                    "cpu_seconds_per_image": (time.process_time() - cpu) / (repeats * batch)}
print(json.dumps(result))
"""

#: In one process, alternating: the network alone (one pass) and the folder's masks through the CLI's own
#: path (iter_predictions writing each mask with save_image), so both see the same load. Start-up excluded.
INTERLEAVED = r"""
from u2net_hub import U2Net
import glob, json, os, shutil, sys, tempfile, time, numpy as np, torch
from u2net_hub.acceleration import optimized_for_inference, reuse_freed_memory
from u2net_hub.inference import iter_predictions
from u2net_hub.pipeline import _forward, save_image
from u2net_hub.processing import image_to_array, load_image
reuse_freed_memory()
model = U2Net.from_pretrained(sys.argv[1]).eval(); batch = int(sys.argv[2]); rounds = int(sys.argv[3])
paths = sorted(glob.glob(sys.argv[4] + "/*"))
network = optimized_for_inference(model)
x = np.stack([image_to_array(load_image(p), model.preprocessing) for p in paths[:batch]])
out = tempfile.mkdtemp()
def write(index, prediction):
    save_image(prediction.mask, os.path.join(out, f"{index}.png"))
def folder():
    start = time.perf_counter()
    for _, result in iter_predictions(model, paths, batch_size=batch, sides=False, then=write):
        if isinstance(result, Exception):
            raise result
    return len(paths) / (time.perf_counter() - start)
def alone():
    start = time.perf_counter()
    for _ in range(len(paths) // batch):
        _forward(network, torch.device("cpu"), x, False)
    return batch * (len(paths) // batch) / (time.perf_counter() - start)
folder(); alone()
pairs = [(alone(), folder()) for _ in range(rounds)]
shutil.rmtree(out)
print(json.dumps(pairs))
"""

#: Start-up, each a whole process: the import, the help texts, and the demo model built and made fast.
STARTUP = {
    "import u2net_hub": "import u2net_hub",
    "u2net --help": "from u2net_hub.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "u2net predict --help": "from u2net_hub.cli import main\ntry:\n    main(['predict', '--help'])\nexcept SystemExit:\n    pass",
    "import + demo model": "from u2net_hub import U2Net\nU2Net.load(None)",
    "import + demo model + fast copy": "from u2net_hub import U2Net\nfrom u2net_hub.acceleration import "
                                       "optimized_for_inference\noptimized_for_inference(U2Net.load(None).eval())",
}


#: CPU seconds (user + system) of the last process `timed` ran.
LAST_CPU = [0.0]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict, expect: int | None = None, out: Path | None = None,
          cwd: Path | None = None) -> float:
    """Wall seconds of one whole process; fails loudly when it fails or writes the wrong number of files."""
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    seconds = time.perf_counter() - start
    LAST_CPU[0] = _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if expect is not None and out is not None:
        written = sum(1 for p in out.rglob("*.png"))
        if written != expect:
            raise SystemExit(f"{' '.join(command)} wrote {written} PNGs, expected {expect}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=None, help="folder of photos (default: a temporary one)")
    parser.add_argument("--count", type=int, default=36, help="photos to generate (default 36)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default=None, help="save_pretrained folder (default: the bundled demo model)")
    parser.add_argument("--rembg", default=DEFAULT_REMBG, help=f"rembg executable (default {DEFAULT_REMBG})")
    parser.add_argument("--startup-baseline", type=Path, default=None, metavar="SRC",
                        help="also time the start-up with the package from this source tree (e.g. a checkout of an "
                        "older commit), side by side")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more arguments for `u2net predict` (e.g. --draft, --compress-level 6)")
    args = parser.parse_args(argv)

    from u2net_hub import DEMO_MODEL

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="u2net-folder-") as tmp:
        tmp = Path(tmp)
        model = one_pass_model(args.model or DEMO_MODEL, tmp / "model")
        photos_dir = args.photos or tmp / "photos"
        photos = make_photos(photos_dir, args.count)
        single = tmp / "single"
        single.mkdir()
        shutil.copy(photos[0], single / photos[0].name)
        n = len(photos)

        rembg = shutil.which(args.rembg) or (args.rembg if Path(args.rembg).is_file() else None)
        home = tmp / "u2net_home"
        home.mkdir()
        if rembg is None:
            print(f"rembg not found at {args.rembg}: its columns are skipped "
                  "(python3 -m venv VENV && VENV/bin/pip install 'rembg[cpu,cli]'; then --rembg VENV/bin/rembg)\n")
        else:
            onnx = home / "u2net_custom.onnx"
            subprocess.run([sys.executable, "-m", "u2net_hub.cli", "export-onnx", model, str(onnx)], env=env,
                           check=True, capture_output=True)
            env = {**env, "U2NET_HOME": str(home)}
        ours = [sys.executable, "-m", "u2net_hub.cli", "predict", "--model", model, "--batch-size", str(args.batch_size),
                *args.extra]
        tasks = {
            "masks": (ours + [str(photos_dir), "-o", str(tmp / "ours_mask")], tmp / "ours_mask"),
            "cutouts": (ours + [str(photos_dir), "-o", str(tmp / "ours_rgba"), "--format", "rgba"], tmp / "ours_rgba"),
        }
        theirs = {}
        if rembg is not None:
            extras = json.dumps({"model_path": str(home / "u2net_custom.onnx")})
            base = [rembg, "p", "-m", "u2net_custom", "-x", extras]
            theirs = {
                "masks": (base + ["-om", str(photos_dir), str(tmp / "rembg_mask")], tmp / "rembg_mask"),
                "cutouts": (base + [str(photos_dir), str(tmp / "rembg_rgba")], tmp / "rembg_rgba"),
            }
        times: dict[str, list[float]] = {}
        network: dict[str, list[float]] = {}
        network_cpu: dict[str, list[float]] = {}
        cpu_times: dict[str, list[float]] = {}
        load_before = load_average()
        for round_ in range(args.rounds):
            for task in ("masks", "cutouts"):
                command, out = tasks[task]
                times.setdefault(f"ours {task}", []).append(timed(command, env, n, out))
                cpu_times.setdefault(f"ours {task}", []).append(LAST_CPU[0])
                if task in theirs:
                    command, out = theirs[task]
                    times.setdefault(f"rembg {task}", []).append(timed(command, env, n, out))
                    cpu_times.setdefault(f"rembg {task}", []).append(LAST_CPU[0])
            single_command = ours + [str(single), "-o", str(tmp / "ours_single")]
            times.setdefault("ours single", []).append(timed(single_command, env, 1, tmp / "ours_single"))
            cpu_times.setdefault("ours single", []).append(LAST_CPU[0])
            for policy in ("PASSIVE", "ACTIVE"):  # what `import u2net_hub` sets, and libgomp's spinning
                done = subprocess.run([sys.executable, "-c", NETWORK_ONLY, model, str(args.batch_size), "10",
                                       str(photos_dir)], env={**env, "OMP_WAIT_POLICY": policy},
                                      capture_output=True, text=True, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                lanes = result["lane_count"]
                for kind in ("one_pass", "lanes"):
                    key = f"{kind} {policy}"
                    network.setdefault(key, []).append(args.batch_size / result[kind]["seconds_per_batch"])
                    network_cpu.setdefault(key, []).append(result[kind]["cpu_seconds_per_image"])
            print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items())
                  + ", network alone " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in network.items()),
                  file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-c", INTERLEAVED, model, str(args.batch_size), "5", str(photos_dir)],
                              env=env, capture_output=True, text=True, check=True)
        interleaved = json.loads(done.stdout.strip().splitlines()[-1])
        startup: dict[str, dict[str, float]] = {}
        trees = {"now": None} | ({"baseline": args.startup_baseline.resolve()} if args.startup_baseline else {})
        for _ in range(3):
            for label, code in STARTUP.items():
                for tree, source in trees.items():
                    tree_env = env if source is None else {**env, "PYTHONPATH": str(source)}
                    startup.setdefault(label, {}).setdefault(tree, []).append(
                        timed([sys.executable, "-c", code], tree_env, cwd=tmp))  # not the repo: its '' path wins

    def cell(values):
        return f"{min(values):.1f} / {statistics.median(values):.1f}"

    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n} photos (scikit-image photographs at camera sizes up to 3000x2000), batch size {args.batch_size}, "
          f"{args.rounds} rounds side by side; CPU: {cpu_name()}, {os.cpu_count()} cores, "
          f"load average before/after: {load_before} / {load_average()}\n")
    cpu_median = {k: statistics.median(v) for k, v in cpu_times.items()}
    print("| task | u2net predict, s (best / median) | rembg p, s (best / median) | rembg / u2net (medians) "
          "| u2net images/s | CPU s, u2net / rembg (medians) |")
    print("|---|---|---|---|---|---|")
    for task in ("masks", "cutouts"):
        ours_times = times[f"ours {task}"]
        if f"rembg {task}" in times:
            theirs_cell = cell(times[f"rembg {task}"])
            ratio = f"x{median[f'rembg {task}'] / median[f'ours {task}']:.2f}"
        else:
            theirs_cell, ratio = "skipped", "-"
        cpu_cell = f"{cpu_median[f'ours {task}']:.1f} / " + (
            f"{cpu_median[f'rembg {task}']:.1f}" if f"rembg {task}" in cpu_median else "-")
        print(f"| {task} | {cell(ours_times)} | {theirs_cell} | {ratio} | {n / median[f'ours {task}']:.2f} | {cpu_cell} |")
    limit = statistics.median(network["one_pass PASSIVE"])
    limit_lanes = statistics.median(network["lanes PASSIVE"])
    print(f"\nnetwork alone at batch {args.batch_size} (median of rounds, images/s; CPU ms per image):")
    print("| OpenMP wait policy | one pass, all threads | the batch in %d single-threaded lanes (as the pipeline runs it) |"
          % lanes)
    print("|---|---|---|")
    for policy in ("PASSIVE", "ACTIVE"):
        row = [f"{statistics.median(network[f'{kind} {policy}']):.2f} "
               f"({1000 * statistics.median(network_cpu[f'{kind} {policy}']):.0f} ms)" for kind in ("one_pass", "lanes")]
        print(f"| {policy}{' (set by import u2net_hub)' if policy == 'PASSIVE' else ''} | {row[0]} | {row[1]} |")
    whole = n / median["ours masks"]
    steady_seconds = median["ours masks"] - median["ours single"]
    print(f"\nmasks end to end, start-up included: {whole:.2f} images/s = {100 * whole / limit:.0f}% of the network "
          f"alone (one pass), {100 * whole / limit_lanes:.0f}% of it in lanes")
    if steady_seconds > 0:
        steady = (n - 1) / steady_seconds
        print(f"masks end to end, start-up excluded ((N-1) / (T_N - T_1), T_1 = {median['ours single']:.1f} s): "
              f"{steady:.2f} images/s = {100 * steady / limit:.0f}% of the network alone (one pass), "
              f"{100 * steady / limit_lanes:.0f}% of it in lanes")
    limit_cpu = statistics.median(network_cpu["lanes PASSIVE"])
    steady_cpu = (cpu_median["ours masks"] - cpu_median["ours single"]) / (n - 1)
    if steady_cpu > 0:
        print(f"CPU time per image, start-up excluded: masks end to end {1000 * steady_cpu:.0f} ms, network alone "
              f"in lanes {1000 * limit_cpu:.0f} ms = {100 * limit_cpu / steady_cpu:.0f}% (the share of the limit an "
              "idle machine allows)")
    shares = sorted(folder / alone for alone, folder in interleaved)
    print(f"masks end to end in one process, alternating with the network alone (one pass), start-up excluded: "
          f"{statistics.median(f for _, f in interleaved):.2f} vs {statistics.median(a for a, _ in interleaved):.2f} "
          f"images/s; per pair {100 * shares[0]:.0f}-{100 * shares[-1]:.0f}%, median "
          f"{100 * statistics.median(shares):.0f}% of the network alone")
    print("\nstart-up, whole processes, median of 3 (s):")
    print("| | " + " | ".join(trees) + " |")
    print("|---|" + "---|" * len(trees))
    for label, by_tree in startup.items():
        print(f"| `{label}` | " + " | ".join(f"{statistics.median(by_tree[t]):.2f}" for t in trees) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
