"""The fast path must compute the same network: folding is exact, the cache never serves stale weights."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from u2net_hub import DEMO_MODEL, U2Net
from u2net_hub.acceleration import (
    FusedConv2d,
    cpu_fused_conv_works,
    keeps_its_map,
    optimized_for_inference,
    probe_batch,
)
from u2net_hub.layers import fold_batchnorm


def test_folded_conv_equals_conv_then_batchnorm():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2), torch.nn.BatchNorm2d(6)
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2), bn.bias.data.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 4, 11, 13)
    torch.testing.assert_close(fold_batchnorm(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_folded_fp32_network_matches_the_exact_model(make_tiny_model):
    model = make_tiny_model()
    fast = optimized_for_inference(model, dtype=torch.float32)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the exact model must stay untouched"
    assert "_u2net_fast_copy" not in "".join(model.state_dict())
    x = torch.randn(2, 3, 61, 83)
    with torch.inference_mode():
        exact, folded = model(x).probabilities(), fast(x).probabilities()
    for a, b in zip(exact, folded):
        assert (a - b).abs().max().item() <= 1e-5


def test_reduced_precision_path_stays_close(make_tiny_model):
    model = make_tiny_model()
    x = torch.randn(1, 3, 96, 128)
    with torch.inference_mode():
        exact = torch.sigmoid(model(x).logits)
        fast = torch.sigmoid(optimized_for_inference(model, dtype=torch.bfloat16)(x).logits.float())
    assert (exact - fast).abs().max().item() <= 0.02


def test_the_precision_check_tells_ill_conditioned_weights_from_sound_ones():
    """The bundled model comes from the authors' released u2netp, whose decoder cancels pre-activations in the
    thousands: in bf16 the probe's map moves by 0.31 (the released u2netp: 0.48), so the fast path keeps it in
    float32. A freshly initialised network moves by 0.0005, the previous bundled model (trained from scratch) by
    0.03: those stay in bf16. bf16 is emulated where the CPU lacks it, so this runs anywhere."""
    for model, keeps in ((U2Net.from_pretrained(DEMO_MODEL), False), (U2Net(variant="tiny").eval(), True)):
        probe = probe_batch(model, torch.device("cpu"))
        reduced = optimized_for_inference(model, dtype=torch.bfloat16)
        exact = optimized_for_inference(model, dtype=torch.float32)
        assert reduced.dtype == torch.bfloat16, "an explicit dtype is used as given"
        assert keeps_its_map(reduced, exact, probe) is keeps


def test_cache_is_rebuilt_when_weights_change(make_tiny_model):
    model = make_tiny_model()
    first = optimized_for_inference(model, dtype=torch.float32)
    assert optimized_for_inference(model, dtype=torch.float32) is first
    with torch.no_grad():
        model.side1.bias.add_(5.0)
    second = optimized_for_inference(model, dtype=torch.float32)
    assert second is not first
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(second(x).side_logits[0], model(x).side_logits[0], atol=1e-4, rtol=1e-4)


def test_fused_conv_relu_equals_conv_then_relu():
    """oneDNN's fused op (internal to PyTorch) must compute exactly conv then ReLU, dilation and odd sizes included."""
    assert cpu_fused_conv_works(torch.float32), "this PyTorch build lacks oneDNN's fused convolution"
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, 3, padding=4, dilation=4)
    x = torch.randn(3, 5, 17, 10)
    with torch.inference_mode():
        for relu in (True, False):
            expected = conv(x).relu() if relu else conv(x)
            torch.testing.assert_close(FusedConv2d(conv, relu=relu, dtype=torch.float32)(x), expected, atol=1e-5, rtol=1e-5)


def test_default_fast_copy_fuses_every_convolution_and_keeps_the_exact_model(make_tiny_model):
    model = make_tiny_model()
    fast = optimized_for_inference(model)
    fused = [m for m in fast.modules() if isinstance(m, FusedConv2d)]
    plain = [m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(fused) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) and not plain
    assert fast.dtype in (torch.float32, torch.bfloat16)
    x = torch.randn(2, 3, 45, 70)  # float32 in, whatever the fast copy's dtype
    with torch.inference_mode():
        out = fast(x)
    assert out.logits.shape == (2, 1, 45, 70) and out.logits.dtype == fast.dtype
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_compile_is_refused_for_the_exact_path(make_tiny_model):
    model = make_tiny_model()
    with pytest.raises(ValueError, match="fast=False"):
        model.predict(np.zeros((8, 8, 3), dtype=np.uint8), fast=False, compile=True)


def test_compiled_fast_path_gives_the_fast_paths_masks():
    """predict(compile=True) really runs torch.compile (fused oneDNN ops included) and changes nothing in the output."""
    torch.manual_seed(0)
    stages = U2Net(variant="tiny").config["stages"]
    for spec in stages.values():  # a small custom table: the same kinds of layers, a quicker compile
        spec["height"], spec["mid_channels"] = 2, 4
    model = U2Net(variant="custom", stages=stages, input_size=32)
    image = (np.random.default_rng(0).random((30, 41, 3)) * 255).astype(np.uint8)
    compiled = model.predict(image, compile=True)
    assert isinstance(optimized_for_inference(model, compile=True).network, torch._dynamo.eval_frame.OptimizedModule)
    plain = model.predict(image)
    assert compiled.probability.shape == (30, 41)
    assert np.abs(compiled.probability - plain.probability).max() <= 1e-3


_ALLOCATOR_PROBE = """
import ctypes, json, sys

real_cdll = ctypes.CDLL
calls = []


class RecordingMallopt:
    # Wraps libc's real mallopt: records each (parameter, value) and what glibc answered.
    def __init__(self, function):
        self.function = function

    def __setattr__(self, name, value):
        if name == "function":
            object.__setattr__(self, name, value)
        else:
            setattr(self.function, name, value)  # argtypes / restype reach the real function

    def __call__(self, parameter, value):
        answer = self.function(parameter, value)
        calls.append([parameter, value, answer])
        return answer


class Libc:
    def __init__(self, library):
        self.library = library

    def __getattr__(self, name):
        function = getattr(self.library, name)
        return RecordingMallopt(function) if name == "mallopt" else function


ctypes.CDLL = lambda name, *args, **kwargs: Libc(real_cdll(name, *args, **kwargs))
from u2net_hub.acceleration import reuse_freed_memory

libc = real_cdll("libc.so.6")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def mapped_blocks_for(size):
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    after = libc.mallinfo2().hblks
    libc.free(block)
    return after - before


result = {"mapped_64mb_before": mapped_blocks_for(64 << 20)}
result["returned"] = reuse_freed_memory(every_size=sys.argv[1] == "every_size")
result["calls"] = calls
result["mapped_16mb_after"] = mapped_blocks_for(16 << 20)
result["mapped_64mb_after"] = mapped_blocks_for(64 << 20)
print(json.dumps(result))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
@pytest.mark.parametrize("mode", ["default", "every_size"])
def test_reuse_freed_memory_sets_glibcs_thresholds(mode):
    """reuse_freed_memory() calls glibc's mallopt with the values it promises, and glibc then serves big blocks
    from the heap.

    In a fresh process, libc's real mallopt is wrapped (through ctypes) to record each call; the effect is
    read back from glibc's own counter of mmapped blocks (mallinfo2): a 64 MB block is always mmapped by default
    (above the 32 MB ceiling of glibc's dynamic threshold), a 16 MB one comes from the heap once the threshold is
    32 MB, and with every_size=True nothing is mmapped at all.
    """
    done = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's malloc.h
    expected = [[M_MMAP_THRESHOLD, 32 * 2**20, 1], [M_TRIM_THRESHOLD, 2**31 - 1, 1]]
    if mode == "every_size":
        expected.append([M_MMAP_MAX, 0, 1])
    assert result["calls"] == expected
    assert result["returned"] is True
    assert result["mapped_64mb_before"] == 1
    assert result["mapped_16mb_after"] == 0
    assert result["mapped_64mb_after"] == (0 if mode == "every_size" else 1)


_SCOPED_PROBE = r"""
import ctypes, json
from u2net_hub.allocator import freed_memory_reused

libc = ctypes.CDLL("libc.so.6")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def mapped_blocks_for(size):
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    after = libc.mallinfo2().hblks
    libc.free(block)
    return after - before


result = {"before": mapped_blocks_for(16 << 20)}
with freed_memory_reused() as active:
    result["active"] = active
    result["inside"] = mapped_blocks_for(16 << 20)
result["after"] = mapped_blocks_for(16 << 20)
print(json.dumps(result))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_freed_memory_reused_holds_only_inside_its_block():
    """What predict() does for a Python user who never called reuse_freed_memory(): a 16 MB block comes from the
    heap inside the block and is mmapped again after it (glibc's own counter of mmapped blocks, mallinfo2)."""
    done = subprocess.run([sys.executable, "-c", _SCOPED_PROBE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"before": 1, "active": True, "inside": 0, "after": 1}, result
