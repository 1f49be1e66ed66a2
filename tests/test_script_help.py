"""Every script under train/ and benchmarks/ answers --help: a user's first step must not be a traceback.

(make_cutout_composites.py's --help crashed until 2026-12-04: argparse expands % in help text a second time.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for folder in ("train", "benchmarks") for p in (ROOT / folder).glob("*.py")
                 if not p.name.startswith("_") and "argparse" in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_help_prints_usage(script):
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=180,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and "Traceback" not in result.stderr
