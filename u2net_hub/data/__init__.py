"""Data for training and evaluation: synthetic scenes, dataset loading, paired image/mask transforms."""

from .synthetic import make_synthetic_dataset, render_synthetic_sample
from .transforms import SaliencyTransform, collate_fn, mask_to_pil

__all__ = ["make_synthetic_dataset", "render_synthetic_sample", "SaliencyTransform", "collate_fn", "mask_to_pil"]
