"""The fast inference path: BatchNorm folded into the convolutions, fused conv+ReLU, channels_last, bf16.

U²-Net is 113 3x3 convolutions each followed by a BatchNorm and a ReLU; at
inference the BatchNorm is an affine map that can live inside the convolution's
weights, oneDNN (CPU) can apply the ReLU while it writes the convolution's output,
and oneDNN and cuDNN run channels_last bf16 convolutions several times faster
than contiguous fp32. The weights are converted to that dtype once, so nothing
is cast per call (autocast would cast every weight on every forward). The exact
fp32 model stays untouched: the fast copy is a separate module, rebuilt
whenever the source weights change. Weights that bf16 would visibly change (the authors' released
u2netp and its fine-tunes, the bundled model among them) are detected once and run folded and fused in
float32 instead (:func:`keeps_its_map`). (The allocator settings documented here live in
:mod:`u2net_hub.allocator`.)
"""

from __future__ import annotations

import copy
import logging
import os
from functools import lru_cache

import torch
from torch import nn

from .allocator import freed_memory_reused, reuse_freed_memory  # re-exported: their documented home
from .configs import IMAGENET_MEAN, IMAGENET_STD
from .layers import ConvBNReLU

_CACHE_ATTRIBUTE = "_u2net_fast_copy"
logger = logging.getLogger(__name__)


def fold_all_batchnorms(model: nn.Module) -> nn.Module:
    """Fold every ConvBNReLU's BatchNorm into its convolution, in place (:meth:`ConvBNReLU.fuse`).

    Args:
        model: a model in eval mode (the running statistics are what is folded).

    Returns:
        The same model.
    """
    for module in model.modules():
        if isinstance(module, ConvBNReLU):
            module.fuse()
    return model


class FusedConv2d(nn.Module):
    """A 3x3/1x1 convolution with its ReLU fused in, on oneDNN's CPU kernel (one pass over the output).

    The weight is kept in the inference dtype and channels_last, so nothing is
    cast or reordered per call; eager PyTorch would cast the weight under
    autocast and run the ReLU as a second pass over memory.
    """

    def __init__(self, conv: nn.Conv2d, relu: bool, dtype: torch.dtype):
        super().__init__()
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.activation = "relu" if relu else "none"
        weight = conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
        bias = conv.bias.detach().to(dtype) if conv.bias is not None else None
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, self.activation, [], ""
        )


@lru_cache(maxsize=None)
def cpu_fused_conv_works(dtype: torch.dtype) -> bool:
    """Whether this PyTorch build has oneDNN's fused conv+ReLU op and it computes conv then ReLU in `dtype`.

    The op is internal to PyTorch (Inductor emits it), so it is checked once on a
    small problem rather than trusted; when it is missing or wrong the fast
    path simply keeps separate convolution and ReLU modules.

    Args:
        dtype: the dtype the fast path would run in.

    Returns:
        True when the fused op exists and computes conv then ReLU within tolerance.
    """
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return False
    try:
        generator = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(8, 16, 3, padding=2, dilation=2)
        x = torch.randn(2, 8, 9, 7, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            fused = FusedConv2d(conv, relu=True, dtype=dtype)(x).float()
            expected = torch.relu(nn.functional.conv2d(x.float(), conv.weight.to(dtype).float(), conv.bias.to(dtype).float(),
                                                       padding=2, dilation=2))
        tolerance = 1e-4 if dtype == torch.float32 else 5e-2
        return fused.shape == expected.shape and bool((fused - expected).abs().max() <= tolerance)
    except Exception:  # noqa: BLE001 - any failure means "do not use it"
        return False


def fuse_convolutions(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Run every convolution of `model` on oneDNN's fused kernel (`FusedConv2d`), in place.

    Folded ConvBNReLUs hand over their conv+ReLU pair (:meth:`ConvBNReLU.fuse_activation`);
    every other ``nn.Conv2d`` (the side heads, the fusion, any plain convolution a block
    has) becomes a `FusedConv2d` without activation, wherever it sits.

    Args:
        model: the (BatchNorm-folded) copy to change.
        dtype: the dtype the fused weights are stored in.

    Returns:
        The same model.
    """
    def make(conv: nn.Conv2d, relu: bool) -> FusedConv2d:
        return FusedConv2d(conv, relu=relu, dtype=dtype)

    for module in list(model.modules()):
        if isinstance(module, ConvBNReLU) and module.is_fused:
            module.fuse_activation(make)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                setattr(parent, name, make(child, False))
    return model


class InferenceNetwork(nn.Module):
    """The fast copy of a U2Net: takes float input of any dtype and layout, runs in `dtype`, channels_last."""

    def __init__(self, network: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.network = network
        self.dtype = dtype

    def forward(self, x: torch.Tensor):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return self.network(x)  # let the model's own input check explain the problem
        x = to_channels_last(x.to(self.dtype))
        cudnn = torch.backends.cudnn
        if not x.is_cuda or cudnn.benchmark or cudnn.deterministic or torch.are_deterministic_algorithms_enabled():
            return self.network(x)
        # Inputs are always the model's input size, so cuDNN's autotuner pays for itself after the first
        # batch; it is switched on for this call only, leaving the caller's setting alone.
        cudnn.benchmark = True
        try:
            return self.network(x)
        finally:
            cudnn.benchmark = False


def _fast_copy(model: nn.Module, dtype: torch.dtype) -> InferenceNetwork:
    """An eval-mode copy of `model`, BatchNorm folded, fused on CPU, channels_last, in `dtype`."""
    network = copy.deepcopy(model)
    network.__dict__.pop(_CACHE_ATTRIBUTE, None)
    network.eval()
    fold_all_batchnorms(network)
    if next(model.parameters()).device.type == "cpu" and cpu_fused_conv_works(dtype):
        fuse_convolutions(network, dtype)
    network = network.to(dtype=dtype, memory_format=torch.channels_last)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return InferenceNetwork(network, dtype)


#: The largest change of the probe's probability map, at any pixel, that bf16/fp16 may make (keeps_its_map).
MAP_TOLERANCE = 0.1


def probe_batch(model: nn.Module, device: torch.device) -> torch.Tensor:
    """A fixed, photo-like input at the model's input size: smooth random colours with fine noise, normalised."""
    settings = getattr(model, "preprocessing", None)
    size = getattr(settings, "input_size", 320)
    generator = torch.Generator().manual_seed(0)
    smooth = nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=generator), size=(size, size),
                                       mode="bicubic", align_corners=False).clamp(0, 1)
    image = smooth + 0.05 * torch.randn(1, 3, size, size, generator=generator)
    mean = torch.tensor(getattr(settings, "mean", IMAGENET_MEAN)).view(1, 3, 1, 1)
    std = torch.tensor(getattr(settings, "std", IMAGENET_STD)).view(1, 3, 1, 1)
    return ((image - mean) / std).to(device)


def keeps_its_map(reduced: InferenceNetwork, exact: InferenceNetwork, probe: torch.Tensor) -> bool:
    """Whether a reduced-precision fast copy gives the probe the float32 copy's map, within MAP_TOLERANCE.

    Why: some weights are ill-conditioned. The authors' released u2netp (and models fine-tuned from it) cancel
    pre-activations in the thousands inside stage 2 of the decoder, so bf16's rounding of that stage's input
    moves the map by up to 0.5 at edges and costs about 0.01 of maxF on real photos; weights trained here from
    scratch move by 0.03. One probe forward per precision, once per set of weights, tells them apart.
    """
    with torch.inference_mode():
        maps = [network(probe).logits.float().sigmoid() for network in (reduced, exact)]
    return bool((maps[0] - maps[1]).abs().max() <= MAP_TOLERANCE)


def _fingerprint(model: nn.Module) -> tuple:
    """Changes whenever a weight is modified in place (optimizer step, load_state_dict) or moved."""
    tensors = list(model.parameters()) + list(model.buffers())
    first = tensors[0]
    return (len(tensors), sum(t._version for t in tensors), first.device, first.dtype, first.data_ptr())


def optimized_for_inference(model: nn.Module, dtype: torch.dtype | None = None, compile: bool = False) -> InferenceNetwork:
    """A cached eval-mode copy of `model` for inference: BatchNorm folded, channels_last, in `dtype`.

    `dtype` defaults to `fast_dtype` of the model's device (bf16 on CUDA and on
    CPUs with native bf16, else float32), unless that would change the model's map
    (:func:`keeps_its_map`): then float32. On CPU each conv+ReLU also becomes
    one fused oneDNN call. The weights are converted once here, not per call.
    ``compile=True`` also wraps the copy in ``torch.compile`` (the first call
    per input shape then takes a while to compile; worth it for long batch jobs on GPU).

    Args:
        model: the exact model; it is never modified.
        dtype: the dtype to run in (default: :func:`fast_dtype` of the model's device where the map
            keeps, else float32); an explicit dtype is used as given.
        compile: wrap the copy in ``torch.compile``.

    Returns:
        The fast copy, rebuilt only when the model's weights, device or dtype changed.
    """
    device = next(model.parameters()).device
    fingerprint = (_fingerprint(model), dtype, bool(compile))  # dtype None: chosen here, once per weights
    cached = model.__dict__.get(_CACHE_ATTRIBUTE)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    network = _fast_copy(model, dtype or fast_dtype(device) or torch.float32)
    if dtype is None and network.dtype != torch.float32:
        exact = _fast_copy(model, torch.float32)
        if not keeps_its_map(network, exact, probe_batch(model, device)):
            logger.info("the fast path runs this model in float32: in %s its map would change by more than %s",
                        network.dtype, MAP_TOLERANCE)
            network = exact
    fast = InferenceNetwork(torch.compile(network.network), network.dtype) if compile else network
    # Stored in __dict__ directly so it is not registered as a submodule (and never lands in state_dict).
    model.__dict__[_CACHE_ATTRIBUTE] = (fingerprint, fast)
    return fast


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one), at least one."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@lru_cache(maxsize=None)
def cpu_supports_bf16() -> bool:
    """True on x86 CPUs with native bf16 math (AVX-512 BF16 or AMX; read from /proc/cpuinfo on Linux).

    Plain AVX-512 CPUs emulate bf16 and gain little, so they do not count. Inference
    (`optimized_for_inference`) and training (`default_mixed_precision`) both decide by this.

    Returns:
        Whether this CPU computes in bf16 natively.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def fast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The reduced precision worth using on `device`.

    Args:
        device: a torch device or its name.

    Returns:
        bf16 (or fp16 on GPUs without bf16), or None where fp32 is the fastest.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return None


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A batch in channels_last memory order (what oneDNN and cuDNN run fastest).

    Args:
        x: any tensor.

    Returns:
        `x` in channels_last order when it is 4-D, else `x` as it is.
    """
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
