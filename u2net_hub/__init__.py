"""U²-Net salient object detection on the Hugging Face Hub."""

from .configs import VARIANTS, ConfigError, Preprocessing, StageSpec
from .hub import DEMO_MODEL, CheckpointMismatchError, __version__
from .inference import Prediction, predict
from .layers import RSU
from .metrics import SODMetrics
from .modeling import U2Net, U2NetOutput
from .processing import ImageLoadError

__all__ = [
    "VARIANTS", "ConfigError", "Preprocessing", "StageSpec", "CheckpointMismatchError",
    "RSU", "U2Net", "U2NetOutput", "__version__", "DEMO_MODEL",
    "Prediction", "predict", "ImageLoadError", "SODMetrics",
]
