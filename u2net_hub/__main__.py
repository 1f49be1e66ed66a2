"""`python -m u2net_hub` is the `u2net` command (and what `accelerate launch -m u2net_hub` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
