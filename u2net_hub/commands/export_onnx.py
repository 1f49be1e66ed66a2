"""`u2net export-onnx MODEL OUT.onnx`: a single-file ONNX model for rembg's u2net_custom or onnxruntime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..configs import ConfigError
from ..export import DEFAULT_OPSET, ExportError, export_onnx, rembg_size_warning
from ..hub import DEMO_MODEL, CheckpointMismatchError


def run(args) -> int:
    if args.model and args.output is None and args.model.lower().endswith(".onnx") and not Path(args.model).is_dir():
        args.model, args.output = None, args.model  # `u2net export-onnx out.onnx`: the output, with the demo model
    model = args.model or DEMO_MODEL
    output = args.output or "model.onnx"
    if args.model is None:
        print(f"no MODEL given: exporting the bundled demo model ({model})", file=sys.stderr)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        if args.exporter == "dynamo":
            import onnxscript  # noqa: F401
    except ImportError as error:
        print(f"u2net export-onnx: {error.name} is not installed; run `pip install 'u2net-hub[onnx]'`", file=sys.stderr)
        return 2
    print(f"exporting {model} -> {output} ...", file=sys.stderr)
    try:
        result = export_onnx(
            model,
            output,
            opset=args.opset or DEFAULT_OPSET,
            input_size=args.size,
            sides=args.sides,
            fp16=args.fp16,
            exporter=args.exporter,
            check=not args.no_check,
        )
    except (FileNotFoundError, IsADirectoryError, ValueError, ConfigError, CheckpointMismatchError, ExportError) as error:
        print(f"u2net export-onnx: {error}", file=sys.stderr)
        return 1
    meta = result.metadata
    print(f"wrote {result.path} ({result.size_mb:.1f} MB, opset {result.opset}, {result.exporter} exporter)")
    print(f"  variant {meta['variant']}, input (batch, 3, height, width) float32, trained at {meta['input_size']}px, "
          f"mean {meta['mean']}, std {meta['std']}, divide_by_max {meta['divide_by_max']}")
    print(f"  outputs: {', '.join(result.output_names)} (output 0 = fused sigmoid map)")
    if json.loads(meta.get("config", "{}")).get("flip_average"):
        print("  one pass per image: the mirror-image average that `predict` adds for this model (flip_average) "
              "is not in the graph")
    if result.max_abs_error is not None:
        print(f"  onnxruntime vs PyTorch on {result.check_shape}: max abs difference {result.max_abs_error:.1e}")
    # Recent rembg versions only load custom models from their models folder (~/.u2net, ~/.rembg, $U2NET_HOME).
    print(f"  rembg: cp {result.path} ~/.u2net/ && rembg i -m u2net_custom "
          f"-x '{{\"model_path\": \"~/.u2net/{result.path.name}\"}}' in.jpg out.png")
    warning = rembg_size_warning(int(meta["input_size"]))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
