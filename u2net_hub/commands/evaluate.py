"""`u2net evaluate` (not yet implemented)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="(not yet implemented)")
    parser.set_defaults(run=run)


def run(args) -> int:
    raise SystemExit("u2net evaluate: not yet implemented")
