"""Subcommands of the `u2net` command line, one module each."""
