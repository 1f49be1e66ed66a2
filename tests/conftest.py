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


@pytest.fixture(scope="session")
def reference_weights(reference_dir) -> dict:
    """The tiny variant's weights from the original implementation (random, with non-trivial BatchNorm statistics)."""
    from safetensors.torch import load_file

    return load_file(reference_dir / "tiny_random_weights.safetensors")


@pytest.fixture(scope="session")
def make_tiny_model(reference_weights):
    """The one way tests build a small model: ``make_tiny_model(input_size=320)`` -> a fresh tiny U2Net.

    Each call returns a new model (tests may change it) with the reference weights, in eval mode.
    """
    from u2net_hub import U2Net

    def make(input_size: int = 320):
        model = U2Net(variant="tiny", input_size=input_size)
        model.load_state_dict(reference_weights, strict=True)
        return model.eval()

    return make


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, make_tiny_model) -> Path:
    """That model as a real save_pretrained folder with a 64 px network input (fast on two cores); read-only."""
    folder = tmp_path_factory.mktemp("tiny-model") / "tiny64"
    make_tiny_model(input_size=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny32_folder(tmp_path_factory, make_tiny_model) -> Path:
    """The same model at a 32 px network input, saved: real, and quick enough for runs over many images; read-only."""
    folder = tmp_path_factory.mktemp("tiny-model") / "tiny32"
    make_tiny_model(input_size=32).save_pretrained(folder)
    return folder


@pytest.fixture
def one_thread():
    """One torch thread, like subprocesses run with OMP_NUM_THREADS=1: two threads on two cores shared with
    other work spin-wait at every barrier and run several times slower. Ask for it with
    ``pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
