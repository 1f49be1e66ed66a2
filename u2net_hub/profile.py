"""What a network costs: parameters, FLOPs, activation memory and measured latency, per stage and in total.

Conventions (the ones the paper's block figure and ``torch.utils.flop_counter``
use, so the numbers can be compared with both):

* **Parameters**: the exact number of weights, ``sum(p.numel())``.
* **FLOPs**: convolutions and linear layers only, one multiply-add counted as
  2 FLOPs; BatchNorm, ReLU, pooling, resizing and additions are left out.
  Counted by forward hooks from each layer's weight shape and output size.
* **Activation memory**: the bytes of every tensor one forward pass creates
  (each storage once, so in-place ReLUs add nothing), at the model's dtype,
  batch 1. Roughly what a training step keeps for the backward pass; an
  inference pass frees most of it as it goes.
* **Latency**: the median wall time of a batch-1 forward pass in inference
  mode, after warm-up, on the given device; per stage from hooks around each
  stage (on CUDA with a synchronize on both sides).

Stages are the U2Net's eleven stage modules plus ``heads`` (the six side
convolutions and the fusion); for any other module the table has one row.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .configs import STAGE_NAMES
from .layers import BLOCKS, PAPER_NAMES

#: Row name of the side convolutions and the fusion conv of a U2Net.
HEADS = "heads"


def _groups(model: nn.Module) -> dict[str, nn.Module | list[nn.Module]]:
    """Name -> module(s) of each row of the table: the stages and the heads of a U2Net, else the whole module."""
    children = dict(model.named_children())
    if all(name in children for name in STAGE_NAMES):
        groups: dict[str, Any] = {name: children[name] for name in STAGE_NAMES}
        groups[HEADS] = [module for name, module in children.items() if name not in STAGE_NAMES]
        return groups
    return {type(model).__name__: model}


def _modules_of(group: nn.Module | list[nn.Module]) -> list[nn.Module]:
    return group if isinstance(group, list) else [group]


def count_parameters(module: nn.Module | list[nn.Module]) -> int:
    """The exact number of parameters (shared tensors once)."""
    seen: dict[int, int] = {}
    for part in _modules_of(module):
        for parameter in part.parameters():
            seen[id(parameter)] = parameter.numel()
    return sum(seen.values())


def _layer_flops(module: nn.Module, output: torch.Tensor) -> int:
    """2 x multiply-adds of a conv (any dim, any groups) or linear layer producing `output`."""
    if isinstance(module, nn.modules.conv._ConvNd):
        weight = module.weight
        per_output = weight[0].numel()  # in_channels / groups x kernel
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            return 0  # not used by any block here; flop_counter counts them from the input side
        return 2 * output.numel() * per_output
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * module.in_features
    return 0


class _StorageCounter(TorchDispatchMode):
    """Adds up the bytes of every tensor an op creates (not views or in-place results of its inputs), per row."""

    #: Row of the ops outside every row (a U2Net's pooling, concatenation and resizing between stages).
    BETWEEN = "(between stages)"

    def __init__(self):
        super().__init__()
        self.row = self.BETWEEN
        self.bytes: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, kwargs or {}))}
        for tensor in _tensors(out):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in inputs:
                self.bytes[self.row] = self.bytes.get(self.row, 0) + storage.nbytes()
        return out


def _tensors(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


@contextmanager
def _row_hooks(groups: dict[str, Any], enter, leave) -> Iterator[None]:
    handles = []
    for name, group in groups.items():
        for module in _modules_of(group):
            handles.append(module.register_forward_pre_hook(lambda m, a, name=name: enter(name)))
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: leave(name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_flops(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward pass of `x` per table row (see the module docstring for what counts)."""
    groups = _groups(model)
    owner = {}
    for name, group in groups.items():
        for part in _modules_of(group):
            for module in part.modules():
                owner[module] = name
    flops = {name: 0 for name in groups}
    handles = [
        module.register_forward_hook(lambda m, a, o: flops.__setitem__(owner[m], flops[owner[m]] + _layer_flops(m, o)))
        for module in owner
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return flops


def count_activation_bytes(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Bytes of the tensors one forward pass of `x` creates, per table row.

    Ops outside every row (between a U2Net's stages) land in the row ``"(between stages)"``, which only
    the total shows.
    """
    groups = _groups(model)
    counter = _StorageCounter()

    def enter(name):
        counter.row = name

    def leave(name):
        counter.row = counter.BETWEEN

    with _row_hooks(groups, enter, leave), torch.no_grad(), counter:
        model(x)
    return {name: counter.bytes.get(name, 0) for name in [*groups, counter.BETWEEN]}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model: nn.Module, x: torch.Tensor, repeats: int = 10, warmup: int = 2) -> tuple[float, dict[str, float]]:
    """(median ms per forward pass of `x`, median ms per table row) in inference mode."""
    device = x.device
    groups = _groups(model)
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        totals = []
        for _ in range(repeats):
            _synchronize(device)
            start = time.perf_counter()
            model(x)
            _synchronize(device)
            totals.append((time.perf_counter() - start) * 1e3)
        per_row: dict[str, list[float]] = {name: [] for name in groups}
        started: dict[str, float] = {}
        pass_time: dict[str, float] = {}

        def enter(name):
            _synchronize(device)
            started[name] = time.perf_counter()

        def leave(name):
            _synchronize(device)
            pass_time[name] = pass_time.get(name, 0.0) + (time.perf_counter() - started[name]) * 1e3

        with _row_hooks(groups, enter, leave):
            for _ in range(max(1, repeats // 2)):
                pass_time.clear()
                model(x)
                for name in groups:
                    per_row[name].append(pass_time.get(name, 0.0))
    return statistics.median(totals), {name: statistics.median(values) for name, values in per_row.items()}


def _block_label(module: nn.Module) -> str | None:
    for name, cls in BLOCKS.items():
        if type(module) is cls:
            return name
    return None


def profile_model(
    model: nn.Module,
    size: int | tuple[int, int] = 320,
    *,
    device: str | torch.device | None = None,
    repeats: int = 10,
    warmup: int = 2,
    in_channels: int | None = None,
    timing: bool = True,
) -> dict[str, Any]:
    """Parameters, GFLOPs, activation MB and ms for one `size` x `size` image, per stage and in total.

    Args:
        model: a U2Net (rows: its stages and heads) or any module taking (1, C, H, W) (one row).
        size: input height and width (an int for a square).
        device: where to run (default: the model's device); the model is moved there.
        repeats, warmup: timed and untimed forward passes of the latency measurement.
        in_channels: input channels for modules without an ``in_channels`` attribute (default 3).
        timing: False skips the latency measurement (``ms`` entries are then None).

    Returns:
        ``{"input": [1, C, H, W], "device": str, "dtype": str, "total": {...}, "stages": {row: {...}}}``
        where each entry has ``params``, ``gflops``, ``activations_mb``, ``ms`` (the total also
        ``ms_per_image``), and stage entries of a U2Net also name their ``block``.
    """
    height, width = (size, size) if isinstance(size, int) else size
    parameter = next(model.parameters())
    device = torch.device(device) if device is not None else parameter.device
    model = model.to(device).eval()
    channels = in_channels or getattr(model, "in_channels", None) or 3
    x = torch.randn(1, channels, height, width, device=device, dtype=parameter.dtype,
                    generator=torch.Generator(device=device).manual_seed(0))
    groups = _groups(model)
    flops = count_flops(model, x)
    activations = count_activation_bytes(model, x)
    if timing:
        total_ms, row_ms = measure_latency(model, x, repeats=repeats, warmup=warmup)
    else:
        total_ms, row_ms = None, {name: None for name in groups}
    stages: dict[str, dict[str, Any]] = {}
    for name, group in groups.items():
        row: dict[str, Any] = {}
        label = _block_label(group) if isinstance(group, nn.Module) else None
        if label is not None and group is not model:
            row["block"] = label
        row.update(params=count_parameters(group), gflops=flops[name] / 1e9,
                   activations_mb=activations[name] / 2**20, ms=row_ms[name])
        stages[name] = row
    total = {
        "params": count_parameters(model),
        "gflops": sum(flops.values()) / 1e9,
        "activations_mb": sum(activations.values()) / 2**20,
        "ms": total_ms,
        "ms_per_image": total_ms,
    }
    return {"input": [1, channels, height, width], "device": str(device), "dtype": str(parameter.dtype).replace("torch.", ""),
            "total": total, "stages": stages}


def format_profile(profile: dict[str, Any]) -> str:
    """The per-stage table as aligned text."""
    has_block = any("block" in row for row in profile["stages"].values())
    header = ["stage"] + (["block"] if has_block else []) + ["params", "GFLOPs", "activations MB", "ms"]
    lines = []
    rows = list(profile["stages"].items()) + [("total", profile["total"])]
    for name, row in rows:
        cells = [name] + ([row.get("block", "")] if has_block else [])
        cells += [f"{row['params']:,}", f"{row['gflops']:.3f}", f"{row['activations_mb']:.1f}",
                  "-" if row["ms"] is None else f"{row['ms']:.1f}"]
        lines.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(header)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if i < (2 if has_block else 1) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [fmt(header), "  ".join("-" * w for w in widths)]
    out += [fmt(cells) for cells in lines[:-1]]
    out += ["  ".join("-" * w for w in widths), fmt(lines[-1])]
    c, h, w = profile["input"][1:]
    out.append(f"input 1x{c}x{h}x{w} ({profile['dtype']}, {profile['device']}); FLOPs: conv and linear, "
               "multiply-add = 2; activations: every tensor the forward pass creates")
    return "\n".join(out)


# ----------------------------------------------------------------- the block figure

#: The paper's block figure: one block turning a 320x320x3 input into 320x320x64. Middle width and height
#: are those of U²-Net's first stage, RSU-7(3, 32, 64).
BLOCK_FIGURE = {"size": 320, "in_channels": 3, "mid_channels": 32, "out_channels": 64, "height": 7}


def profile_blocks(
    size: int = BLOCK_FIGURE["size"],
    *,
    in_channels: int = BLOCK_FIGURE["in_channels"],
    mid_channels: int = BLOCK_FIGURE["mid_channels"],
    out_channels: int = BLOCK_FIGURE["out_channels"],
    height: int = BLOCK_FIGURE["height"],
    blocks: list[str] | None = None,
    device: str | torch.device = "cpu",
    repeats: int = 5,
    timing: bool = True,
) -> list[dict[str, Any]]:
    """One row per block (params, gflops, activations_mb, ms) for a block alone on a `size` x `size` input.

    The default reproduces the setting of the paper's Fig. 3: 320x320x3 in, 320x320x64 out.
    """
    rows = []
    torch.manual_seed(0)
    for name in blocks or list(BLOCKS):
        module = BLOCKS[name](height=height, in_channels=in_channels, mid_channels=mid_channels,
                              out_channels=out_channels)
        result = profile_model(module, size, device=device, repeats=repeats, warmup=1, in_channels=in_channels,
                               timing=timing)
        total = result["total"]
        rows.append({"block": name, "paper_name": PAPER_NAMES[name], "params": total["params"],
                     "gflops": total["gflops"], "activations_mb": total["activations_mb"], "ms": total["ms"]})
    return rows


def format_block_table(rows: list[dict[str, Any]]) -> str:
    header = ["block", "paper", "params", "GFLOPs", "activations MB", "ms"]
    lines = [[r["block"], r["paper_name"], f"{r['params']:,}", f"{r['gflops']:.2f}", f"{r['activations_mb']:.1f}",
              "-" if r["ms"] is None else f"{r['ms']:.1f}"] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(line) for line in lines)])


def plot_blocks(rows: list[dict[str, Any]], path, title: str | None = None) -> None:
    """A bar chart of each block's GFLOPs (bars) with its parameter count written above, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r['paper_name']}\n({r['block']})" for r in rows]
    gflops = [r["gflops"] for r in rows]
    colours = ["#d62728" if r["block"] == "rsu" else "#1f77b4" for r in rows]
    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=120)
    bars = axis.bar(names, gflops, color=colours)
    for bar, row in zip(bars, rows):
        axis.annotate(f"{row['gflops']:.1f} G\n{row['params'] / 1e3:.0f} k params",
                      (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8,
                      xytext=(0, 2), textcoords="offset points")
    axis.set_ylabel("GFLOPs (multiply-add = 2)")
    axis.set_ylim(0, max(gflops) * 1.25)
    axis.set_title(title or "One block, 320x320x3 -> 320x320x64 (mid 32, height 7)", fontsize=10)
    axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
