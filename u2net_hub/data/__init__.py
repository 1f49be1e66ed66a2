"""Data for training and evaluation: synthetic scenes, dataset loading, paired image/mask transforms."""

from .integrity import (
    BadSampleError, DataCheck, SampleProblem, TrainingSamples, check_saliency_dataset, collate_samples,
)
from .loading import (
    DatasetLoadError, index_folder, load_dataset_as_stored, load_saliency_dataset, pair_folders, split_for_validation,
)
from .synthetic import make_synthetic_dataset, render_synthetic_sample
from .transforms import SaliencyTransform, collate_fn, mask_to_pil, pre_resize

__all__ = [
    "make_synthetic_dataset", "render_synthetic_sample",
    "load_saliency_dataset", "load_dataset_as_stored", "split_for_validation", "pair_folders", "index_folder",
    "DatasetLoadError",
    "SaliencyTransform", "collate_fn", "mask_to_pil", "pre_resize",
    "check_saliency_dataset", "DataCheck", "SampleProblem", "BadSampleError", "TrainingSamples", "collate_samples",
]
