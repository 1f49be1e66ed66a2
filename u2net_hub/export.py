"""ONNX export that drops into rembg's ``u2net_custom`` session and plain onnxruntime.

rembg feeds the session's first input a (1, 3, 320, 320) float32 image that
was divided by its own maximum and ImageNet-normalised, and reads output 0 as
the fused *sigmoid* map. Our ``U2Net.forward`` returns logits, so the export
wraps the network with the sigmoid. Batch, height and width are dynamic: any
batch size and any image size (odd ones too, thanks to ceil-mode pooling and
size-matched upsampling) run through the same file.

The pre-processing the weights expect travels inside the file as
``metadata_props`` (see :func:`read_metadata`), so a consumer never has to
guess mean, std, input size or the divide-by-max step -- mismatches there
were the most common reason an exported U²-Net "gave different results".
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .hub import ModelLoadError, __version__
from .modeling import SIDE_COUNT, U2Net

#: rembg resizes every image to this square before its ``u2net_custom`` session, whatever the model was trained at.
REMBG_INPUT_SIZE = 320


def rembg_size_warning(input_size: int) -> str | None:
    """A warning for models trained at another size than rembg's fixed 320x320 input, else None.

    Why: rembg cannot be told the size, so such a model sees images at a scale it
    was not trained for and its masks differ from `u2net predict`'s.
    """
    if int(input_size) == REMBG_INPUT_SIZE:
        return None
    return (
        f"this model was trained at {input_size}x{input_size}, but rembg always resizes images to "
        f"{REMBG_INPUT_SIZE}x{REMBG_INPUT_SIZE} before a u2net_custom model, so its masks will differ from "
        f"what the model gives at {input_size}x{input_size} (for a tiny model trained at 160 px by 8 to 34 grey "
        f"levels on average on the Space's example photos). For the model's own masks, run the file with "
        f"onnxruntime at {input_size}x{input_size} or use `u2net predict` (docs/reliability.md, 'rembg and the "
        "input size')"
    )


#: Names of the graph's input and outputs; rembg only relies on their positions.
INPUT_NAME = "input"
FUSED_OUTPUT = "fused"
SIDE_OUTPUTS = tuple(f"side{i}" for i in range(1, SIDE_COUNT + 1))
#: The exporter this module drives; the TorchScript one is kept as a fallback.
EXPORTERS = ("dynamo", "torchscript")
DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """The export ran but its result is unusable (or the requested export cannot be done)."""


class _Probabilities(nn.Module):
    """U2Net with the sigmoid applied: the original network's outputs, fused first.

    With ``half`` the network runs in float16 inside the graph while the file
    still takes and returns float32, so callers such as rembg need no change.
    """

    def __init__(self, model: U2Net, sides: bool, half: bool):
        super().__init__()
        self.model = model
        self.sides = sides
        self.half = half

    def forward(self, x: Tensor):
        if self.half:
            x = x.half()
        output = self.model(x)
        maps = (output.logits, *output.side_logits) if self.sides else (output.logits,)
        probabilities = tuple(torch.sigmoid(m).float() for m in maps)
        return probabilities if self.sides else probabilities[0]


@dataclass
class ExportResult:
    """Where the file went and how closely onnxruntime reproduced PyTorch (when checked)."""

    path: Path
    opset: int
    exporter: str
    output_names: tuple[str, ...]
    metadata: dict[str, str]
    max_abs_error: float | None = None
    check_shape: tuple[int, ...] | None = None

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6


def load_model(model: U2Net | str | os.PathLike) -> U2Net:
    """A U2Net from an instance, a save_pretrained folder, or a Hub id.

    Args:
        model: the model itself, or where to load it from.

    Returns:
        The model.

    Raises:
        FileNotFoundError: it cannot be loaded; the message says why (see :meth:`U2Net.load`).
    """
    if isinstance(model, U2Net):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"expected a U2Net, a folder or a Hub id; got {type(model).__name__}")
    try:
        return U2Net.load(os.fspath(model))
    except ModelLoadError as error:
        raise FileNotFoundError(str(error)) from error.__cause__


def onnx_metadata(model: U2Net, input_size: int, sides: bool, half: bool) -> dict[str, str]:
    """The key/value pairs stored in the file's metadata_props (all strings, as ONNX requires).

    Args:
        model: the exported model.
        input_size: the size the file was traced at.
        sides: whether the six side maps are outputs.
        half: whether the network runs in float16 inside.

    Returns:
        Key to string value (lists and booleans as JSON).
    """
    pre = model.preprocessing
    outputs = [FUSED_OUTPUT, *(SIDE_OUTPUTS if sides else ())]
    return {
        "producer": f"u2net-hub {__version__}",
        "variant": model.variant,
        "input_size": str(int(input_size)),
        "mean": json.dumps([float(v) for v in pre.mean]),
        "std": json.dumps([float(v) for v in pre.std]),
        "divide_by_max": json.dumps(bool(pre.divide_by_max)),
        "outputs": json.dumps(outputs),
        "output_kind": "sigmoid probabilities in [0, 1]; output 0 is the fused map",
        "precision": "float16 inside, float32 input/output" if half else "float32",
        "config": json.dumps(model.config, sort_keys=True),
    }


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an exported file.

    Args:
        path: the ``.onnx`` file.

    Returns:
        Key to value, JSON values decoded (mean/std lists, divide_by_max bool, config dict, ...).
    """
    import onnx

    proto = onnx.load(os.fspath(path), load_external_data=False)
    decoded: dict[str, Any] = {}
    for prop in proto.metadata_props:
        try:
            decoded[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            decoded[prop.key] = prop.value
    return decoded


def _example_input(size: int | Sequence[int], batch: int = 1, device: torch.device | None = None) -> Tensor:
    height, width = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, height, width, generator=generator).to(device or "cpu")


def _export_dynamo(module: nn.Module, example: Tensor, path: Path, opset: int, output_names: list[str]) -> None:
    dynamic = torch.export.Dim.DYNAMIC
    # The exporter reports progress with print() and notes about torchvision ops U²-Net never uses;
    # keep the CLI's output to our own lines.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            module,
            (example,),
            None,
            input_names=[INPUT_NAME],
            output_names=output_names,
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={"x": {0: dynamic, 2: dynamic, 3: dynamic}},
            optimize=True,  # onnxscript's optimiser also folds BatchNorm into the convolutions
            verbose=False,
        )
        program.save(os.fspath(path), external_data=False)
    registration_log.setLevel(level)


def _export_torchscript(module: nn.Module, example: Tensor, path: Path, opset: int, output_names: list[str]) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # Deprecation of this exporter, and the tracer's notes about shape checks in forward().
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            os.fspath(path),
            input_names=[INPUT_NAME],
            output_names=output_names,
            opset_version=opset,
            dynamo=False,
            dynamic_axes={name: axes for name in [INPUT_NAME, *output_names]},
            do_constant_folding=True,
        )


def _write_metadata(path: Path, metadata: dict[str, str], doc: str) -> None:
    import onnx

    proto = onnx.load(os.fspath(path))
    for node in proto.graph.node:
        # The dynamo exporter annotates every node with Python stack traces: debug data, a tenth of the file.
        del node.metadata_props[:]
        node.doc_string = ""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = doc
    proto.producer_name = "u2net-hub"
    onnx.checker.check_model(proto)
    onnx.save(proto, os.fspath(path))


def _cpu_fp32_eval(model: U2Net, copy_always: bool = False) -> U2Net:
    """`model` itself when it already is an eval-mode float32 CPU model, else such a copy (the caller's stays as is)."""
    first = next(model.parameters())
    if copy_always or model.training or first.device.type != "cpu" or first.dtype != torch.float32:
        model = copy.deepcopy(model).float().cpu().eval()
        model.__dict__.pop("_u2net_fast_copy", None)  # acceleration's cached fast copy is not needed here
    return model


def compare_with_pytorch(
    model: U2Net, path: str | os.PathLike, inputs: Tensor, sides: bool = False
) -> float:
    """How far onnxruntime's outputs are from PyTorch's sigmoid maps on the same inputs.

    Args:
        model: the PyTorch model.
        path: the exported file.
        inputs: a (B, 3, H, W) float batch.
        sides: whether the file has the six side maps as outputs.

    Returns:
        The largest absolute difference over all outputs.

    Raises:
        ExportError: the file has other outputs or shapes than PyTorch.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: inputs.detach().cpu().float().numpy()}
    onnx_outputs = session.run(None, feeds)
    reference = _Probabilities(_cpu_fp32_eval(model), sides=True, half=False)
    with torch.inference_mode():
        torch_outputs = reference(inputs.detach().cpu().float())
    expected = torch_outputs if sides else torch_outputs[:1]
    if len(onnx_outputs) != len(expected):
        raise ExportError(f"{path} has {len(onnx_outputs)} outputs, expected {len(expected)}")
    worst = 0.0
    for got, want in zip(onnx_outputs, expected):
        if tuple(got.shape) != tuple(want.shape):
            raise ExportError(f"onnxruntime returned shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
        worst = max(worst, float(abs(torch.from_numpy(got) - want).max()))
    return worst


def export_onnx(
    model: U2Net | str | os.PathLike,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    input_size: int | None = None,
    sides: bool = False,
    fp16: bool = False,
    exporter: str = "dynamo",
    check: bool = True,
    check_shape: tuple[int, int, int, int] | None = None,
    tolerance: float | None = None,
) -> ExportResult:
    """Export `model` (instance, folder or Hub id) to a single-file ONNX model at `path`.

    Output 0 is the fused sigmoid map (what rembg's ``u2net_custom`` reads);
    with ``sides`` the six side maps follow. ``input_size`` (default: the
    model's own) is the size recorded in the metadata and used for tracing;
    the file itself accepts any size. ``fp16`` keeps float32 input/output but
    stores and computes the network in float16 (half the file; meant for GPU
    runtimes). With ``check`` the file is run once through onnxruntime at an
    odd size with batch 2 and compared with PyTorch; an error above
    ``tolerance`` (1e-4 fp32, 2e-2 fp16) raises :class:`ExportError`.

    Args:
        model: a U2Net, a save_pretrained folder or a Hub id.
        path: the ``.onnx`` file to write.
        opset: the ONNX opset (>= 18 for the dynamo exporter, >= 11 for torchscript).
        input_size: the size recorded and traced at (default: the model's own).
        sides: add the six side maps as outputs 1..6.
        fp16: store and compute the network in float16.
        exporter: "dynamo" or "torchscript".
        check: compare onnxruntime with PyTorch once after writing.
        check_shape: the (B, 3, H, W) shape of that check (default: batch 2 at an odd size).
        tolerance: the largest difference the check allows (default by precision).

    Returns:
        The file, its metadata, output names and the measured difference.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if not isinstance(opset, int) or opset < (18 if exporter == "dynamo" else 11):
        raise ValueError(f"opset {opset!r} is too old for the {exporter} exporter (needs >= {18 if exporter == 'dynamo' else 11})")
    source = load_model(model)
    size = int(input_size or source.preprocessing.input_size)
    if size < 32:
        raise ValueError(f"input size must be at least 32 pixels, got {size}")
    path = Path(path).expanduser()
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"the output file should end in .onnx, got {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name ending in .onnx")
    path.parent.mkdir(parents=True, exist_ok=True)

    # Export a CPU float32 model: the caller's model keeps its device, dtype and mode.
    reference = _cpu_fp32_eval(source)
    network = _cpu_fp32_eval(reference, copy_always=True).half() if fp16 else reference
    module = _Probabilities(network, sides=sides, half=fp16).eval()
    output_names = [FUSED_OUTPUT, *(SIDE_OUTPUTS if sides else ())]
    example = _example_input(size)
    tmp = path.with_name(path.name + ".partial")
    try:
        with torch.no_grad():
            if exporter == "dynamo":
                _export_dynamo(module, example, tmp, opset, output_names)
            else:
                _export_torchscript(module, example, tmp, opset, output_names)
        metadata = onnx_metadata(source, size, sides, fp16)
        doc = (
            f"U²-Net ({source.variant}) salient object detection exported by u2net-hub. Input: float32 "
            f"(batch, 3, height, width), RGB divided by its maximum, normalised with mean {list(source.preprocessing.mean)} "
            f"and std {list(source.preprocessing.std)}, trained at {size}x{size}. Output 0: fused sigmoid map (batch, 1, height, width)."
        )
        _write_metadata(tmp, metadata, doc)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

    result = ExportResult(path, opset, exporter, tuple(output_names), metadata)
    if check:
        shape = check_shape or (2, 3, size // 2 + 1, size * 3 // 4 + 1)
        inputs = _example_input(shape[2:], batch=shape[0])
        error = compare_with_pytorch(reference, path, inputs, sides=sides)
        limit = tolerance if tolerance is not None else (2e-2 if fp16 else 1e-4)
        result.max_abs_error, result.check_shape = error, tuple(shape)
        if not error <= limit:
            raise ExportError(
                f"onnxruntime differs from PyTorch by {error:.2e} (> {limit:.0e}) on input {tuple(shape)}; "
                f"the file was written to {path} but should not be trusted"
            )
    return result


__all__ = [
    "EXPORTERS", "ExportError", "ExportResult", "compare_with_pytorch", "export_onnx",
    "load_model", "onnx_metadata", "read_metadata", "REMBG_INPUT_SIZE", "rembg_size_warning",
]
