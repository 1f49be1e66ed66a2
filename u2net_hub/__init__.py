"""U²-Net salient object detection on the Hugging Face Hub."""

from .configs import VARIANTS, ConfigError, Preprocessing, StageSpec
from .hub import CheckpointMismatchError
from .modeling import RSU, U2Net, U2NetOutput

__version__ = "0.1.0"

__all__ = [
    "VARIANTS", "ConfigError", "Preprocessing", "StageSpec", "CheckpointMismatchError",
    "RSU", "U2Net", "U2NetOutput", "__version__",
]
