"""The `u2net` command line: a thin dispatcher over `u2net_hub.commands.*`.

The arguments of every subcommand are in :mod:`u2net_hub.commands.parsers`,
which imports nothing heavy, so `u2net --help` and `u2net predict --help`
answer without loading torch. Only once the arguments are parsed is the one
command module that runs them imported, by name, from :data:`COMMAND_MODULES`
(with ``importlib``: the only place in the package that imports a module of its
own lazily; tests/test_import_graph.py reads this table and holds its edges to
the same one-way rule as every other import).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .allocator import reuse_freed_memory
from .commands.parsers import SUBCOMMANDS
from .configs import __version__

#: Subcommand -> the module whose ``run(args)`` runs it (imported only when that subcommand runs).
COMMAND_MODULES = {
    "predict": "u2net_hub.commands.predict",
    "convert": "u2net_hub.commands.convert",
    "evaluate": "u2net_hub.commands.evaluate",
    "export-onnx": "u2net_hub.commands.export_onnx",
    "profile": "u2net_hub.commands.profile",
}


def build_parser() -> argparse.ArgumentParser:
    """The `u2net` argument parser with every subcommand registered.

    Returns:
        The parser; ``parse_args`` gives a namespace whose ``command`` names the subcommand.
    """
    parser = argparse.ArgumentParser(prog="u2net", description="U²-Net salient object detection")
    parser.add_argument("--version", action="version", version=f"u2net-hub {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
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
        command = importlib.import_module(COMMAND_MODULES[args.command])
        return int(command.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
