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

The data line times the training DataLoader alone (synthetic scenes rendered
on the fly, resize/crop/flip, 2 workers): to keep the model busy it should
deliver at least 3x the training step's images/s. Timings go here, never in
the tests; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from u2net_hub import U2Net  # noqa: E402
from u2net_hub import training as T  # noqa: E402
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
    optimizer = T.build_optimizer(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                  device=accelerator.device)
    scheduler = T.build_lr_scheduler(optimizer, "constant", warmup_steps=0, total_steps=1)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    losses, times = [], []
    dtype = None
    for i in range(warmup + steps):
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batches[i % len(batches)].items()}
        _sync(accelerator.device)
        start = time.perf_counter()
        loss, dtype = T.training_step(accelerator, model, batch, optimizer, scheduler, channels_last=True)
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


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    mixed_precision = T.default_mixed_precision(use_cpu=device.type == "cpu") if args.mixed_precision == "auto" \
        else args.mixed_precision
    torch.manual_seed(args.seed)
    steps, warmup = max(1, args.steps), max(0, args.warmup)
    batches = fixed_batches(min(warmup + steps, 8), args.batch_size, args.size, args.seed)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name} | batch {args.batch_size} x {args.size}x{args.size} | {warmup} warm-up + {steps} timed "
          f"steps | ours: {mixed_precision} autocast, channels_last, BCE on logits | plain: fp32, contiguous, "
          "BCE on sigmoid")
    print(f"{'variant':8} {'ours img/s':>11} {'plain img/s':>12} {'speed-up':>9} {'ours loss':>18} {'plain loss':>18}")
    fastest = 0.0  # the data pipeline has to keep up with the fastest training step
    for variant in args.variants:
        torch.manual_seed(args.seed)
        base = U2Net(variant=variant)
        ours_losses, ours_times, dtype, mp = run_ours(copy.deepcopy(base), batches, steps, warmup, device,
                                                      mixed_precision)
        plain_losses, plain_times = run_plain(copy.deepcopy(base), batches, steps, warmup, device)
        ours = args.batch_size / statistics.median(ours_times)
        plain = args.batch_size / statistics.median(plain_times)
        fastest = max(fastest, ours)
        print(f"{variant:8} {ours:11.2f} {plain:12.2f} {ours / plain:8.2f}x "
              f"{ours_losses[0]:8.3f} -> {ours_losses[-1]:6.3f} {plain_losses[0]:8.3f} -> {plain_losses[-1]:6.3f}"
              f"   (forward dtype {dtype}, {mp})")
        drop_ours = ours_losses[0] - ours_losses[-1]
        drop_plain = plain_losses[0] - plain_losses[-1]
        if len(ours_losses) > 1:
            agree = abs(ours_losses[-1] - plain_losses[-1]) / max(plain_losses[-1], 1e-6)
            verdict = "similar" if (drop_ours > 0) == (drop_plain > 0) and agree < 0.1 else "DIFFERENT"
            print(f"{'':8} loss over {len(ours_losses)} steps: ours {drop_ours:+.3f}, plain {drop_plain:+.3f}, "
                  f"final losses differ by {agree:.1%} -> {verdict}")
        del base

    rate = data_rate(args.batch_size, args.size, args.workers, args.data_batches or 3 * steps, args.seed)
    ratio = rate / fastest if fastest else math.nan
    print(f"data loading alone ({args.workers} workers): {rate:.1f} img/s = {ratio:.1f}x the fastest training step "
          f"({fastest:.1f} img/s); target >= 3x: {'met' if ratio >= 3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
