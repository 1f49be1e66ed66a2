"""U²-Net: the stage table stacked into a U of blocks, six side heads and their fusion.

Module and attribute names follow the authors' code exactly, so the released
state dicts load with ``strict=True`` and no key renaming. The blocks live in
:mod:`u2net_hub.layers`, the Hub behaviour in :class:`u2net_hub.hub.HubMixin`
and ``predict`` in :mod:`u2net_hub.inference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .configs import (
    DECODER_STAGES,
    ENCODER_STAGES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PARAMETER_COUNTS,
    VARIANTS,
    ConfigError,
    Preprocessing,
    StageSpec,
    block_of,
    resolve_stages,
    variant_of,
)
from .hub import CheckpointMismatchError, HubMixin
from .inference import predict as _predict
from .layers import RSU, ConvBNReLU, build_block, downsample, resize_to

SIDE_COUNT = 6


@dataclass
class U2NetOutput:
    """Logits of the fused map and of the six side maps, all at the input's size.

    ``sigmoid`` of them are the original network's seven outputs
    (``probabilities()`` returns them in the original order, fused first).
    """

    logits: Tensor
    side_logits: tuple[Tensor, ...]

    def probabilities(self) -> tuple[Tensor, ...]:
        """The seven saliency maps in [0, 1], fused first, then side1..side6 (the original's order).

        Returns:
            A tuple of seven (B, C, H, W) tensors.
        """
        return (torch.sigmoid(self.logits), *(torch.sigmoid(s) for s in self.side_logits))

    @property
    def all_logits(self) -> tuple[Tensor, ...]:
        """Fused first, then side1..side6: the order deep supervision sums over."""
        return (self.logits, *self.side_logits)


class U2Net(nn.Module, HubMixin):
    """U²-Net for salient object detection, in the "full" or "tiny" configuration or a custom stage table.

    ``forward`` returns :class:`U2NetOutput` logits; ``predict`` (see
    :func:`u2net_hub.inference.predict`) takes images and returns masks at their size.
    A new model is in training mode, as every PyTorch module;
    :meth:`from_pretrained` returns it in eval mode and is strict: every key and shape must match.

    Args:
        variant: "full" (44.0 M parameters) or "tiny" (1.1 M; also "u2net" / "u2netp"),
            or "custom" with `stages`.
        stages: a custom stage table (stage name to StageSpec or its dict), instead of a variant;
            each row may name its block (see :mod:`u2net_hub.layers`).
        block: the block of every stage: "rsu" (the paper's, the default), "plain", "residual",
            "dense", "inception" or "ppm" (``U2Net(variant="tiny", block="plain")``); "mixed" when
            `stages` names a block per stage.
        in_channels: image channels.
        out_channels: maps per output (1 for saliency).
        input_size: the square size images are resized to before the network.
        mean: per-channel normalisation mean (ImageNet's by default).
        std: per-channel normalisation standard deviation (ImageNet's by default).
        divide_by_max: divide each image by its own maximum (the original) instead of by 255.
        flip_average: at test time (``predict`` and everything built on it), average the logits of
            the image and of its mirror image; ``forward`` is never affected. Off by default (the
            original's outputs); the bundled demo model turns it on in its config.json.
    """

    def __init__(
        self,
        variant: str = "full",
        stages: dict | None = None,
        block: str | None = None,
        in_channels: int = 3,
        out_channels: int = 1,
        input_size: int = 320,
        mean: list | None = None,
        std: list | None = None,
        divide_by_max: bool = True,
        flip_average: bool = False,
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("input_size", input_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if block == "mixed" and stages is None:
            raise ConfigError("block 'mixed' means the stage table names each stage's block; give 'stages'")
        table = resolve_stages(variant if stages is None else None, stages, in_channels,
                               block=None if block == "mixed" else block)
        if block is not None and block_of(table) != block:
            raise ConfigError(
                f"the configuration names block {block!r} but its stage table has {block_of(table)!r} stages; "
                "fix 'block' or the stages' 'block' entries"
            )
        detected = variant_of(table)
        if stages is not None and variant not in (None, "custom", detected):
            raise ConfigError(
                f"the configuration names variant {variant!r} but its stage table is the {detected!r} one; "
                "fix 'variant' or 'stages' in config.json"
            )
        mean = tuple(IMAGENET_MEAN if mean is None else mean)
        std = tuple(IMAGENET_STD if std is None else std)
        if len(mean) != in_channels or len(std) != in_channels or any(s <= 0 for s in std):
            raise ConfigError(f"mean and std need {in_channels} values (std > 0), got mean={mean}, std={std}")

        self.variant = detected
        #: The block of every stage ('rsu', 'plain', ...), or 'mixed' when the stages differ.
        self.block = block_of(table)
        self.stages: dict[str, StageSpec] = table
        self.in_channels = in_channels
        self.out_channels = out_channels
        if not isinstance(flip_average, bool):
            raise ConfigError(f"flip_average must be true or false, got {flip_average!r}")
        self.preprocessing = Preprocessing(input_size, mean, std, bool(divide_by_max), flip_average)

        for name in ENCODER_STAGES + DECODER_STAGES:
            self.add_module(name, build_block(table[name]))
        side_inputs = [table[f"stage{i}d"].out_channels for i in range(1, 6)] + [table["stage6"].out_channels]
        for index, channels in enumerate(side_inputs, start=1):
            self.add_module(f"side{index}", nn.Conv2d(channels, out_channels, 3, padding=1))
        self.outconv = nn.Conv2d(SIDE_COUNT * out_channels, out_channels, 1)

    # ------------------------------------------------------------------ config

    @property
    def config(self) -> dict[str, Any]:
        """A JSON-ready description that rebuilds this exact model (what config.json holds)."""
        return {
            "variant": self.variant,
            "block": self.block,
            "stages": {name: spec.to_dict() for name, spec in self.stages.items()},
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "input_size": self.preprocessing.input_size,
            "mean": list(self.preprocessing.mean),
            "std": list(self.preprocessing.std),
            "divide_by_max": self.preprocessing.divide_by_max,
            # written only when on, so the paper's configs stay as they were
            **({"flip_average": True} if self.preprocessing.flip_average else {}),
        }

    @property
    def num_parameters(self) -> int:
        """The number of parameters (44,009,869 for "full", 1,131,181 for "tiny")."""
        return sum(p.numel() for p in self.parameters())

    # ----------------------------------------------------------------- forward

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"U2Net.forward takes a torch.Tensor of shape (B, {self.in_channels}, H, W); got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a (B, {self.in_channels}, H, W) tensor, got shape {tuple(x.shape)}; "
                "use model.predict() for images, or add a batch dimension with x.unsqueeze(0)"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"expected a floating point tensor, got {x.dtype}; normalise images first "
                "(u2net_hub.processing.preprocess) or call model.predict()"
            )
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"empty input of shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> U2NetOutput:
        """Run the network on normalised images.

        Args:
            x: a (B, in_channels, H, W) float tensor, any H and W.

        Returns:
            The fused and side logits, all at H x W.
        """
        self._check_input(x)
        skips = []
        h = x
        for index, name in enumerate(ENCODER_STAGES):
            if index > 0:
                h = downsample(h)
            h = getattr(self, name)(h)
            skips.append(h)
        deepest = skips.pop()  # stage6
        decoded = [deepest]
        h = deepest
        for name, skip in zip(DECODER_STAGES, reversed(skips)):
            h = getattr(self, name)(torch.cat((resize_to(h, skip), skip), dim=1))
            decoded.append(h)
        # decoded = [stage6, stage5d, stage4d, stage3d, stage2d, stage1d]; side k reads the k-th from the end.
        side1 = self.side1(decoded[-1])
        sides = [side1] + [
            resize_to(getattr(self, f"side{k}")(decoded[-k]), side1) for k in range(2, SIDE_COUNT + 1)
        ]
        fused = self.outconv(torch.cat(sides, dim=1))
        return U2NetOutput(logits=fused, side_logits=tuple(sides))

    #: Masks for images at their own size: :func:`u2net_hub.inference.predict` with this model.
    predict = _predict

    # ------------------------------------------------------ describing weights

    def _mismatch_hint(self, state_dict: Mapping[str, Any], source: str) -> str | None:
        detected = detect_variant(state_dict)
        if detected is not None and self.block != "rsu":
            return (f"{source} holds the RSU weights of the {detected!r} variant but the configuration builds "
                    f"{self.block!r} blocks")
        if detected is None or detected == self.variant:
            return None
        return (
            f"{source} holds weights of the {detected!r} variant "
            f"({PARAMETER_COUNTS[detected]:,} parameters) but the configuration builds the {self.variant!r} one"
        )


@lru_cache(maxsize=None)
def variant_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Every key and shape of a published variant, in state-dict order.

    Args:
        variant: "full" or "tiny".

    Returns:
        Key to shape; computed once, on the meta device (no memory).
    """
    with torch.device("meta"):
        model = U2Net(variant=variant)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def detect_variant(state_dict: Mapping[str, Any]) -> str | None:
    """Which published variant a state dict holds.

    ``num_batches_tracked`` may be absent (PyTorch 0.4 checkpoints predate it).

    Args:
        state_dict: the weights.

    Returns:
        "full" or "tiny" when every weight has that variant's shape, else None.
    """
    for variant in VARIANTS:
        shapes = variant_shapes(variant)
        required = {k for k in shapes if not k.endswith("num_batches_tracked")}
        if required <= set(state_dict) and set(state_dict) <= set(shapes):
            if all(tuple(state_dict[k].shape) == shapes[k] for k in state_dict):
                return variant
    return None


__all__ = [
    "ConvBNReLU", "RSU", "SIDE_COUNT", "U2Net", "U2NetOutput", "CheckpointMismatchError", "detect_variant", "variant_shapes",
]
