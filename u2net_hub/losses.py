"""Deep supervision: the paper's loss, made safe for mixed precision.

The original sums ``BCELoss`` over the sigmoid of the fused map and of the six
side maps (all weights 1). Computing the same sum from the logits with
``binary_cross_entropy_with_logits`` is mathematically identical but does not
saturate at 0/1, and doing it in float32 keeps it stable when the forward pass
ran under bf16/fp16 autocast.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .modeling import U2NetOutput

__all__ = ["deep_supervision_loss", "side_losses", "weighted_sum"]


def _check_labels(labels: Tensor, reference: Tensor) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim == 3:  # (B, H, W) -> (B, 1, H, W)
        labels = labels.unsqueeze(1)
    if labels.shape != reference.shape:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not match the model's output {tuple(reference.shape)}; "
            "masks must be (B, 1, H, W) at the input's size"
        )
    return labels.float()


def side_losses(output: U2NetOutput, labels: Tensor) -> list[Tensor]:
    """The seven BCE-with-logits terms of deep supervision, computed in float32 (safe under bf16/fp16).

    Args:
        output: the model's output.
        labels: (B, 1, H, W) masks in [0, 1] at the input's size.

    Returns:
        Seven scalar tensors, fused map first, then side1..side6.
    """
    maps: Sequence[Tensor] = output.all_logits
    target = _check_labels(labels, maps[0])
    with torch.autocast(device_type=maps[0].device.type, enabled=False):
        return [F.binary_cross_entropy_with_logits(m.float(), target) for m in maps]


def deep_supervision_loss(output: U2NetOutput, labels: Tensor, weights: Sequence[float] | None = None) -> Tensor:
    """The paper's training loss: the mean BCE of the fused map and the six side maps, summed.

    Args:
        output: the model's output.
        labels: (B, 1, H, W) masks in [0, 1] at the input's size.
        weights: seven weights (fused first); None means all 1, as in the paper.

    Returns:
        A scalar float32 tensor.
    """
    return weighted_sum(side_losses(output, labels), weights)


def weighted_sum(terms: Sequence[Tensor], weights: Sequence[float] | None = None) -> Tensor:
    """The seven terms summed, each times its weight (None: all 1), as deep supervision sums them.

    Args:
        terms: seven scalar tensors, fused first.
        weights: seven weights (fused first); None means all 1.

    Returns:
        A scalar tensor.
    """
    if weights is None:
        return torch.stack(list(terms)).sum()
    if len(weights) != len(terms):
        raise ValueError(f"need {len(terms)} weights (fused + 6 sides), got {len(weights)}")
    return sum(w * t for w, t in zip(weights, terms))
