"""Subcommands of the `u2net` command line, one module each: argument parsing and calls into the library."""

from __future__ import annotations

import argparse
import sys


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1, refused as a one-line usage error otherwise.

    Args:
        text: the command-line value.

    Returns:
        The integer.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 0 (a count where 0 means none).

    Args:
        text: the command-line value.

    Returns:
        The integer.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


class _DeprecatedExact(argparse.Action):
    """``--exact``, the old spelling of ``--no-fast``: still works, says so once."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: --exact is deprecated; use --no-fast", file=sys.stderr)
        namespace.fast = False


def add_fast_path_arguments(parser) -> None:
    """Add ``--fast/--no-fast`` (the ``fast=`` argument of :func:`u2net_hub.predict`) to a parser or group.

    Args:
        parser: an ``argparse`` parser or argument group.
    """
    parser.add_argument(
        "--fast", action=argparse.BooleanOptionalAction, default=True,
        help="run the fast path (folded BatchNorm, fused conv+ReLU, bf16 where the CPU/GPU has it; the default); "
             "--no-fast runs the exact float32 network",
    )
    parser.add_argument("--exact", action=_DeprecatedExact, nargs=0, dest="fast", help=argparse.SUPPRESS)
