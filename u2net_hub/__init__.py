"""U²-Net salient object detection on the Hugging Face Hub."""

from pathlib import Path as _Path

from .configs import VARIANTS, ConfigError, Preprocessing, StageSpec
from .hub import CheckpointMismatchError
from .modeling import RSU, U2Net, U2NetOutput

__version__ = "0.1.0"

#: The bundled demo checkpoint: the tiny configuration trained on the synthetic set.
#: It ships inside the package so `u2net predict` and the Space work offline.
DEMO_MODEL = str(_Path(__file__).resolve().parent / "checkpoints" / "u2net-tiny-synthetic")

__all__ = [
    "VARIANTS", "ConfigError", "Preprocessing", "StageSpec", "CheckpointMismatchError",
    "RSU", "U2Net", "U2NetOutput", "__version__", "DEMO_MODEL",
]

from .inference import Prediction, predict  # noqa: E402
from .processing import ImageLoadError  # noqa: E402

__all__ += ["Prediction", "predict", "ImageLoadError"]

from .metrics import SODMetrics  # noqa: E402

__all__ += ["SODMetrics"]
