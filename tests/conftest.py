"""Shared fixtures: the reference data from the original implementation, small models, offline Hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Conformance data computed by running the authors' original implementation (see tests/reference/README.md).
REFERENCE_DIR = Path(os.environ.get("U2NET_REFERENCE_DIR", Path(__file__).resolve().parent / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.fail(f"conformance data not found at {REFERENCE_DIR}; set U2NET_REFERENCE_DIR")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def original_shapes(reference_dir) -> dict:
    return json.loads((reference_dir / "original_state_dict_shapes.json").read_text())
