"""The `u2net` command line: a thin dispatcher over `u2net_hub.commands.*`.

Each subcommand lives in its own module with ``register(subparsers)``; heavy
imports happen inside the command, so `u2net --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("predict", "convert", "evaluate", "export_onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="u2net", description="U²-Net salient object detection")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"u2net-hub {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"u2net_hub.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .acceleration import reuse_freed_memory

    reuse_freed_memory()  # this process is ours: keep activation buffers between images
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
