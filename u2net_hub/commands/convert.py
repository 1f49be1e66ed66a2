"""`u2net convert SRC.pth OUT_DIR`: a released checkpoint -> a `save_pretrained` folder (optionally pushed)."""

from __future__ import annotations

import argparse
import sys

from ..convert import ConversionError, PushError, convert_checkpoint, push_converted
from . import positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a released .pth (u2net, u2netp, human_seg, portrait) into a Hub folder",
        description=(
            "Read a released U²-Net .pth with torch.load(weights_only=True), detect full/tiny from the weight "
            "shapes, write a save_pretrained folder (config.json, model.safetensors, README.md), reload it and "
            "check its outputs match the source weights."
        ),
    )
    parser.add_argument("source", metavar="SRC.pth", help="the checkpoint file (plain or wrapped state dict)")
    parser.add_argument("output_dir", metavar="OUT_DIR", help="the folder to write (must be new or empty)")
    parser.add_argument("--variant", default="auto", choices=["auto", "full", "tiny", "u2net", "u2netp"],
                        help="expected variant (default: detected from the shapes)")
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help="input size recorded in config.json (default 320; 512 when the file name says portrait)")
    parser.add_argument("--overwrite", action="store_true", help="replace the model files in a non-empty OUT_DIR")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None, help="also upload the folder to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private (with --push-to-hub)")
    parser.set_defaults(run=run)


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
