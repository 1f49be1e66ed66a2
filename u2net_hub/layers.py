"""The building blocks of U²-Net: ConvBNReLU, the residual U-block (RSU), the resize and pooling ops.

Attribute names follow the authors' code (``rebnconvin``, ``rebnconv1``,
``conv_s1``, ...), so the released state dicts load with ``strict=True``.
Each block knows how to make its own inference form (``ConvBNReLU.fuse``),
so the fast path never reaches into attribute names.

Every stage block is built from the fields of a stage-table row, as keywords:
``Block(height=..., in_channels=..., mid_channels=..., out_channels=..., dilated=...)``
(see :func:`build_block`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configs import StageSpec


class _DenseGradResize(torch.autograd.Function):
    """F.interpolate (bilinear) whose backward first makes the incoming gradient dense channels_last.

    In training the gradient reaching a decoder upsample is a channel slice of
    the ``torch.cat`` gradient: not dense, so PyTorch's upsample backward falls
    back to a transposing NCHW copy and its slow NCHW kernel (about a fifth of a
    bf16 CPU training step). A dense channels_last copy is cheap. The forward
    and the arithmetic of the backward are PyTorch's own.
    """

    @staticmethod
    def forward(ctx, x: Tensor, size: tuple[int, int]) -> Tensor:
        ctx.input_size = tuple(x.shape)
        ctx.output_size = tuple(size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous(memory_format=torch.channels_last)
        return torch.ops.aten.upsample_bilinear2d_backward(grad, ctx.output_size, ctx.input_size, False), None


def resize_to(x: Tensor, reference: Tensor) -> Tensor:
    """Bilinear resize (the paper's upsample) of `x` to `reference`'s spatial size.

    Args:
        x: a (B, C, h, w) tensor.
        reference: any tensor whose last two dimensions give the target size.

    Returns:
        `x` itself when the size already matches, else the resized tensor.
    """
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    size = tuple(reference.shape[-2:])
    if x.requires_grad and x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
        return _DenseGradResize.apply(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def downsample(x: Tensor) -> Tensor:
    """The paper's 2x2 max pooling, ceil mode, so odd sizes keep their last row and column.

    Args:
        x: a (B, C, H, W) tensor.

    Returns:
        A (B, C, ceil(H/2), ceil(W/2)) tensor.
    """
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution equal to ``bn(conv(x))`` with `bn` in eval mode (its running statistics).

    Args:
        conv: the convolution (with or without a bias).
        bn: the BatchNorm that follows it.

    Returns:
        A new convolution with a bias, on `conv`'s device and dtype.
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


#: Builds the module that replaces a convolution and the ReLU after it: ``make(conv, relu) -> module``.
ConvFactory = Callable[[nn.Conv2d, bool], nn.Module]


class ConvBNReLU(nn.Module):
    """The paper's REBNCONV: 3x3 (dilated) conv with bias, BatchNorm, ReLU.

    For inference it folds itself (:meth:`fuse`) and can hand its conv+ReLU
    pair to a faster kernel (:meth:`fuse_activation`).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_channels)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))

    @property
    def is_fused(self) -> bool:
        """Whether the BatchNorm has been folded into the convolution."""
        return not isinstance(self.bn_s1, nn.BatchNorm2d)

    def fuse(self) -> "ConvBNReLU":
        """Fold the BatchNorm into the convolution, in place, with eval-mode (running) statistics.

        Training changes the statistics, so fuse a copy meant for inference only.

        Returns:
            This module (a no-op when already fused).
        """
        if not self.is_fused:
            self.conv_s1 = fold_batchnorm(self.conv_s1, self.bn_s1)
            self.bn_s1 = nn.Identity()
        return self

    def fuse_activation(self, make: ConvFactory) -> "ConvBNReLU":
        """Replace the (folded) convolution and its ReLU by one module, ``make(conv, True)``, in place.

        Args:
            make: builds the conv+ReLU module, e.g. a fused oneDNN kernel.

        Returns:
            This module.

        Raises:
            RuntimeError: when the BatchNorm is still there (call :meth:`fuse` first).
        """
        if not self.is_fused:
            raise RuntimeError("fuse() the BatchNorm before fusing the activation")
        if isinstance(self.relu_s1, nn.ReLU):
            self.conv_s1 = make(self.conv_s1, True)
            self.relu_s1 = nn.Identity()
        return self


class RSU(nn.Module):
    """Residual U-block of height L (RSU-L), or its dilated variant RSU-LF.

    Encoder ``rebnconv1..L`` (2x2 ceil-mode pooling between the first L-1
    levels; the dilated kind never pools and doubles the dilation per level
    instead), decoder ``rebnconv{L-1}d..1d`` on (upsampled deeper, skip), and
    the block's input projection ``rebnconvin`` added back at the end.

    Args:
        height: L, the number of encoder levels (>= 2).
        in_channels: channels of the block's input.
        mid_channels: channels inside the U.
        out_channels: channels of the block's output.
        dilated: the "F" kind: no pooling, dilation 1, 2, 4, ... instead.
    """

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int, dilated: bool = False):
        super().__init__()
        if height < 2:
            raise ValueError(f"RSU height must be >= 2, got {height}")
        self.height = height
        self.dilated = dilated
        # Dilation per encoder level; the decoder level i reuses level i's dilation.
        if dilated:
            dilations = [2**i for i in range(height)]
        else:
            dilations = [1] * (height - 1) + [2]
        self.rebnconvin = ConvBNReLU(in_channels, out_channels)
        for level in range(1, height + 1):
            level_in = out_channels if level == 1 else mid_channels
            self.add_module(f"rebnconv{level}", ConvBNReLU(level_in, mid_channels, dilations[level - 1]))
        for level in range(height - 1, 0, -1):
            level_out = out_channels if level == 1 else mid_channels
            self.add_module(f"rebnconv{level}d", ConvBNReLU(2 * mid_channels, level_out, dilations[level - 1]))

    def forward(self, x: Tensor) -> Tensor:
        local = self.rebnconvin(x)
        h = getattr(self, "rebnconv1")(local)
        skips = [h]
        for level in range(2, self.height):
            if not self.dilated:
                h = downsample(h)
            h = getattr(self, f"rebnconv{level}")(h)
            skips.append(h)
        h = getattr(self, f"rebnconv{self.height}")(h)  # the bottom: dilated, no pooling
        for level in range(self.height - 1, 0, -1):
            skip = skips[level - 1]
            h = getattr(self, f"rebnconv{level}d")(torch.cat((resize_to(h, skip), skip), dim=1))
        return h + local


def build_block(spec: StageSpec) -> nn.Module:
    """The block one row of a stage table describes.

    Args:
        spec: the row (height, channel widths, dilated).

    Returns:
        A freshly initialised block module.
    """
    return RSU(
        height=spec.height,
        in_channels=spec.in_channels,
        mid_channels=spec.mid_channels,
        out_channels=spec.out_channels,
        dilated=spec.dilated,
    )


__all__ = ["ConvBNReLU", "ConvFactory", "RSU", "build_block", "downsample", "fold_batchnorm", "resize_to"]
