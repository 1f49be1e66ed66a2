"""A model's weights interpolated between two runs', with a temperature folded into the fusion.

Why: a fine-tune and the weights it started from lie in one basin, and points between them often beat both
ends. The bundled demo model is 0.3 x the released tiny model's weights + 0.7 x a fine-tune of them on synthetic
scenes (WiSE-FT, train/make_demo_checkpoint.sh): the run alone learns the scenes and drifts on real photos, the
start is the reverse, the interpolation keeps most of both (docs/demo-model-journal.md, session 23). The
earlier demo models averaged two stages of a recipe the same way (session 7). And dividing the fused logit by a
temperature below 1 sharpens a soft map without changing its order (maxF is unchanged, MAE falls).
The fused logit is the output of a 1x1 convolution over the six side maps, so the temperature is folded into its
weight and bias: the checkpoint stays an ordinary U²-Net that every tool (ONNX export, rembg) runs as is.

    usage: python train/mix_weights.py RUN_A RUN_B --out DIR [--weight_b 0.5] [--temperature 0.5] [--flip_average]
RUN_A and RUN_B are model folders (config.json + model.safetensors) or checkpoint-N folders of a run (their
weights, with the config of the run folder above them). The config of RUN_B is kept.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from u2net_hub import U2Net


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / "model.safetensors"
    if not path.exists():
        raise SystemExit(f"error: no model.safetensors in {folder}")
    return load_file(path)


def _config_folder(folder: Path) -> Path:
    return folder if (folder / "config.json").exists() else folder.parent


def mix(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], weight_b: float,
        temperature: float) -> dict[str, torch.Tensor]:
    """(1 - weight_b) * a + weight_b * b, tensor by tensor, then the fusion conv divided by `temperature`."""
    if a.keys() != b.keys():
        raise SystemExit("error: the two runs are different models (their weights have different names)")
    mixed = {}
    for name, tensor in b.items():
        if tensor.is_floating_point():
            tensor = (a[name].double() * (1 - weight_b) + tensor.double() * weight_b).to(tensor.dtype)
        mixed[name] = tensor  # integer buffers (BatchNorm's batch counts) are taken from b
    for name in ("outconv.weight", "outconv.bias"):
        mixed[name] = mixed[name] / temperature
    return mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weight_b", type=float, default=0.5, help="the share of RUN_B's weights (0..1)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="divides the fused logit: below 1 sharpens the map (earlier demo models used 0.5)")
    parser.add_argument("--flip_average", action="store_true",
                        help="turn on test-time mirror averaging in the output's config")
    args = parser.parse_args()
    if not 0 <= args.weight_b <= 1 or args.temperature <= 0:
        parser.error("--weight_b must be in 0..1 and --temperature above 0")
    model = U2Net.from_pretrained(_config_folder(args.run_b))
    model.load_state_dict(mix(_weights(args.run_a), _weights(args.run_b), args.weight_b, args.temperature))
    if args.flip_average:
        model.preprocessing = replace(model.preprocessing, flip_average=True)
    model.save_pretrained(args.out)
    print(f"wrote {args.out}: {1 - args.weight_b:g} x {args.run_a} + {args.weight_b:g} x {args.run_b}, "
          f"fused logit / {args.temperature:g}" + (", flip_average" if args.flip_average else ""))


if __name__ == "__main__":
    main()
