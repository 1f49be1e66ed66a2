"""A folder of photos end to end on a GPU: does `u2net predict DIR -o OUT --device cuda` keep the GPU busy?

For each model (the bundled tiny demo model, and the full U²-Net with random weights, whose network costs
~50x more), it times whole `u2net predict` processes on the folder (N photos) and on its first photo alone,
so that (N - 1) / (T_N - T_1) is the folder's throughput without start-up; and the network alone at the same
batch size on the same device (the fast path, warm, inputs already on the GPU as the pipeline leaves them).
The ratio of the two says how much of the GPU the pipeline uses: near 1 the network is the limit, far below
it the CPU side (decoding, resizing, encoding) is. Masks and RGBA cutouts are both timed; masks may decode
JPEGs in draft mode (--draft), which is timed as its own row.

    python benchmarks/folder_gpu.py [--count 192] [--batch-size 32] [--photos DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, gpu_name, load_average, one_pass_model  # noqa: E402
from folder import timed  # noqa: E402
from photos import make_photos  # noqa: E402

NETWORK_ONLY = r"""
import sys, time, torch
from u2net_hub import U2Net
from u2net_hub.acceleration import optimized_for_inference
model = U2Net.from_pretrained(sys.argv[1]).eval().to("cuda")
batch, repeats = int(sys.argv[2]), int(sys.argv[3])
network = optimized_for_inference(model)
size = model.preprocessing.input_size
x = torch.rand(batch, 3, size, size, device="cuda")
with torch.inference_mode():
    for _ in range(5):
        torch.sigmoid(network(x).logits[:, 0].float()).cpu()
    torch.cuda.synchronize(); start = time.perf_counter()
    for _ in range(repeats):
        torch.sigmoid(network(x).logits[:, 0].float()).cpu()
    torch.cuda.synchronize()
print(batch * repeats / (time.perf_counter() - start))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="folder-gpu-"))
    photos = args.photos or work / "photos"
    paths = make_photos(photos, args.count)
    single = work / "single"
    single.mkdir()
    (single / paths[0].name).write_bytes(paths[0].read_bytes())

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    from u2net_hub import DEMO_MODEL, U2Net

    full = work / "full-random"
    U2Net(variant="full").eval().save_pretrained(full)
    models = {"tiny (bundled demo)": one_pass_model(DEMO_MODEL, work / "demo-one-pass"), "full (random weights)": str(full)}
    print(f"{gpu_name()}; {cpu_name()}, {os.cpu_count()} cores, load {load_average()}; {len(paths)} photos, "
          f"batch {args.batch_size}")
    rows = []
    for label, model in models.items():
        network = float(subprocess.run([sys.executable, "-c", NETWORK_ONLY, model, str(args.batch_size), "20"],
                                       capture_output=True, text=True, env=env, check=True).stdout.split()[-1])
        for kind, extra in (("masks", []), ("masks --draft", ["--draft"]), ("cutouts", ["--format", "rgba"])):
            base = [sys.executable, "-m", "u2net_hub", "predict", "--model", model, "--device", "cuda",
                    "--batch-size", str(args.batch_size), *extra]
            t1 = timed(base + [str(single), "-o", str(work / "out1")], env, expect=1, out=work / "out1")
            tn = timed(base + [str(photos), "-o", str(work / "out")], env, expect=len(paths), out=work / "out")
            end_to_end = (len(paths) - 1) / max(tn - t1, 1e-9)
            row = {"model": label, "output": kind, "seconds": round(tn, 2), "start_up_s": round(t1, 2),
                   "images_per_s": round(end_to_end, 1), "network_alone_images_per_s": round(network, 1),
                   "share_of_network": round(end_to_end / network, 3)}
            rows.append(row)
            print(f"| {label} | {kind} | {tn:.1f} s | {end_to_end:.0f} img/s | network alone {network:.0f} img/s"
                  f" | {end_to_end / network:.0%} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"gpu": gpu_name(), "cpu": cpu_name(), "cores": os.cpu_count(),
                                         "photos": len(paths), "batch_size": args.batch_size, "rows": rows},
                                        indent=2))


if __name__ == "__main__":
    main()
