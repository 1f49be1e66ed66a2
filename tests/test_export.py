"""ONNX export: onnxruntime reproduces PyTorch and the original implementation, rembg's contract, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file
from PIL import Image

from u2net_hub import U2Net
from u2net_hub.export import export_onnx, read_metadata

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def tiny_model(make_tiny_model) -> U2Net:
    return make_tiny_model()  # the network's default 320 px input: the export contract is about it


@pytest.fixture(scope="module")
def tiny_folder(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(tiny_folder, tmp_path_factory):
    """The default exporter, from a save_pretrained folder, with the side maps as extra outputs."""
    path = tmp_path_factory.mktemp("onnx") / "u2netp.onnx"
    result = export_onnx(tiny_folder, path, sides=True, check=False)
    return result, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, x: torch.Tensor) -> list[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


@pytest.mark.parametrize("shape", [(2, 3, 64, 96), (1, 3, 301, 457)], ids=["batch2-64x96", "odd-301x457"])
def test_onnxruntime_matches_pytorch_fused_first_then_sides(exported, tiny_model, shape):
    _, session = exported
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    with torch.no_grad():
        output = tiny_model(x)
    fused = torch.sigmoid(output.logits).numpy()
    sides = [torch.sigmoid(s).numpy() for s in output.side_logits]
    got = _run(session, x)
    assert len(got) == 7
    assert got[0].shape == (shape[0], 1, *shape[2:])
    assert np.abs(got[0] - fused).max() <= 1e-4
    # Output 0 must be the fused map, not side1 (they differ well beyond the tolerance).
    assert np.abs(got[0] - sides[0]).max() > 1e-2
    for got_side, side in zip(got[1:], sides):
        assert np.abs(got_side - side).max() <= 1e-4


def test_onnxruntime_reproduces_the_original_implementation(exported, reference_dir):
    _, session = exported
    vectors = load_file(reference_dir / "tiny_conformance_vectors.safetensors")
    for i in range(2):
        got = _run(session, vectors[f"input_{i}"])
        for j in range(7):
            assert np.abs(got[j] - vectors[f"output_{i}_{j}"].numpy()).max() <= 1e-4, (i, j)


def test_graph_is_dynamic_and_carries_the_preprocessing(exported, tiny_model):
    result, session = exported
    proto = onnx.load(str(result.path))
    dims = [[d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] for value in proto.graph.input]
    assert len(dims) == 1
    assert dims[0][1] == 3 and all(isinstance(dims[0][i], str) for i in (0, 2, 3)), dims
    assert [o.name for o in session.get_outputs()] == ["fused", *(f"side{i}" for i in range(1, 7))]
    meta = read_metadata(result.path)
    pre = tiny_model.preprocessing
    assert meta["variant"] == "tiny"
    assert meta["input_size"] == pre.input_size == 320
    assert meta["mean"] == pytest.approx(list(pre.mean)) and meta["std"] == pytest.approx(list(pre.std))
    assert meta["divide_by_max"] is True
    assert U2Net(**meta["config"]).config == tiny_model.config
    # BatchNorm is folded into the convolutions: weights only, no BN nodes left.
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}


def test_rembg_u2net_custom_contract(exported, tiny_model):
    """What rembg's u2net_custom session does: first input, 1x3x320x320 float32, output 0 min-max normalised."""
    _, session = exported
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 200, (240, 180, 3), dtype=np.uint8))
    array = np.asarray(image.resize((320, 320), Image.Resampling.LANCZOS), dtype=np.float64)
    array = array / max(array.max(), 1e-6)
    array = (array - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    x = array.transpose(2, 0, 1)[None].astype(np.float32)
    pred = session.run(None, {session.get_inputs()[0].name: x})[0][:, 0]
    assert pred.shape == (1, 320, 320) and pred.dtype == np.float32
    assert 0.0 <= pred.min() and pred.max() <= 1.0
    with torch.no_grad():
        expected = torch.sigmoid(tiny_model(torch.from_numpy(x)).logits)[:, 0].numpy()
    assert np.abs(pred - expected).max() <= 1e-4


def test_torchscript_exporter_gives_the_same_model(tiny_model, tmp_path):
    result = export_onnx(tiny_model, tmp_path / "ts.onnx", exporter="torchscript", check=True, check_shape=(2, 3, 45, 77))
    assert result.max_abs_error is not None and result.max_abs_error <= 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert len(session.get_outputs()) == 1
    x = torch.randn(1, 3, 70, 50)
    with torch.no_grad():
        expected = torch.sigmoid(tiny_model(x).logits).numpy()
    assert np.abs(_run(session, x)[0] - expected).max() <= 1e-4


def test_bad_arguments_are_clear_errors(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):  # worded as everywhere (U2Net.load)
        export_onnx(tmp_path / "no-such-model", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(tiny_model, tmp_path / "x.bin")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_model, tmp_path / "x.onnx", opset=11)
    assert not list(tmp_path.iterdir())


def test_cli_exports_fp16_in_a_real_subprocess(tiny_folder, tiny_model, tmp_path):
    out = tmp_path / "half.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "u2net_hub.cli", "export-onnx", str(tiny_folder), str(out), "--fp16", "--size", "288"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "output 0 = fused sigmoid map" in proc.stdout and "max abs difference" in proc.stdout
    meta = read_metadata(out)
    assert meta["input_size"] == 288 and meta["precision"].startswith("float16")
    # Float16 weights: about half of the 1.13 M float32 parameters' 4.5 MB.
    assert out.stat().st_size < 3.2e6
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    x = torch.randn(2, 3, 51, 67)
    with torch.no_grad():
        expected = torch.sigmoid(tiny_model(x).logits).numpy()
    got = _run(session, x)[0]
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() <= 2e-2


def test_cli_missing_model_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "nothing-here"
    proc = subprocess.run(
        [sys.executable, "-m", "u2net_hub.cli", "export-onnx", str(missing), str(tmp_path / "out.onnx")],
        capture_output=True, text=True, env=ENV, timeout=120,
    )
    assert proc.returncode == 1
    assert f"{missing}: no such folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.onnx").exists()
