"""Data for training and evaluation: synthetic scenes, dataset loading, paired image/mask transforms."""

from .synthetic import make_synthetic_dataset, render_synthetic_sample

__all__ = ["make_synthetic_dataset", "render_synthetic_sample"]
