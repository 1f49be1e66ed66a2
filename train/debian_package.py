"""Download a Debian package into a cache and unpack it there, never installing it: the data scripts' source.

Why: the photos, cut-outs and people of the demo model come from Debian packages (wallpapers, GCompris, Scratch);
each script needs the same two steps, done once, with a one-line error (not a traceback) when apt or dpkg fails.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def unpack(package: str, cache: Path, root: Path, marker: str) -> Path:
    """``apt-get download`` PACKAGE into CACHE (unless a .deb is there) and ``dpkg -x`` it into ROOT (unless
    ROOT/MARKER exists already); returns ROOT/MARKER."""
    if not (root / marker).exists():
        cache.mkdir(parents=True, exist_ok=True)
        if not list(cache.glob(f"{package}_*.deb")):
            run = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"error: apt-get download {package} failed: {run.stderr.strip()}")
        deb = sorted(cache.glob(f"{package}_*.deb"))[-1]
        run = subprocess.run(["dpkg", "-x", str(deb), str(root)], capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"error: dpkg -x {deb} failed: {run.stderr.strip()}")
    return root / marker
