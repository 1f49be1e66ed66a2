"""U²-Net salient object detection on the Hugging Face Hub."""

import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    # OpenMP threads that spin between U²-Net's ~120 short parallel regions take the cores that decoding,
    # encoding and other processes need: on a busy 2-core machine a forward pass costs 2.7x the CPU time.
    # Sleeping instead is read once, when torch loads; OMP_WAIT_POLICY=ACTIVE set by the user wins (docs/speed.md).
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .configs import VARIANTS, ConfigError, Preprocessing, StageSpec
from .datasets_io import predict_dataset
from .hub import DEMO_MODEL, CheckpointMismatchError, __version__
from .inference import Prediction, predict
from .layers import BLOCKS, RSU
from .metrics import SODMetrics
from .modeling import U2Net, U2NetOutput
from .processing import ImageLoadError
from .video import predict_video

__all__ = [
    "VARIANTS", "ConfigError", "Preprocessing", "StageSpec", "CheckpointMismatchError",
    "BLOCKS", "RSU", "U2Net", "U2NetOutput", "__version__", "DEMO_MODEL",
    "Prediction", "predict", "ImageLoadError", "SODMetrics", "predict_dataset", "predict_video",
]
