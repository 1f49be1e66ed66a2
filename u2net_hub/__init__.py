"""U²-Net salient object detection on the Hugging Face Hub.

The public names are loaded on first use (PEP 562): ``import u2net_hub`` alone
imports no torch, so the `u2net` command answers ``--help`` at once (the
console script imports ``u2net_hub.cli``, and with it this file).
``from u2net_hub import U2Net`` loads what it needs, as before.
"""

import importlib as _importlib
import os as _os
import sys as _sys
from typing import TYPE_CHECKING

from .configs import __version__

if "torch" not in _sys.modules:
    # OpenMP threads that spin between U²-Net's ~120 short parallel regions take the cores that decoding,
    # encoding and other processes need: on a busy 2-core machine a forward pass costs 2.7x the CPU time.
    # Sleeping instead is read once, when torch loads; OMP_WAIT_POLICY=ACTIVE set by the user wins (docs/speed.md).
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Public name -> the module that defines it; imported on first access (tests/test_import_graph.py reads this).
_LAZY = {
    "VARIANTS": "u2net_hub.configs", "ConfigError": "u2net_hub.configs", "Preprocessing": "u2net_hub.configs",
    "StageSpec": "u2net_hub.configs",
    "predict_dataset": "u2net_hub.datasets_io",
    "DEMO_MODEL": "u2net_hub.hub", "CheckpointMismatchError": "u2net_hub.hub",
    "Prediction": "u2net_hub.inference", "predict": "u2net_hub.inference",
    "BLOCKS": "u2net_hub.layers", "RSU": "u2net_hub.layers",
    "SODMetrics": "u2net_hub.metrics",
    "U2Net": "u2net_hub.modeling", "U2NetOutput": "u2net_hub.modeling",
    "ImageLoadError": "u2net_hub.processing",
    "predict_video": "u2net_hub.video",
}

if TYPE_CHECKING:  # what static tools (and the API docs) see; at run time __getattr__ below loads them
    from .configs import VARIANTS, ConfigError, Preprocessing, StageSpec
    from .datasets_io import predict_dataset
    from .hub import DEMO_MODEL, CheckpointMismatchError
    from .inference import Prediction, predict
    from .layers import BLOCKS, RSU
    from .metrics import SODMetrics
    from .modeling import U2Net, U2NetOutput
    from .processing import ImageLoadError
    from .video import predict_video


def __getattr__(name: str):
    """Load a public name's module on first access and keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'u2net_hub' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "VARIANTS", "ConfigError", "Preprocessing", "StageSpec", "CheckpointMismatchError",
    "BLOCKS", "RSU", "U2Net", "U2NetOutput", "__version__", "DEMO_MODEL",
    "Prediction", "predict", "ImageLoadError", "SODMetrics", "predict_dataset", "predict_video",
]
