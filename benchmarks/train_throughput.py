#!/usr/bin/env python
"""Training throughput: our step next to a plain one, and the data pipeline next to both.

    python benchmarks/train_throughput.py                         # tiny and full, batch 8, 288x288
    python benchmarks/train_throughput.py --steps 2 --size 64     # a smoke run
    python benchmarks/train_throughput.py --device cuda --variants full

"ours" is exactly what train/train.py runs: the model prepared by Accelerate
with bf16 autocast where the hardware has it (fp32 elsewhere), channels_last
memory, and the deep-supervision BCE computed on logits in fp32
(`u2net_hub.training.training_step`). "plain" is the original repository's
loop on the same model and the same batches: fp32, contiguous tensors,
sigmoid outputs fed to BCELoss. Both start from the same weights, so their
losses over the same batches show whether the fast step learns as well.

Each loop runs in its own process, because train.py's allocator setting
(`acceleration.reuse_freed_memory(every_size=True)`: glibc keeps freed
activation buffers instead of unmapping them) is process-wide and matters a
lot on CPU. So there are two baselines: "plain" as the original repository
runs (default allocator) and "plain+alloc", the same loop given our allocator
setting; the table gives our speed-up over each.

The data line times the training DataLoader alone (synthetic scenes rendered
on the fly, resize/crop/flip, 2 workers): to keep the model busy it should
deliver at least 3x the training step's images/s. Timings go here, never in
the tests; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_name, load_average  # noqa: E402
from u2net_hub import U2Net  # noqa: E402
from u2net_hub.training import (  # noqa: E402
    build_lr_scheduler,
    build_optimizer,
    default_mixed_precision,
    training_step,
)
from u2net_hub.acceleration import reuse_freed_memory  # noqa: E402
from u2net_hub.data import SaliencyTransform, collate_fn, make_synthetic_dataset  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--size", type=int, default=288, help="training crop size (images are resized to size/0.9)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per loop (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed_precision", choices=["auto", "no", "bf16", "fp16"], default="auto")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the data line")
    parser.add_argument("--data_batches", type=int, default=None, help="batches for the data line (default: 3 x steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fixed_batches(count: int, batch_size: int, size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Real training batches (synthetic scenes through the training transform), made once, reused by both loops."""
    resolution = max(size, round(size / 0.9))
    dataset = make_synthetic_dataset(count * batch_size, size=resolution, seed=seed)
    transform = SaliencyTransform(resolution=resolution, crop_size=size, train=True, seed=seed)
    rows = dataset.with_transform(transform)
    batches = []
    for b in range(count):
        items = [rows[i] for i in range(b * batch_size, (b + 1) * batch_size)]
        batches.append(collate_fn(items))
    return batches


def run_ours(model, batches, steps, warmup, device, mixed_precision):
    """train.py's step: Accelerate (autocast), channels_last, BCE-with-logits in fp32."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=device.type == "cpu")
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                  device=accelerator.device)
    scheduler = build_lr_scheduler(optimizer, "constant", warmup_steps=0, total_steps=1)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    losses, times = [], []
    dtype = None
    for i in range(warmup + steps):
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batches[i % len(batches)].items()}
        _sync(accelerator.device)
        start = time.perf_counter()
        loss, dtype = training_step(accelerator, model, batch, optimizer, scheduler, channels_last=True)
        value = loss.item()  # forces completion, like logging the loss does in train.py
        _sync(accelerator.device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
        losses.append(value)
    return losses, times, str(dtype).replace("torch.", ""), accelerator.mixed_precision


def run_plain(model, batches, steps, warmup, device):
    """The original loop: fp32, contiguous, sigmoid maps into BCELoss, summed."""
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    bce = torch.nn.BCELoss(reduction="mean")
    losses, times = [], []
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        x, y = batch["pixel_values"].to(device), batch["labels"].to(device)
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad()
        maps = model(x).probabilities()
        loss = sum(bce(m, y) for m in maps)
        loss.backward()
        optimizer.step()
        value = loss.item()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
        losses.append(value)
    return losses, times


def data_rate(batch_size: int, size: int, workers: int, batches: int, seed: int) -> float:
    """Images/s of the training DataLoader alone (rendering, decoding, resize, crop, flip, collate)."""
    resolution = max(size, round(size / 0.9))
    dataset = make_synthetic_dataset((batches + 2) * batch_size, size=resolution, seed=seed + 1)
    transform = SaliencyTransform(resolution=resolution, crop_size=size, train=True)
    loader = torch.utils.data.DataLoader(
        dataset.with_transform(transform), batch_size=batch_size, shuffle=True, num_workers=workers,
        collate_fn=collate_fn, persistent_workers=False,
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    next(iterator)
    start = time.perf_counter()
    seen = 0
    for _ in range(batches):
        seen += next(iterator)["pixel_values"].shape[0]
    return seen / (time.perf_counter() - start)


LOOPS = (("ours", True), ("plain", False), ("plain+alloc", True))  # (name, our allocator setting)


def worker(job: dict) -> dict:
    """One loop, in this process: the same seed, weights and batches as every other loop."""
    if job["tuned_allocator"]:
        reuse_freed_memory(every_size=True)  # what train.py does at start-up
    device = torch.device(job["device"])
    torch.manual_seed(job["seed"])
    batches = fixed_batches(min(job["warmup"] + job["steps"], 8), job["batch_size"], job["size"], job["seed"])
    torch.manual_seed(job["seed"])
    model = U2Net(variant=job["variant"])
    if job["loop"] == "ours":
        losses, times, dtype, mp = run_ours(model, batches, job["steps"], job["warmup"], device, job["mixed_precision"])
        return {"losses": losses, "times": times, "dtype": dtype, "mixed_precision": mp}
    losses, times = run_plain(model, batches, job["steps"], job["warmup"], device)
    return {"losses": losses, "times": times}


def run_worker(job: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], stdout=subprocess.PIPE, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"the {job['loop']} loop for {job['variant']} failed (exit status {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> int:
    args = parse_args()
    if args.worker is not None:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    mixed_precision = default_mixed_precision(use_cpu=device.type == "cpu") if args.mixed_precision == "auto" \
        else args.mixed_precision
    steps, warmup = max(1, args.steps), max(0, args.warmup)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{cpu_name()} ({torch.get_num_threads()} threads, load average {load_average()})")
    print(f"device: {name} | batch {args.batch_size} x {args.size}x{args.size} | {warmup} warm-up + {steps} timed "
          f"steps, median | ours: {mixed_precision} autocast, channels_last, BCE on logits, our allocator setting | "
          "plain: fp32, contiguous, BCE on sigmoid (plain+alloc: with our allocator setting)")
    print(f"{'variant':8} {'ours img/s':>11} {'plain':>8} {'plain+alloc':>12} {'x plain':>8} {'x plain+alloc':>14}"
          f"   mean loss: ours / plain / plain+alloc")
    fastest = 0.0  # the data pipeline has to keep up with the fastest training step
    for variant in args.variants:
        results = {}
        for loop, tuned in LOOPS:
            job = {"variant": variant, "loop": loop, "tuned_allocator": tuned, "device": args.device,
                   "batch_size": args.batch_size, "size": args.size, "steps": steps, "warmup": warmup,
                   "seed": args.seed, "mixed_precision": mixed_precision}
            results[loop] = run_worker(job)
            results[loop]["images_per_s"] = args.batch_size / statistics.median(results[loop]["times"])
        ours, plain, plain_alloc = (results[name]["images_per_s"] for name, _ in LOOPS)
        fastest = max(fastest, ours)
        mean_loss = {name: statistics.fmean(results[name]["losses"]) for name, _ in LOOPS}
        print(f"{variant:8} {ours:11.2f} {plain:8.2f} {plain_alloc:12.2f} {ours / plain:7.2f}x {ours / plain_alloc:13.2f}x"
              f"   {mean_loss['ours']:.3f} / {mean_loss['plain']:.3f} / {mean_loss['plain+alloc']:.3f}"
              f"   (forward dtype {results['ours']['dtype']}, {results['ours']['mixed_precision']})")
        first, last = results["ours"]["losses"][0], results["ours"]["losses"][-1]
        plain_first, plain_last = results["plain"]["losses"][0], results["plain"]["losses"][-1]
        # Over a handful of steps the last value is noisy; the mean over the same batches is the steadier comparison.
        gap = abs(mean_loss["ours"] - mean_loss["plain"]) / max(mean_loss["plain"], 1e-6)
        same_way = (last < first) == (plain_last < plain_first) and gap < 0.1
        print(f"{'':8} loss over {len(results['ours']['losses'])} steps: ours {first:.3f} -> {last:.3f}, plain "
              f"{plain_first:.3f} -> {plain_last:.3f}; mean losses differ by {gap:.1%} -> "
              f"{'similar' if same_way else 'DIFFERENT'}")

    reuse_freed_memory(every_size=True)  # the DataLoader's workers inherit it, as in train.py
    rate = data_rate(args.batch_size, args.size, args.workers, args.data_batches or 3 * steps, args.seed)
    ratio = rate / fastest if fastest else math.nan
    print(f"data loading alone ({args.workers} workers): {rate:.1f} img/s = {ratio:.1f}x the fastest training step "
          f"({fastest:.1f} img/s); target >= 3x: {'met' if ratio >= 3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
