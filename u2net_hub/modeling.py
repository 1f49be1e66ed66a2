"""U²-Net: one generic residual U-block (RSU), stacked into a U of RSUs by a stage table.

Module and attribute names follow the authors' code exactly, so the released
state dicts load with ``strict=True`` and no key renaming.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from torch import Tensor, nn

from .configs import (
    DECODER_STAGES,
    ENCODER_STAGES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ConfigError,
    Preprocessing,
    StageSpec,
    resolve_stages,
    variant_of,
)
from .hub import (
    CheckpointMismatchError,
    check_state_dict,
    load_safetensors_state_dict,
    render_model_card,
)

SIDE_COUNT = 6


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


def _resize_to(x: Tensor, reference: Tensor) -> Tensor:
    """Bilinear resize to `reference`'s spatial size (a no-op when it already matches)."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    size = tuple(reference.shape[-2:])
    if x.requires_grad and x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
        return _DenseGradResize.apply(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Module):
    """The paper's REBNCONV: 3x3 (dilated) conv with bias, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_channels)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of height L (RSU-L), or its dilated variant RSU-LF.

    Encoder ``rebnconv1..L`` (2x2 ceil-mode pooling between the first L-1
    levels; the dilated kind never pools and doubles the dilation per level
    instead), decoder ``rebnconv{L-1}d..1d`` on (upsampled deeper, skip), and
    the block's input projection ``rebnconvin`` added back at the end.
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
                h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            h = getattr(self, f"rebnconv{level}")(h)
            skips.append(h)
        h = getattr(self, f"rebnconv{self.height}")(h)  # the bottom: dilated, no pooling
        for level in range(self.height - 1, 0, -1):
            skip = skips[level - 1]
            h = getattr(self, f"rebnconv{level}d")(torch.cat((_resize_to(h, skip), skip), dim=1))
        return h + local


@dataclass
class U2NetOutput:
    """Logits of the fused map and of the six side maps, all at the input's size.

    ``sigmoid`` of them are the original network's seven outputs
    (``probabilities()`` returns them in the original order, fused first).
    """

    logits: Tensor
    side_logits: tuple[Tensor, ...]

    def probabilities(self) -> tuple[Tensor, ...]:
        return (torch.sigmoid(self.logits), *(torch.sigmoid(s) for s in self.side_logits))

    @property
    def all_logits(self) -> tuple[Tensor, ...]:
        """Fused first, then side1..side6: the order deep supervision sums over."""
        return (self.logits, *self.side_logits)


class U2Net(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="u2net-hub",
    pipeline_tag="image-segmentation",
    license="apache-2.0",
    repo_url="https://github.com/xuebinqin/U-2-Net",
    paper_url="https://arxiv.org/abs/2005.09007",
    tags=["u2net", "salient-object-detection", "background-removal", "image-segmentation"],
):
    """U²-Net for salient object detection, in the "full" or "tiny" configuration or a custom stage table.

    ``forward`` returns :class:`U2NetOutput` logits; ``predict`` (see
    :mod:`u2net_hub.inference`) takes images and returns masks at their size.
    Loading through :meth:`from_pretrained` is strict: every key and shape must match.
    """

    def __init__(
        self,
        variant: str = "full",
        stages: dict | None = None,
        in_channels: int = 3,
        out_channels: int = 1,
        input_size: int = 320,
        mean: list | None = None,
        std: list | None = None,
        divide_by_max: bool = True,
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("input_size", input_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        table = resolve_stages(variant if stages is None else None, stages, in_channels)
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
        self.stages: dict[str, StageSpec] = table
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.preprocessing = Preprocessing(input_size, mean, std, bool(divide_by_max))

        for name in ENCODER_STAGES + DECODER_STAGES:
            spec = table[name]
            self.add_module(name, RSU(spec.height, spec.in_channels, spec.mid_channels, spec.out_channels, spec.dilated))
        side_inputs = [table[f"stage{i}d"].out_channels for i in range(1, 6)] + [table["stage6"].out_channels]
        for index, channels in enumerate(side_inputs, start=1):
            self.add_module(f"side{index}", nn.Conv2d(channels, out_channels, 3, padding=1))
        self.outconv = nn.Conv2d(SIDE_COUNT * out_channels, out_channels, 1)

        # What save_pretrained writes to config.json: always the expanded, complete description.
        self._hub_mixin_config = self.config
        self.eval()

    # ------------------------------------------------------------------ config

    @property
    def config(self) -> dict[str, Any]:
        """A JSON-ready description that rebuilds this exact model."""
        return {
            "variant": self.variant,
            "stages": {name: spec.to_dict() for name, spec in self.stages.items()},
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "input_size": self.preprocessing.input_size,
            "mean": list(self.preprocessing.mean),
            "std": list(self.preprocessing.std),
            "divide_by_max": self.preprocessing.divide_by_max,
        }

    @property
    def num_parameters(self) -> int:
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
        self._check_input(x)
        skips = []
        h = x
        for index, name in enumerate(ENCODER_STAGES):
            if index > 0:
                h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            h = getattr(self, name)(h)
            skips.append(h)
        deepest = skips.pop()  # stage6
        decoded = [deepest]
        h = deepest
        for name, skip in zip(DECODER_STAGES, reversed(skips)):
            h = getattr(self, name)(torch.cat((_resize_to(h, skip), skip), dim=1))
            decoded.append(h)
        # decoded = [stage6, stage5d, stage4d, stage3d, stage2d, stage1d]; side k reads the k-th from the end.
        side1 = self.side1(decoded[-1])
        sides = [side1] + [
            _resize_to(getattr(self, f"side{k}")(decoded[-k]), side1) for k in range(2, SIDE_COUNT + 1)
        ]
        fused = self.outconv(torch.cat(sides, dim=1))
        return U2NetOutput(logits=fused, side_logits=tuple(sides))

    # ---------------------------------------------------------------- the Hub

    def predict(self, images, **kwargs):
        """Masks for images at their own size; see :func:`u2net_hub.inference.predict`."""
        from .inference import predict

        return predict(self, images, **kwargs)

    def save_pretrained(self, save_directory, *, config=None, **kwargs):
        return super().save_pretrained(save_directory, config=config or self.config, **kwargs)

    def generate_model_card(self, *args, **kwargs):
        return render_model_card(self, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a folder or Hub repo written by :meth:`save_pretrained`; strict about keys, shapes and config."""
        local_config = Path(pretrained_model_name_or_path) / constants.CONFIG_NAME
        try:
            if local_config.is_file() and not isinstance(json.loads(local_config.read_text()), dict):
                raise ConfigError(f"config.json of {pretrained_model_name_or_path} must hold a JSON object")
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config.json of {pretrained_model_name_or_path} is not valid JSON: {error}") from None

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir,
        force_download: bool,
        local_files_only: bool,
        token,
        map_location: str = "cpu",
        strict: bool = True,
        config: Mapping[str, Any] | None = None,
        **model_kwargs,
    ):
        if config is None:
            raise ConfigError(
                f"{model_id} has no config.json; a U²-Net folder needs one (write it with save_pretrained, "
                "or convert a released .pth with `u2net convert`)"
            )
        if not isinstance(config, Mapping):
            raise ConfigError(f"config.json of {model_id} must hold a JSON object, got {type(config).__name__}")
        known = set(cls._hub_mixin_init_parameters) - {"self"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"config.json of {model_id} has unknown keys {unknown}; known keys are {sorted(known)}")
        # Strict loads replace every tensor, so build on the meta device and skip the random initialisation.
        with torch.device("meta" if strict else "cpu"):
            model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            if not os.path.isfile(model_file):
                raise FileNotFoundError(f"{model_id} has no {constants.SAFETENSORS_SINGLE_FILE}")
        else:
            model_file = hf_hub_download(
                repo_id=model_id,
                filename=constants.SAFETENSORS_SINGLE_FILE,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        state_dict = load_safetensors_state_dict(model_file)
        if strict:
            check_state_dict(model, state_dict, source=model_id)
        model.load_state_dict(state_dict, strict=strict, assign=strict)
        model.to(map_location)
        model.eval()
        return model


__all__ = ["ConvBNReLU", "RSU", "U2Net", "U2NetOutput", "CheckpointMismatchError"]
