"""`u2net profile`: parameters, GFLOPs, activation memory and latency of a model, per stage; or the block figure.

* ``u2net profile [--model PATH_OR_ID | --variant full|tiny] [--block B] [--size N] [--json PATH]``
  prints one row per stage (and the heads) and the total;
* ``u2net profile --blocks [--png PATH] [--json PATH]`` reproduces the paper's block figure: each block
  alone turning a 320x320x3 input into 320x320x64, as a table and a bar chart.

See :mod:`u2net_hub.profile` for what is counted. Exit status 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..modeling import U2Net
from ..profile import BLOCK_FIGURE, format_block_table, format_profile, plot_blocks, profile_blocks, profile_model


class UsageError(Exception):
    """A problem with the command line: printed as one line, exit status 2."""


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as error:
        print(f"u2net profile: error: {error}", file=sys.stderr)
        return 2


def _device(name: str):
    try:
        device = torch.device(name)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:
        raise UsageError(f"cannot use device {name!r}: {str(error).splitlines()[0]}") from None
    return device


def _check_output(path: str | None, flag: str, suffix: str) -> Path | None:
    if path is None:
        return None
    output = Path(path)
    if output.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name such as profile{suffix}")
    return output


def _write_json(path: Path | None, document) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    json_path = _check_output(args.json, "--json", ".json")
    if args.blocks:
        if args.model or args.variant or args.block:
            raise UsageError("--blocks profiles every block alone; do not combine it with --model, --variant or --block")
        return _run_blocks(args, json_path)
    if args.png:
        raise UsageError("--png goes with --blocks (the block figure)")
    if args.model and (args.variant or args.block):
        raise UsageError("--model loads a saved model with its own configuration; drop --variant/--block")
    device = _device(args.device)
    model = _load(args)
    size = args.size or model.preprocessing.input_size
    profile = profile_model(model, size, device=device, repeats=args.repeats, timing=args.repeats > 0)
    profile["model"] = {"source": args.model or f"U2Net(variant={args.variant or 'tiny'!r}, block={args.block or 'rsu'!r})",
                        "variant": model.variant, "block": model.block}
    print(f"{profile['model']['source']}: {model.variant}, block {model.block}")
    print(format_profile(profile))
    _write_json(json_path, profile)
    return 0


def _load(args):
    if args.model is None:
        return U2Net(variant=args.variant or "tiny", block=args.block or "rsu")
    name = args.model
    if Path(name).is_file():
        raise UsageError(f"--model {name} is a file; it takes a save_pretrained folder or a Hub repo id "
                         "(convert released .pth files with `u2net convert`)")
    if not Path(name).exists() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise UsageError(f"--model {name}: no such folder")
    try:
        return U2Net.from_pretrained(name)
    except Exception as error:  # noqa: BLE001 - the CLI boundary: one clear line
        raise UsageError(f"cannot load model {name!r}: {type(error).__name__}: {error}") from None


def _run_blocks(args, json_path: Path | None) -> int:
    png = _check_output(args.png or "u2net-blocks.png", "--png", ".png")
    device = _device(args.device)
    setting = dict(BLOCK_FIGURE, size=args.size or BLOCK_FIGURE["size"])
    rows = profile_blocks(setting["size"], in_channels=setting["in_channels"], mid_channels=setting["mid_channels"],
                          out_channels=setting["out_channels"], height=setting["height"], device=device,
                          repeats=args.repeats, timing=args.repeats > 0)
    size = setting["size"]
    print(f"each block alone: {size}x{size}x{setting['in_channels']} -> {size}x{size}x{setting['out_channels']} "
          f"(mid {setting['mid_channels']}, height {setting['height']}), {device}")
    print(format_block_table(rows))
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_blocks(rows, png, title=f"One block, {size}x{size}x{setting['in_channels']} -> {size}x{size}x"
                                 f"{setting['out_channels']} (mid {setting['mid_channels']}, height {setting['height']})")
    print(f"wrote {png}", file=sys.stderr)
    _write_json(json_path, {"setting": dict(setting, device=str(device)), "blocks": rows})
    return 0
