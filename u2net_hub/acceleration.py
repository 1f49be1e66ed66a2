"""The fast inference path: BatchNorm folded into the convolutions, channels_last, bf16 autocast.

U²-Net is 113 3x3 convolutions each followed by a BatchNorm; at inference the
BatchNorm is an affine map that can live inside the convolution's weights, and
oneDNN (CPU) and cuDNN run channels_last bf16 convolutions several times faster
than contiguous fp32. The exact fp32 model stays untouched: the fast copy is a
separate module, rebuilt whenever the source weights change.
"""

from __future__ import annotations

import contextlib
import copy
from functools import lru_cache

import torch
from torch import nn

_CACHE_ATTRIBUTE = "_u2net_fast_copy"


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution equal to ``bn(conv(x))`` in eval mode."""
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


def fold_all_batchnorms(model: nn.Module) -> nn.Module:
    """Fold every ConvBNReLU's BatchNorm into its convolution, in place."""
    from .modeling import ConvBNReLU

    for module in model.modules():
        if isinstance(module, ConvBNReLU) and isinstance(module.bn_s1, nn.BatchNorm2d):
            module.conv_s1 = fold_batchnorm(module.conv_s1, module.bn_s1)
            module.bn_s1 = nn.Identity()
    return model


def _fingerprint(model: nn.Module) -> tuple:
    """Changes whenever a weight is modified in place (optimizer step, load_state_dict) or moved."""
    tensors = list(model.parameters()) + list(model.buffers())
    first = tensors[0]
    return (len(tensors), sum(t._version for t in tensors), first.device, first.dtype, first.data_ptr())


def optimized_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with BatchNorm folded and channels_last memory, cached on the model."""
    fingerprint = _fingerprint(model)
    cached = model.__dict__.get(_CACHE_ATTRIBUTE)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    fast = copy.deepcopy(model)
    fast.__dict__.pop(_CACHE_ATTRIBUTE, None)
    fast.eval()
    fold_all_batchnorms(fast)
    fast = fast.to(memory_format=torch.channels_last)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    # Stored in __dict__ directly so it is not registered as a submodule (and never lands in state_dict).
    model.__dict__[_CACHE_ATTRIBUTE] = (fingerprint, fast)
    return fast


@lru_cache(maxsize=None)
def cpu_supports_bf16() -> bool:
    """True on x86 CPUs with native bf16 math (AVX-512 BF16 or AMX; read from /proc/cpuinfo on Linux).

    Plain AVX-512 CPUs emulate bf16 and gain little, so they do not count. Inference
    (`inference_autocast`) and training (`default_mixed_precision`) both decide by this.
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
    """The reduced precision worth using on `device`, or None where fp32 is the fastest."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return None


def inference_autocast(device: torch.device | str):
    """Autocast to bf16/fp16 where the hardware supports it; a no-op context elsewhere."""
    device = torch.device(device)
    dtype = fast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
