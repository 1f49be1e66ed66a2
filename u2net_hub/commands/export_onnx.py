"""`u2net export-onnx` (not yet implemented)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("export-onnx", help="(not yet implemented)")
    parser.set_defaults(run=run)


def run(args) -> int:
    raise SystemExit("u2net export-onnx: not yet implemented")
