"""`u2net convert` (not yet implemented)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="(not yet implemented)")
    parser.set_defaults(run=run)


def run(args) -> int:
    raise SystemExit("u2net convert: not yet implemented")
