"""Subcommands of the `u2net` command line: their arguments in `parsers` (light), one module each that runs it."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An ``argparse`` type: an integer >= `minimum`, refused as a one-line usage error otherwise.

    Args:
        minimum: the smallest value accepted.

    Returns:
        The parser of one command-line value.
    """
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


#: Counts and sizes (batch size, pixels, shard size, image side).
positive_int = int_at_least(1)
#: Counts where 0 means none (timed repeats).
non_negative_int = int_at_least(0)


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
