"""Inference speed and memory: our default path vs the original's plain fp32 eager model vs onnxruntime.

Three ways to run the same weights, each measured in a fresh subprocess so
that its peak memory is its own:

- ``ours``: what ``model.predict`` runs -- ``optimized_for_inference(model)``
  (BatchNorm folded, conv+ReLU fused on CPU, channels_last, bf16 weights where
  the CPU/GPU has it) under ``torch.inference_mode``, in a process that called
  ``reuse_freed_memory()`` as the CLI, the Space and train.py do;
- ``baseline``: what the original repository runs -- the contiguous float32
  eager model, no folding (under ``torch.no_grad``, which the original test
  script omits; without it the baseline would be slower still);
- ``onnxruntime``: the file written by ``u2net export-onnx`` from the same
  weights (float32, all graph optimisations on);
- ``compiled`` (only when asked for): ``ours`` wrapped in ``torch.compile``
  (``predict(..., compile=True)``, ``u2net predict --compile``); its warm-up
  iterations include the compilation.

Every configuration gets ``--warmup`` untimed iterations first, then
``--iters`` timed ones; the table shows the median. Pre-processing is not
timed (the input is a random, already normalised batch). GFLOP/s counts
multiply and add as two FLOPs (full 117.2 G, tiny 39.5 G per 320x320 image,
scaled by area for other sizes). Peak memory is the worker process's resident
set high-water mark (``ru_maxrss``, read by a bare launcher process), so it includes the
Python interpreter and the libraries it imported (torch for the PyTorch paths,
only onnxruntime + numpy for onnxruntime); on CUDA the table adds PyTorch's
peak allocated device memory.

``--predict-memory`` instead measures the peak RSS of ``u2net predict`` (the
real CLI, a subprocess) on a synthetic 6000x4000 JPEG photo; target <= 1.5 GB.

Examples::

    python benchmarks/inference.py --iters 20
    python benchmarks/inference.py --variants tiny --batch-size 8 --threads 2
    python benchmarks/inference.py --device cuda --batch-size 16
    python benchmarks/inference.py --predict-memory
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, gpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOPS_320 = {"full": 117.2e9, "tiny": 39.5e9}  # per image at 320x320, multiply-add = 2 FLOPs
PATHS = ("ours", "baseline", "onnxruntime", "compiled")
DEFAULT_PATHS = ("ours", "baseline", "onnxruntime")
PREDICT_MEMORY_TARGET_MB = 1500.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ worker side


def _timed(step, warmup: int, iters: int, sync=lambda: None, record: dict | None = None) -> list[float]:
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    if record is not None:
        record["warmup_s"] = time.perf_counter() - start
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def _worker_torch(job: dict) -> dict:
    import torch

    from u2net_hub import U2Net
    from u2net_hub.acceleration import optimized_for_inference, reuse_freed_memory

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    model = U2Net.from_pretrained(job["model_dir"]).to(device).eval()
    x = torch.randn(job["batch_size"], 3, job["size"], job["size"], generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if job["path"] in ("ours", "compiled"):
        reuse_freed_memory()  # as the CLI, the Space and train.py do at start-up
        network = optimized_for_inference(model, compile=job["path"] == "compiled")
        run_dtype = network.dtype

        def step():
            with torch.inference_mode():
                torch.sigmoid(network(x).logits.float())
    else:
        run_dtype = None

        def step():
            with torch.no_grad():
                torch.sigmoid(model(x).logits)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    record: dict = {}
    times = _timed(step, job["warmup"], job["iters"], sync, record)
    result = {
        "times": times,
        "warmup_s": record["warmup_s"],
        "threads": torch.get_num_threads(),
        "precision": str(run_dtype).replace("torch.", "") if run_dtype else "float32",
    }
    if device.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _worker_onnxruntime(job: dict) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if job["threads"]:
        options.intra_op_num_threads = job["threads"]
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if job["device"].startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(job["onnx_path"], options, providers=providers)
    x = np.random.default_rng(0).standard_normal((job["batch_size"], 3, job["size"], job["size"]), dtype=np.float32)
    feeds = {session.get_inputs()[0].name: x}
    times = _timed(lambda: session.run(None, feeds), job["warmup"], job["iters"])
    return {"times": times, "threads": options.intra_op_num_threads or os.cpu_count(), "precision": "float32",
            "providers": session.get_providers()}


def worker_main(job_json: str) -> None:
    job = json.loads(job_json)
    run = _worker_onnxruntime if job["path"] == "onnxruntime" else _worker_torch
    print("RESULT " + json.dumps(run(job)), flush=True)


# ------------------------------------------------------------------ parent side


# A lean launcher between us and the measured process: on Linux a child's ru_maxrss starts from the
# RSS of the process that exec'd it, so launching straight from this (torch-laden) parent would report
# our own memory. The launcher is a bare interpreter; it reports the high-water mark of its one child.
_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "status = subprocess.call(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(status)\n"
)


def run_measured(command: list[str], env: dict | None = None) -> tuple[int, str, float]:
    """Run `command`; return (exit status, stdout, peak RSS in MB of that process alone)."""
    proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *command], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    *messages, peak_kb = proc.stderr.rstrip().splitlines() or ["0"]
    if messages and proc.returncode != 0:
        log("\n".join(messages[-20:]))
    return proc.returncode, proc.stdout, int(peak_kb) / 1024  # Linux reports kilobytes


def prepare_weights(variant: str, folder: Path, model_dir: str | None, seed: int = 0) -> Path:
    """A save_pretrained folder to benchmark: the given one, or randomly initialised weights of `variant`."""
    if model_dir:
        return Path(model_dir)
    import torch

    from u2net_hub import U2Net

    torch.manual_seed(seed)
    target = folder / f"{variant}-random"
    U2Net(variant=variant).save_pretrained(target)
    return target


def _machine() -> str:
    import onnxruntime
    import torch

    from u2net_hub.acceleration import cpu_supports_bf16

    gpu = f", GPU {gpu_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu_name()}, {os.cpu_count()} cores, bf16 {'yes' if cpu_supports_bf16() else 'no'}{gpu}; "
            f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}")


def benchmark(args) -> list[dict]:
    from u2net_hub.export import export_onnx

    rows = []
    with tempfile.TemporaryDirectory(prefix="u2net-bench-") as tmp:
        tmp = Path(tmp)
        for variant in args.variants:
            model_dir = prepare_weights(variant, tmp, args.model if len(args.variants) == 1 else None)
            onnx_path = tmp / f"{variant}.onnx"
            if "onnxruntime" in args.paths:
                log(f"[{variant}] exporting to ONNX (not timed) ...")
                export = export_onnx(model_dir, onnx_path, check=True, check_shape=(1, 3, 97, 131))
                log(f"[{variant}] onnxruntime vs PyTorch max abs difference {export.max_abs_error:.1e}")
            # Writing the model and the ONNX file leaves ~200 MB of dirty pages; flush them now so the kernel's
            # writeback does not steal one of the two cores from whichever path is timed first.
            os.sync()
            time.sleep(1.0)
            for path in args.paths:
                job = {
                    "path": path, "model_dir": str(model_dir), "onnx_path": str(onnx_path), "device": args.device,
                    "batch_size": args.batch_size, "size": args.size, "iters": args.iters, "warmup": args.warmup,
                    "threads": args.threads,
                }
                log(f"[{variant}] {path}: {args.warmup} warm-up + {args.iters} timed iterations, batch {args.batch_size} ...")
                status, stdout, peak_mb = run_measured([sys.executable, __file__, "--worker", json.dumps(job)])
                row = {"variant": variant, "path": path, "peak_rss_mb": peak_mb}
                lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
                if status != 0 or not lines:
                    row["error"] = f"worker failed with exit status {status}"
                    log(f"[{variant}] {path}: {row['error']}")
                else:
                    row.update(json.loads(lines[-1][len("RESULT "):]))
                    median = statistics.median(row["times"])
                    images = args.batch_size / median
                    flops = FLOPS_320[variant] * (args.size / 320) ** 2
                    row.update(median_ms=median * 1e3, min_ms=min(row["times"]) * 1e3, images_per_s=images,
                               gflops=images * flops / 1e9)
                rows.append(row)
    return rows


def _ratio(row: dict, other: dict | None) -> str:
    if other is None or "images_per_s" not in row or "images_per_s" not in other:
        return "n/a"
    return f"{row['images_per_s'] / other['images_per_s']:.2f}x"


def render_table(rows: list[dict], args) -> str:
    cuda = args.device.startswith("cuda")
    header = ["variant", "path", "precision", "ms / batch (median)", "best ms", "images/s", "GFLOP/s", "peak RSS MB",
              "× baseline", "× onnxruntime"]
    if cuda:
        header.insert(8, "peak CUDA MB")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        same = {r["path"]: r for r in rows if r["variant"] == row["variant"]}
        if "error" in row:
            cells = [row["variant"], row["path"], "-", row["error"], "-", "-", "-", f"{row['peak_rss_mb']:.0f}", "-", "-"]
            if cuda:
                cells.insert(8, "-")
        else:
            cells = [row["variant"], row["path"], row["precision"], f"{row['median_ms']:.1f}", f"{row['min_ms']:.1f}",
                     f"{row['images_per_s']:.2f}", f"{row['gflops']:.0f}", f"{row['peak_rss_mb']:.0f}",
                     _ratio(row, same.get("baseline")), _ratio(row, same.get("onnxruntime"))]
            if cuda:
                cells.insert(8, f"{row['cuda_peak_mb']:.0f}" if "cuda_peak_mb" in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------ predict memory


def synthetic_photo(path: Path, width: int, height: int) -> None:
    """A large JPEG with photographic content: a real skimage photo tiled and scaled, plus a gradient and noise."""
    import numpy as np
    from PIL import Image
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(base, dtype=np.float32)
    gradient = np.linspace(-30, 30, width, dtype=np.float32)[None, :, None]
    noise = np.random.default_rng(0).normal(0, 6, (height, width, 1)).astype(np.float32)
    Image.fromarray(np.clip(array + gradient + noise, 0, 255).astype(np.uint8)).save(path, quality=90)


def predict_memory(args) -> int:
    width, height = args.predict_size
    failures = 0
    with tempfile.TemporaryDirectory(prefix="u2net-predict-mem-") as tmp:
        tmp = Path(tmp)
        photo = tmp / f"photo_{width}x{height}.jpg"
        log(f"writing a synthetic {width}x{height} photo ...")
        synthetic_photo(photo, width, height)
        print(f"u2net predict on a {width}x{height} JPEG ({photo.stat().st_size / 1e6:.1f} MB); peak RSS of the CLI process")
        print(f"machine: {_machine()}\n")
        print("| model | exit | wall s | peak RSS MB | target |")
        print("|---|---|---|---|---|")
        targets = [("--model", args.model)] if args.model else [(None, v) for v in args.variants]
        for flag, what in targets:
            model_dir = Path(what) if flag else prepare_weights(what, tmp, None)
            label = what if flag else f"{what} (random weights)"
            command = [sys.executable, "-m", "u2net_hub.cli", "predict", str(photo), "--model", str(model_dir),
                       "--output-dir", str(tmp / "out"), "--device", args.device]
            start = time.perf_counter()
            status, _, peak_mb = run_measured(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            wall = time.perf_counter() - start
            ok = status == 0 and peak_mb <= PREDICT_MEMORY_TARGET_MB
            failures += not ok
            verdict = f"{'ok' if ok else 'FAIL'} (<= {PREDICT_MEMORY_TARGET_MB:.0f})"
            print(f"| {label} | {status} | {wall:.1f} | {peak_mb:.0f} | {verdict} |", flush=True)
    return 1 if failures else 0


# ---------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="full,tiny", help="comma-separated: full, tiny (default both)")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                        help=f"comma-separated subset of {','.join(PATHS)} (default: all but compiled)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--size", type=int, default=320, help="square input size (default 320)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the libraries' own)")
    parser.add_argument("--model", default=None,
                        help="benchmark this save_pretrained folder (with one --variants entry) instead of random weights")
    parser.add_argument("--json", default=None, help="also write the raw results to this JSON file")
    parser.add_argument("--predict-memory", action="store_true",
                        help="measure the peak RSS of `u2net predict` on a synthetic 6000x4000 photo instead")
    parser.add_argument("--predict-size", default="6000x4000", help="WIDTHxHEIGHT of the --predict-memory photo")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return args
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [v for v in args.variants if v not in FLOPS_320] + [p for p in args.paths if p not in PATHS]
    if bad:
        parser.error(f"unknown variant(s)/path(s) {bad}; variants: {sorted(FLOPS_320)}, paths: {list(PATHS)}")
    if min(args.batch_size, args.iters, args.size) < 1 or args.warmup < 0:
        parser.error("--batch-size, --iters and --size must be positive, --warmup >= 0")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        parser.error("--device must be cpu or cuda")
    try:
        args.predict_size = tuple(int(v) for v in args.predict_size.lower().split("x"))
        assert len(args.predict_size) == 2 and min(args.predict_size) > 0
    except (ValueError, AssertionError):
        parser.error(f"--predict-size must look like 6000x4000, got {args.predict_size!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker_main(args.worker)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.predict_memory:
        return predict_memory(args)
    if args.model and len(args.variants) != 1:
        raise SystemExit("--model needs exactly one --variants entry (the model's variant)")
    rows = benchmark(args)
    print(f"\nU²-Net inference, {args.size}x{args.size}, batch {args.batch_size}, device {args.device}, "
          f"threads {args.threads or 'default'}, median of {args.iters} timed iterations after {args.warmup} warm-up")
    print(f"machine: {_machine()}\n")
    print(render_table(rows, args))
    print("\nimages/s and GFLOP/s from the median; × baseline / × onnxruntime: this row's images/s divided by "
          "that path's (higher is faster).")
    try:
        print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()} on {os.cpu_count()} cores")
    except OSError:
        pass
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "worker"},
                                               "machine": _machine(), "rows": rows}, indent=2))
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
