"""`u2net predict` (not yet implemented)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="(not yet implemented)")
    parser.set_defaults(run=run)


def run(args) -> int:
    raise SystemExit("u2net predict: not yet implemented")
