"""Load test of the Space: N concurrent `/segment` requests through gradio_client.

Launches `space/app.py` in a subprocess (offline, on a free port) or connects
to a running app with ``--url``, sends one warm-up request, then fires
``--requests`` requests at once from ``--concurrency`` client threads and
reports failures (the target is 0), latency percentiles and throughput.

    .venv/bin/python benchmarks/space_load.py                    # launch with the demo model (or a tiny one)
    .venv/bin/python benchmarks/space_load.py --requests 50 --server-concurrency 2
    .venv/bin/python benchmarks/space_load.py --url http://127.0.0.1:7860/ --model u2net-hub/u2net
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, load_average  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO_ROOT / "space" / "examples" / "coffee.jpg"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app; without it the app is launched here")
    parser.add_argument("--model", help="model for every request (default: the bundled demo, else a random tiny folder)")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="photo sent by every request")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50, help="client threads (50 = all requests at once)")
    parser.add_argument("--server-concurrency", type=int, default=None, help="U2NET_SPACE_CONCURRENCY of a launched app")
    parser.add_argument("--threshold", type=float, default=0.0)
    parser.add_argument("--background", default="transparent")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--json", help="also write the report here")
    return parser.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _default_model(workdir: Path) -> str:
    from u2net_hub import DEMO_MODEL, U2Net

    if Path(DEMO_MODEL, "model.safetensors").is_file():
        return str(DEMO_MODEL)
    folder = workdir / "tiny-random"
    U2Net(variant="tiny").save_pretrained(folder)  # same cost per request as trained tiny weights
    print(f"the bundled demo model is missing; using random tiny weights in {folder}")
    return str(folder)


def launch(model: str, workdir: Path, server_concurrency: int | None, timeout_s: float):
    port = _free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_EXAMPLES_CACHE": str(workdir / "examples-cache"),
        "U2NET_MODEL": model,
    }
    if server_concurrency:
        env["U2NET_SPACE_CONCURRENCY"] = str(server_concurrency)
    log = open(workdir / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "space" / "app.py")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited ({process.returncode}); see {workdir / 'server.log'}")
        try:
            with urllib.request.urlopen(url + "config", timeout=5):
                return process, url, log
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"the app did not start within {timeout_s:.0f} s; see {workdir / 'server.log'}")


def run_load(url: str, model: str, args: argparse.Namespace) -> dict:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)

    def one() -> tuple[float, float | None]:
        started = time.perf_counter()
        result = client.predict(
            handle_file(args.image), model, args.threshold, False, args.background, "#2e86de", api_name="/segment"
        )
        match = re.search(r"Inference\*\* (\d+) ms", result[4])
        return time.perf_counter() - started, float(match.group(1)) if match else None

    warm_seconds, _ = one()  # loads the model and warms the caches; not counted
    latencies, inference_ms, failures = [], [], []
    start_gate = threading.Barrier(min(args.concurrency, args.requests))

    def gated() -> tuple[float, float | None]:
        try:
            start_gate.wait(timeout=60)
        except threading.BrokenBarrierError:
            pass
        return one()

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        futures = [pool.submit(gated) for _ in range(args.requests)]
        for future in tqdm(as_completed(futures), total=len(futures), desc="requests", unit="req"):
            try:
                seconds, server_ms = future.result()
                latencies.append(seconds)
                if server_ms is not None:
                    inference_ms.append(server_ms)
            except Exception as error:  # every failure is counted and shown, none stops the run
                failures.append(f"{type(error).__name__}: {error}")
    wall = time.perf_counter() - began
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "url": url,
        "model": model,
        "image": args.image,
        "requests": args.requests,
        "client_concurrency": args.concurrency,
        "failures": len(failures),
        "failure_messages": failures[:5],
        "warmup_s": round(warm_seconds, 3),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 3),
        "latency_p50_s": round(float(np.percentile(lat, 50)), 3),
        "latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        "latency_max_s": round(float(np.max(lat)), 3),
        "server_inference_p50_ms": round(float(np.median(inference_ms)), 1) if inference_ms else None,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        raise SystemExit("--requests and --concurrency must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="u2net-space-load-"))
    process = log = None
    try:
        if args.url:
            url = args.url
            model = args.model
            if not model:
                raise SystemExit("with --url, give --model as the app knows it (a Hub id or the server's folder)")
        else:
            model = args.model or _default_model(workdir)
            process, url, log = launch(model, workdir, args.server_concurrency, args.startup_timeout)
            print(f"launched the app at {url} (log: {workdir / 'server.log'})")
        report = run_load(url, model, args)
        report["machine"] = f"{cpu_name()}, {os.cpu_count()} cores, load average {load_average()}"
        if args.server_concurrency:
            report["server_concurrency"] = args.server_concurrency
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if log is not None:
            log.close()
    width = max(len(key) for key in report)
    for key, value in report.items():
        if key != "failure_messages":
            print(f"{key:<{width}}  {value}")
    for message in report["failure_messages"]:
        print(f"  failure: {message}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
