"""Every subcommand's arguments, with nothing heavy imported: `u2net --help` and `u2net predict --help` stay instant.

Why apart from the commands: a command module imports the library (and so
torch) at module level, as the import graph wants; the parsers import only
argparse. :mod:`u2net_hub.cli` builds the parser from here and imports the one
command module the arguments name (:data:`u2net_hub.cli.COMMAND_MODULES`).
"""

from __future__ import annotations

import argparse

from ..configs import BLOCK_NAMES
from . import add_fast_path_arguments, non_negative_int, positive_int

#: What `u2net predict --format` writes.
FORMATS = ("mask", "rgba", "sides")
#: Written into every output folder: marks it as ours, so a later run over a parent folder skips it.
MARKER_NAME = ".u2net-predict.json"
#: Written into the output folder when some output names differ from their input's (name clashes).
MAPPING_NAME = "outputs.csv"


def predict(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="write saliency masks or RGBA cutouts for images, folders and globs",
        description=(
            "Predict saliency for every image given (files, folders searched recursively, glob patterns) and "
            "write PNGs (or --output-format webp/jpeg) to DIR, keeping the inputs' relative paths: DIR/<stem>.png, "
            "or with --format sides "
            "DIR/<stem>_side1.png .. _side6.png and DIR/<stem>_fused.png. Where two inputs would get the same "
            f"name, both keep their extension (a.jpg -> a.jpg.png) and DIR/{MAPPING_NAME} maps every input to "
            "its output. Output folders of earlier runs inside the inputs are skipped."
        ),
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image or video files, folders or glob patterns")
    parser.add_argument("--model", "-m", default=None,
                        help="a save_pretrained folder or a Hub repo id (default: the bundled demo model)")
    parser.add_argument("--output-dir", "-o", default=None, metavar="DIR",
                        help="the folder to write the PNGs to (created if needed; videos too)")
    parser.add_argument("--format", "-f", choices=FORMATS, default=None,
                        help="mask (the default): 8-bit mask; rgba: cutout with the mask as alpha; sides: the six side outputs and the fused map")
    parser.add_argument("--normalize", action="store_true", help="min-max each map per image (the original's normPRED)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="binarise at this probability (0..1) instead of writing soft masks")
    parser.add_argument("--background", default=None,
                        help="with --format rgba: fill the background with a colour (white, '#00ff00', 0,255,0) or 'blur'")
    matting = parser.add_argument_group(
        "alpha matting (rembg's flags; see docs/matting.md)",
        "refine the edge (hair, fur) from the photo's own colours at full resolution and remove the background's "
        "colour from it; applies to --format rgba (the cutout) and --format mask (the refined alpha)",
    )
    matting.add_argument("--alpha-matting", action="store_true",
                         help="estimate the alpha with closed-form matting in the band where the mask is unsure")
    matting.add_argument("--alpha-matting-foreground-threshold", type=int, default=None, metavar="0..255",
                         help="mask level at or above which a pixel is surely object (default 240)")
    matting.add_argument("--alpha-matting-background-threshold", type=int, default=None, metavar="0..255",
                         help="mask level at or below which a pixel is surely background (default 10)")
    matting.add_argument("--alpha-matting-erode-size", type=int, default=None, metavar="N",
                         help="erode the sure regions by N pixels per 1000 px of the longer side (default 10)")
    parser.add_argument("--post-process-mask", action="store_true",
                        help="rembg's morphological clean-up of the mask: opening (3x3 cross), Gaussian blur (sigma 2), "
                             "cut at 127; gives a hard mask with a smooth outline")
    parser.add_argument("--only-mask", action="store_true",
                        help="rembg's spelling of --format mask (write the mask, not the cutout)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    add_fast_path_arguments(parser)
    parser.add_argument("--compile", action="store_true",
                        help="also run the fast path through torch.compile (slow start, faster on long GPU batch jobs)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                        help="refuse images of more than N pixels (default: about 179 million, Pillow's guard "
                             "against decompression bombs); raise it for trusted, larger files")
    parser.add_argument("--output-format", choices=("png", "webp", "jpeg"), default=None,
                        help="file type of the outputs: png (the default, lossless), webp (lossy, smaller; keeps "
                        "the alpha of rgba) or jpeg (lossy, smallest and fastest for masks; no alpha, so rgba "
                        "needs --background); the name ends in .png, .webp or .jpg")
    parser.add_argument("--quality", type=int, default=None, metavar="1-100",
                        help="with --output-format webp or jpeg: the lossy quality (default 90)")
    parser.add_argument("--compress-level", type=int, default=None, choices=range(10), metavar="0-9",
                        help="zlib level of the PNGs through Pillow (default: the fast writer, one filter, level 1; "
                        "6 = Pillow's default: masks ~the same size, cutouts ~10%% smaller, several times slower)")
    parser.add_argument("--draft", action="store_true",
                        help="masks and sides: decode JPEGs at 1/2..1/8 scale (less decoding, but the network sees "
                        "a different image: on the benchmark photos 19%% of mask pixels differ from a full decode by "
                        "more than one grey level; docs/speed.md)")
    _predict_dataset_arguments(parser)


def convert(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a released .pth (u2net, u2netp, human_seg, portrait) into a Hub folder",
        description=(
            "Read a released U²-Net .pth with torch.load(weights_only=True), detect full/tiny from the weight "
            "shapes, write a save_pretrained folder (config.json, model.safetensors, README.md), reload it and "
            "check its outputs match the source weights."
        ),
    )
    parser.add_argument("source", metavar="SRC.pth", help="the checkpoint file (plain or wrapped state dict)")
    parser.add_argument("output_dir", metavar="OUT_DIR", help="the folder to write (must be new or empty)")
    parser.add_argument("--variant", default="auto", choices=["auto", "full", "tiny", "u2net", "u2netp"],
                        help="expected variant (default: detected from the shapes)")
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help="input size recorded in config.json (default 320; 512 when the file name says portrait)")
    parser.add_argument("--overwrite", action="store_true", help="replace the model files in a non-empty OUT_DIR")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None, help="also upload the folder to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private (with --push-to-hub)")


def evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="SOD metrics (maxF, MAE, wF, S-measure, E-measure, relaxed boundary F) for a model or saved masks",
        description=(
            "Score a model on a dataset (--dataset, with --model or the bundled demo model) or saved predictions "
            "against ground-truth masks (--pred-dir and --gt-dir, files paired by name). Prints a table; --output "
            "writes the metrics and what was scored as JSON."
        ),
    )
    model = parser.add_argument_group("model on a dataset")
    model.add_argument("--model", "-m", default=None,
                       help="a save_pretrained folder or a Hub repo id (default: the bundled demo model)")
    model.add_argument("--dataset", "-d", default=None,
                       help="a Hub dataset id, an imagefolder with metadata.jsonl, or a folder with images/ and masks/")
    model.add_argument("--split", default=None, help="dataset split (default: test for a Hub dataset, the only "
                       "split of a local folder)")
    model.add_argument("--image-column", default="image", help="column of the input images (default: image)")
    model.add_argument("--mask-column", default="mask", help="column of the ground-truth masks (default: mask)")
    model.add_argument("--limit", type=positive_int, default=None, help="score only the first N rows")
    model.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    add_fast_path_arguments(model)
    model.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    model.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                       help="refuse images of more than N pixels (default: about 179 million, Pillow's guard "
                            "against decompression bombs)")
    model.add_argument("--save-predictions", metavar="DIR", default=None,
                       help="also write each predicted map as an 8-bit PNG to DIR (re-scorable with --pred-dir)")
    saved = parser.add_argument_group("saved predictions")
    saved.add_argument("--pred-dir", default=None,
                       help="folder of prediction images (searched recursively); of an RGBA cutout, the alpha "
                            "channel is scored")
    saved.add_argument("--gt-dir", default=None, help="folder of ground-truth masks (searched recursively)")
    out = parser.add_argument_group("output")
    out.add_argument("--output", "-o", default=None, help="write the metrics and metadata to this JSON file")
    out.add_argument("--per-image", action="store_true", help="include every image's scores in the JSON output")
    out.add_argument("--strict", action="store_true",
                     help="exit with status 1 when any item was unmatched or unreadable, or a mask's size differs "
                          "from its image's (still prints the metrics)")
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def export_onnx(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-onnx",
        help="export a model to ONNX (dynamic batch and size; output 0 = fused sigmoid map, as rembg expects)",
        description=(
            "Export a U²-Net to one .onnx file with dynamic batch, height and width. Output 0 is the fused "
            "sigmoid map, so the file works with `rembg i -m u2net_custom -x '{\"model_path\": \"~/.u2net/OUT.onnx\"}' in.jpg out.png` "
            "(copy it to ~/.u2net first: rembg only loads custom models from its models folder). "
            "The pre-processing (mean, std, input size, divide-by-max) is stored in the file's metadata. "
            "After exporting, the file is run once through onnxruntime and compared with PyTorch."
        ),
    )
    parser.add_argument(
        "model", nargs="?", default=None,
        help="a folder written by save_pretrained, or a Hub id (default: the bundled demo model); "
        "a single argument ending in .onnx is the output, with the bundled demo model",
    )
    parser.add_argument("output", nargs="?", default=None, help="the .onnx file to write (default: model.onnx)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18; >= 18 for the dynamo exporter)")
    parser.add_argument(
        "--size", type=positive_int, default=None,
        help="input size recorded in the metadata and used for tracing (default: the model's own input size, "
        "from its config.json); the file accepts any size",
    )
    parser.add_argument("--sides", action="store_true", help="also output the six side maps (outputs 1-6)")
    parser.add_argument(
        "--fp16", action="store_true",
        help="store and compute in float16 inside the graph (float32 input/output stay); half the file, for GPU runtimes",
    )
    parser.add_argument(
        "--exporter", choices=("dynamo", "torchscript"), default="dynamo",
        help="torch.onnx exporter: dynamo (default, needs onnxscript) or the older TorchScript tracer",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch comparison")


def profile(subparsers) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="parameters, GFLOPs, activation memory and ms per image, per stage; --blocks: the paper's block figure",
        description=(
            "Profile a model per stage: exact parameter count, GFLOPs (convolutions and linear layers, one "
            "multiply-add = 2 FLOPs, as torch.utils.flop_counter counts), the memory of the tensors one forward "
            "pass creates, and the measured median ms of a batch-1 forward pass on this machine. --blocks instead "
            "profiles each block of the paper's comparison alone (320x320x3 -> 320x320x64) and draws a bar chart."
        ),
    )
    which = parser.add_argument_group("what to profile")
    which.add_argument("--model", "-m", default=None, metavar="PATH_OR_ID",
                       help="a save_pretrained folder or a Hub repo id")
    which.add_argument("--variant", choices=["full", "tiny"], default=None,
                       help="a freshly built published configuration (default: tiny, unless --model is given)")
    which.add_argument("--block", choices=list(BLOCK_NAMES), default=None,
                       help="with --variant: put this block in every stage (default: rsu)")
    which.add_argument("--blocks", action="store_true",
                       help="the paper's block figure: every block alone, 320x320x3 -> 320x320x64 (mid 32, height 7)")
    how = parser.add_argument_group("how")
    how.add_argument("--size", type=positive_int, default=None,
                     help="input height and width (default: 320, or the model's input size)")
    how.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    how.add_argument("--repeats", type=non_negative_int, default=5,
                     help="timed forward passes, median reported (default 5; 0: no timing)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", default=None, metavar="PATH", help="also write the numbers to this JSON file")
    out.add_argument("--png", default=None, metavar="PATH",
                     help="with --blocks: where to write the bar chart (default: u2net-blocks.png)")


def _predict_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "datasets", "predict a whole `datasets` dataset into Parquet shards (resumable; under `accelerate launch "
        "-m u2net_hub predict ...` every process takes its own shards)")
    group.add_argument("--dataset", metavar="D", default=None,
                       help="a Hub dataset id (streamed), a local imagefolder or a save_to_disk folder")
    group.add_argument("--output-dataset", metavar="DIR", default=None,
                       help="folder of Parquet shards + dataset card; rerun the same command to resume")
    group.add_argument("--split", default="train", help="the split of D to predict (default train)")
    group.add_argument("--dataset-config", default=None, help="the configuration of D, for Hub datasets that have several")
    group.add_argument("--image-column", default="image", help="the column holding the images (default image)")
    group.add_argument("--shard-size", type=positive_int, default=1000,
                       help="rows per output file, the unit of work and of resuming (default 1000)")
    group.add_argument("--keep-image", action="store_true", help="also keep the input image column in the output")
    group.add_argument("--push-to-hub", metavar="REPO", default=None,
                       help="upload the output dataset as a dataset repo when done (it is saved locally first)")
    group.add_argument("--private", action="store_true", help="create the Hub repo as private (with --push-to-hub)")


#: The subcommands in the order `u2net --help` lists them; each adds its parser to the subparsers.
SUBCOMMANDS = (predict, convert, evaluate, export_onnx, profile)

__all__ = ["FORMATS", "MAPPING_NAME", "MARKER_NAME", "SUBCOMMANDS"]
