"""The building blocks of U²-Net: ConvBNReLU, the residual U-block (RSU), the resize and pooling ops,
and the blocks the paper compares RSU with (plain, residual, dense, inception, pyramid pooling).

Attribute names follow the authors' code (``rebnconvin``, ``rebnconv1``,
``conv_s1``, ...), so the released state dicts load with ``strict=True``.
Each block knows how to make its own inference form (``ConvBNReLU.fuse``),
so the fast path never reaches into attribute names.

Every stage block is built from the fields of a stage-table row, as keywords:
``Block(height=..., in_channels=..., mid_channels=..., out_channels=..., dilated=...)``
(see :func:`build_block`); the row's ``block`` field names which block.

The block study. The paper (Section 3.1, Fig. 2-3, and its ablation on blocks) asks what fills
each stage of the outer U best. Every block here has RSU's signature
``(height, in_channels, mid_channels, out_channels, dilated)`` and RSU's
contract: the output has ``out_channels`` channels at the input's resolution,
for any input size. How each one reads the stage's numbers, and why:

* All but the plain block open with RSU's ``rebnconvin`` (3x3, in -> out),
  the local features F1(x) of the paper's H(x) = U(F1(x)) + F1(x). The
  blocks then differ only in what they do with F1(x) -- the multi-scale
  part the study is about -- and not in how they adapt the channel count.
* ``mid_channels`` is the width of the block's inner layers (RSU's M): the
  residual branch's width, the dense growth rate, an inception branch's
  width, a pyramid level's width. The plain block has no inner width.
* ``height`` is RSU-L's L, the number of scales: dense takes L layers (one
  per RSU encoder level), inception L parallel branches with dilations
  1, 2, ..., 2^(L-1), pyramid pooling L-1 levels pooled 2x, 4x, ...,
  2^(L-1)x (the scales RSU-L's encoder visits). Plain and residual are
  single-scale by design and ignore it.
* ``dilated`` marks the deep stages whose maps are too small to pool (RSU-4F
  replaces pooling with dilation there). Only blocks that pool have a
  dilated form: RSU and pyramid pooling, whose levels become 3x3 convolutions
  with dilation 2^k at full resolution. The other blocks never pool and are
  the same in every stage.

Every convolution is a :class:`ConvBNReLU`, so BatchNorm folding and the
fused conv+ReLU fast path apply to every block alike.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configs import BLOCK_NAMES, StageSpec


class _DenseGradResize(torch.autograd.Function):
    """F.interpolate (bilinear) whose backward first makes the incoming gradient dense channels_last.

    In training the gradient reaching a decoder upsample is a channel slice of
    the ``torch.cat`` gradient: not dense, so PyTorch's upsample backward falls
    back to a transposing NCHW copy and its slow NCHW kernel (a large share of a
    bf16 CPU training step; see the docs' Performance page). A dense channels_last copy is cheap. The forward
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
    """The paper's REBNCONV: 3x3 (dilated) conv with bias, BatchNorm, ReLU (``kernel_size=1``: a 1x1 conv).

    For inference it folds itself (:meth:`fuse`) and can hand its conv+ReLU
    pair to a faster kernel (:meth:`fuse_activation`).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1, kernel_size: int = 3):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                                 dilation=dilation)
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


# ------------------------------------------------------- the blocks of the paper's comparison


def _check(height: int, in_channels: int, mid_channels: int, out_channels: int) -> None:
    if height < 2:
        raise ValueError(f"block height must be >= 2, got {height}")
    for name, value in (("in_channels", in_channels), ("mid_channels", mid_channels), ("out_channels", out_channels)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


class PlainBlock(nn.Module):
    """PLN: two 3x3 conv-BN-ReLU layers, in -> out -> out, the stage of a plain U-Net.

    No inner width, one scale (a 5x5 receptive field), no dilated form.
    """

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int, dilated: bool = False):
        super().__init__()
        _check(height, in_channels, mid_channels, out_channels)
        self.rebnconvin = ConvBNReLU(in_channels, out_channels)
        self.rebnconv1 = ConvBNReLU(out_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.rebnconv1(self.rebnconvin(x))


class ResidualBlock(nn.Module):
    """RES: F1(x) + F(F1(x)) with F two 3x3 layers out -> mid -> out.

    RSU with its U-structure replaced by a plain single-stream branch: exactly
    the difference the paper draws between RSU and a residual block.
    """

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int, dilated: bool = False):
        super().__init__()
        _check(height, in_channels, mid_channels, out_channels)
        self.rebnconvin = ConvBNReLU(in_channels, out_channels)
        self.rebnconv1 = ConvBNReLU(out_channels, mid_channels)
        self.rebnconv2 = ConvBNReLU(mid_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        local = self.rebnconvin(x)
        return self.rebnconv2(self.rebnconv1(local)) + local


class DenseBlock(nn.Module):
    """DSE: L densely connected 3x3 layers of growth `mid` on F1(x), then a 1x1 transition back to `out`.

    Layer i sees the concatenation of F1(x) and every earlier layer's output
    (DenseNet's connectivity), all at full resolution: feature reuse, but no
    larger scale, so its cost grows with L without its receptive field growing
    faster than a plain stack's.
    """

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int, dilated: bool = False):
        super().__init__()
        _check(height, in_channels, mid_channels, out_channels)
        self.height = height
        self.rebnconvin = ConvBNReLU(in_channels, out_channels)
        for layer in range(1, height + 1):
            self.add_module(f"dense{layer}", ConvBNReLU(out_channels + (layer - 1) * mid_channels, mid_channels))
        self.transition = ConvBNReLU(out_channels + height * mid_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        features = [self.rebnconvin(x)]
        for layer in range(1, self.height + 1):
            features.append(getattr(self, f"dense{layer}")(torch.cat(features, dim=1)))
        return self.transition(torch.cat(features, dim=1))


class InceptionBlock(nn.Module):
    """INC: L parallel 3x3 branches on F1(x) with dilations 1, 2, ..., 2^(L-1), concatenated with F1(x), 1x1 fuse.

    The inception answer to multi-scale features (the paper's Fig. 2c):
    widen the receptive field by dilation, every branch at full resolution.
    Already dilated, so the same block serves the dilated stages.
    """

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int, dilated: bool = False):
        super().__init__()
        _check(height, in_channels, mid_channels, out_channels)
        self.height = height
        self.rebnconvin = ConvBNReLU(in_channels, out_channels)
        for branch in range(1, height + 1):
            self.add_module(f"branch{branch}", ConvBNReLU(out_channels, mid_channels, dilation=2 ** (branch - 1)))
        self.fuse = ConvBNReLU(out_channels + height * mid_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        local = self.rebnconvin(x)
        branches = [getattr(self, f"branch{b}")(local) for b in range(1, self.height + 1)]
        return self.fuse(torch.cat([local, *branches], dim=1))


class PyramidPoolingBlock(nn.Module):
    """PPM: F1(x) average-pooled 2x, 4x, ..., 2^(L-1)x, a 3x3 layer (-> mid) per level, upsampled, concatenated
    with F1(x) and fused by a 3x3 layer (PSPNet's pyramid pooling module over RSU-L's scales).

    The paper's point against it: the context is computed on pooled maps and
    comes back by plain upsampling, without RSU's gradual decoder. Dilated
    form (for maps too small to pool): the level-k layer runs at full
    resolution with dilation 2^k instead of on a 2^k-times pooled map.
    """

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int, dilated: bool = False):
        super().__init__()
        _check(height, in_channels, mid_channels, out_channels)
        self.levels = height - 1
        self.dilated = dilated
        self.rebnconvin = ConvBNReLU(in_channels, out_channels)
        for level in range(1, self.levels + 1):
            dilation = 2**level if dilated else 1
            self.add_module(f"level{level}", ConvBNReLU(out_channels, mid_channels, dilation=dilation))
        self.fuse = ConvBNReLU(out_channels + self.levels * mid_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        local = self.rebnconvin(x)
        features = [local]
        height, width = local.shape[-2:]
        for level in range(1, self.levels + 1):
            conv = getattr(self, f"level{level}")
            if self.dilated:
                features.append(conv(local))
                continue
            factor = 2**level
            pooled = F.adaptive_avg_pool2d(local, (math.ceil(height / factor), math.ceil(width / factor)))
            features.append(resize_to(conv(pooled), local))
        return self.fuse(torch.cat(features, dim=1))


#: The blocks a stage may name, in the order of the paper's comparison (RSU, the default, first).
BLOCKS: dict[str, type[nn.Module]] = {
    "rsu": RSU,
    "plain": PlainBlock,
    "residual": ResidualBlock,
    "dense": DenseBlock,
    "inception": InceptionBlock,
    "ppm": PyramidPoolingBlock,
}
assert tuple(BLOCKS) == BLOCK_NAMES, "configs.BLOCK_NAMES and layers.BLOCKS must name the same blocks"

#: The paper's abbreviations (Fig. 2-3 and its ablation table).
PAPER_NAMES = {"rsu": "RSU", "plain": "PLN", "residual": "RES", "dense": "DSE", "inception": "INC", "ppm": "PPM"}


def build_block(spec: StageSpec) -> nn.Module:
    """The block one row of a stage table describes.

    Args:
        spec: the row (height, channel widths, dilated, and which block: ``spec.block``, a key of :data:`BLOCKS`).

    Returns:
        A freshly initialised block module.
    """
    try:
        cls = BLOCKS[spec.block]
    except KeyError:
        raise ValueError(f"unknown block {spec.block!r}; expected one of {list(BLOCKS)}") from None
    return cls(
        height=spec.height,
        in_channels=spec.in_channels,
        mid_channels=spec.mid_channels,
        out_channels=spec.out_channels,
        dilated=spec.dilated,
    )


__all__ = [
    "BLOCKS", "PAPER_NAMES", "ConvBNReLU", "ConvFactory", "DenseBlock", "InceptionBlock", "PlainBlock",
    "PyramidPoolingBlock", "RSU", "ResidualBlock", "build_block", "downsample", "fold_batchnorm", "resize_to",
]
