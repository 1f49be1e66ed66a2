"""`u2net convert SRC.pth OUT_DIR`: a released checkpoint -> a `save_pretrained` folder (optionally pushed)."""

from __future__ import annotations

import argparse
import sys

from ..convert import ConversionError, PushError, convert_checkpoint, push_converted


def run(args: argparse.Namespace) -> int:
    try:
        result = convert_checkpoint(
            args.source, args.output_dir, variant=args.variant, input_size=args.input_size, overwrite=args.overwrite
        )
    except ConversionError as error:
        print(f"u2net convert: {error}", file=sys.stderr)
        return 2
    print(result.summary())
    if args.push_to_hub:
        try:
            url = push_converted(result.output_dir, args.push_to_hub, private=args.private, notes=result.notes)
        except PushError as error:
            print(f"u2net convert: {error}", file=sys.stderr)
            return 1
        print(f"pushed to {url}")
    return 0
