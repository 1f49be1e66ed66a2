"""The `u2net` command line: a thin dispatcher over `u2net_hub.commands.*`.

Each subcommand lives in its own module with ``register(subparsers)`` and
``run(args)``; heavy optional packages (datasets, onnx) are imported only by
the library functions that need them.
"""

from __future__ import annotations

import argparse
import sys

from .acceleration import reuse_freed_memory
from .commands import convert, evaluate, export_onnx, predict, profile
from .hub import __version__

COMMANDS = (predict, convert, evaluate, export_onnx, profile)


def build_parser() -> argparse.ArgumentParser:
    """The `u2net` argument parser with every subcommand registered.

    Returns:
        The parser; ``parse_args`` gives a namespace whose ``run(args)`` runs the command.
    """
    parser = argparse.ArgumentParser(prog="u2net", description="U²-Net salient object detection")
    parser.add_argument("--version", action="version", version=f"u2net-hub {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `u2net` command.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 success, 1 some items failed, 2 usage error, 130 interrupted.
    """
    args = build_parser().parse_args(argv)
    reuse_freed_memory()  # this process is ours: keep activation buffers between images
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
