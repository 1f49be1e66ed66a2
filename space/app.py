"""U²-Net background removal: a Gradio Space over ``u2net_hub``.

A UI file: the model work is ``u2net_hub``'s (``U2Net.load``, ``model.predict``,
``processing.load_image(shrink_to_pixels=)``, ``parse_background``, ``cutout``), and the
settings and model cache are in ``model_cache.py`` next to it. This file lays out
the page, renders the side outputs as heat maps and turns every failure into a
message the user can act on.

Run it with ``make demo`` (``python space/app.py``) from the repository root or from
inside ``space/``, or with ``gradio space/app.py`` to reload on every edit (the
module-level ``demo``); the same folder deploys unchanged as a Hugging Face Space.
Settings come from environment variables (see ``model_cache.Settings``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

# No phoning home: the demo must open with no network at all.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # model_cache.py sits next to this file (also when loaded by path or by `gradio`)
    sys.path.insert(0, str(HERE))
try:
    import u2net_hub  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`: the package sits next to space/
    sys.path.insert(0, str(HERE.parent))

import gradio as gr
import numpy as np
from model_cache import FULL_MODEL, LoadedModel, ModelCache, ModelLoadError, Settings, hub_reachable  # noqa: F401
from PIL import Image, UnidentifiedImageError

from u2net_hub import DEMO_MODEL, U2Net  # noqa: F401
from u2net_hub.acceleration import reuse_freed_memory
from u2net_hub.processing import (
    ImageLoadError,
    check_threshold,
    cutout,
    load_image,
    parse_background,
    resize_probability,
    to_mask,
)
from u2net_hub.tempdirs import clean_up_on_signals, owned_temp_dir, prune_stale_temp_dirs

EXAMPLES_DIR = HERE / "examples"

#: Longest side of the copies sent to the browser (slider) and of the side-output heat maps.
DISPLAY_SIDE = 1024
GALLERY_SIDE = 320

BACKGROUNDS = [
    ("transparent", "transparent"),
    ("white", "white"),
    ("colour (picker)", "colour"),
    ("blurred photo", "blur"),
]
#: side<k> is the head on decoder stage k (stage<k>d; side6 on the bottom stage6), working at 1/2^(k-1) resolution.
SIDE_CAPTIONS = [
    "fused",
    "side1 · 1/1",
    "side2 · 1/2",
    "side3 · 1/4",
    "side4 · 1/8",
    "side5 · 1/16",
    "side6 · 1/32",
]


# ---------------------------------------------------------------------- images


def readable_uploads(component: gr.Image) -> gr.Image:
    """Make an unreadable upload end in a message for the user, never a server traceback.

    Gradio opens every upload with PIL before the event function runs, so a
    corrupt or non-image file would fail there with a bare exception. The
    instance's ``preprocess`` is wrapped rather than subclassed: a subclass of a
    Gradio component makes Gradio write a ``.pyi`` stub next to this file.
    """
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except gr.Error:
            raise
        except Image.DecompressionBombError:
            raise _user_error("The image has too many pixels to be processed safely (a possible decompression bomb).")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            raise _user_error("The upload is not an image this app can read. Try a JPEG, PNG or WebP file.")

    component.preprocess = preprocess
    return component


def _user_error(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def read_photo(image: Any, shrink_to_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    """An upload (path, PIL or numpy) -> (RGB photo of at most ``shrink_to_pixels``, original (w, h)).

    Large JPEGs are decoded at a reduced scale (``load_image(..., shrink_to_pixels=)``), so even a huge
    photo never costs its full-size decode.
    """
    if image is None:
        raise _user_error("Upload an image first (or pick one of the examples).")
    try:
        photo = load_image(image, shrink_to_pixels=shrink_to_pixels)
    except ImageLoadError as error:
        raise _user_error(f"Cannot read the image: {_strip_path(str(error))}") from None
    return photo, photo.info.get("original_size", photo.size)


def _strip_path(text: str) -> str:
    """Error messages name the uploaded temp file; the user only needs the reason."""
    text = re.sub(r"(['\"])/[^'\"]*\1", "the upload", text)  # quoted, possibly with spaces
    return re.sub(r"(?<![\w.])/[^\s:'\"]+", "the upload", text).strip()


def _display_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# Stops of the heat map (dark blue -> purple -> magenta -> orange -> pale yellow): brightness rises
# monotonically, so a map reads the same in greyscale.
_HEAT_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_HEAT_COLOURS = np.array(
    [[13, 8, 50], [88, 24, 128], [188, 55, 112], [247, 132, 58], [252, 247, 176]], dtype=np.float64
)
HEAT_LUT = np.stack(
    [np.interp(np.linspace(0.0, 1.0, 256), _HEAT_STOPS, _HEAT_COLOURS[:, c]) for c in range(3)], axis=1
).round().astype(np.uint8)


def heatmap(probability: np.ndarray) -> Image.Image:
    """A [0, 1] map as an RGB heat map (256-entry lookup table, numpy only)."""
    index = np.clip(np.asarray(probability, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(HEAT_LUT[index], mode="RGB")


def checkerboard(size: tuple[int, int], square: int = 12) -> Image.Image:
    """The usual light checkerboard that shows where an image is transparent."""
    width, height = size
    ys, xs = np.indices((height, width))
    board = np.where(((xs // square) + (ys // square)) % 2 == 0, 255, 214).astype(np.uint8)
    return Image.fromarray(board, mode="L").convert("RGB")


def side_maps_of(prediction: Any) -> list[np.ndarray]:
    """The six side maps at the network's size (cheap to turn into gallery thumbnails)."""
    maps = prediction.network_side_probabilities
    return [] if maps is None else list(maps)


def _save(image: Image.Image, path: Path, quality: int | None = None) -> str:
    if quality is None:
        image.save(path, compress_level=3)  # PNG: fast to write, lossless
    else:
        image.save(path, quality=quality)
    return str(path)


def _safe_stem(path: Any) -> str:
    stem = Path(str(path)).stem if isinstance(path, (str, os.PathLike)) else "image"
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:40]
    return stem or "image"


# -------------------------------------------------------------------- the app

#: Every temp folder of the Space starts with this (results, example cache, Gradio's copies).
TEMP_PREFIX = "u2net-space-"


class BackgroundRemover:
    """The event functions of the Space, bound to its settings and its model cache."""

    def __init__(self, settings: Settings | None = None, models: ModelCache | None = None):
        self.settings = settings or Settings.from_env()
        self.models = models or ModelCache(
            self.settings.max_models,
            allow_local=self.settings.allow_local_models,
            always_allowed=tuple(value for _, value in self.settings.model_choices()),
        )
        self.output_dir = owned_temp_dir(TEMP_PREFIX)  # removed at exit and on SIGTERM

    # ---------------------------------------------------------------- events

    def load_model(self, model_name: str) -> str:
        """Load (or find in the cache) a model; returns a status line. A failure warns and leaves the others usable."""
        try:
            loaded = self.models.get(model_name)
        except ModelLoadError as error:
            gr.Warning(f"Model not loaded: {error}")
            return f"**Model not loaded**: {error}. The other models still work."
        return f"**Loaded** `{_short(loaded.name)}`: {loaded.description} (loaded in {loaded.seconds:.1f} s)"

    def segment(
        self,
        image: Any,
        model_name: str,
        threshold: float = 0.0,
        normalize: bool = False,
        background: str = "transparent",
        colour: str | None = "#2e86de",
        alpha_matting: bool = False,
    ):
        """Remove the background of one photo (``alpha_matting``: refine hair and fur edges, see docs/matting.md).

        Returns file paths, all in a folder of their own for this request:
        the (photo, cutout) preview pair (WebP, at most DISPLAY_SIDE), the
        8-bit mask and the RGBA cutout (PNG, the photo's size), the captioned
        heat maps of the fused and six side outputs (PNG), and a Markdown
        summary with sizes and timings. Files rather than PIL images because
        Gradio 6 writes returned PIL images to a content-named cache path
        without an atomic rename: two identical requests at once could serve
        each other a half-written file, while returned files are copied
        into the cache atomically.
        """
        started = time.perf_counter()
        try:
            threshold = check_threshold(threshold)
        except ValueError as error:
            raise _user_error(f"The {error} (0 keeps the soft mask).") from None
        try:
            fill = parse_background(background, colour)
        except ValueError as error:
            message = str(error)
            raise _user_error(message[0].upper() + message[1:] + ".") from None
        photo, original = read_photo(image, self.settings.shrink_to_pixels)
        try:
            loaded = self.models.get(model_name)
        except ModelLoadError as error:
            raise _user_error(f"Model not loaded: {error}. Pick another model; the others still work.") from None

        infer_started = time.perf_counter()
        try:
            prediction = loaded.model.predict(photo, normalize=bool(normalize), sides=True)
        except ImageLoadError as error:
            raise _user_error(f"Cannot read the image: {_strip_path(str(error))}") from None
        inference_ms = (time.perf_counter() - infer_started) * 1000

        if alpha_matting:
            if threshold:
                raise _user_error("Alpha matting estimates a soft alpha: set the threshold to 0 to use it.")
            matted = prediction.cutout(alpha_matting=True)  # the library does the work; RGB = object colour
            mask = matted.getchannel("A")
            rgba = matted if fill is None else cutout(matted.convert("RGB"), mask, background=fill)
        else:
            mask = to_mask(prediction.probability, threshold or None)
            rgba = cutout(photo, mask, background=fill)

        display_size = _display_size(photo.size, DISPLAY_SIDE)
        before = photo if photo.size == display_size else photo.resize(display_size, Image.Resampling.BILINEAR)
        after = rgba if rgba.size == display_size else rgba.resize(display_size, Image.Resampling.BILINEAR)
        if fill is None:  # show the transparency on a checkerboard, as image editors do
            board = checkerboard(display_size)
            board.paste(after, mask=after.getchannel("A"))
            after = board
        else:
            after = after.convert("RGB")

        gallery_size = _display_size(photo.size, GALLERY_SIDE)
        maps = [resize_probability(prediction.probability, gallery_size)]
        maps += [resize_probability(side, gallery_size) for side in side_maps_of(prediction)]

        folder = self._request_folder()
        stem = _safe_stem(image)
        before_path = _save(before, folder / "photo.webp", quality=90)
        after_path = _save(after, folder / "cutout-preview.webp", quality=90)
        mask_path = _save(mask, folder / f"{stem}-mask.png")
        cutout_path = _save(rgba, folder / f"{stem}-cutout.png")
        gallery = [
            (_save(heatmap(m), folder / f"{caption.split(' ')[0]}.png"), caption)  # fused.png, side1.png, ...
            for m, caption in zip(maps, SIDE_CAPTIONS)
        ]

        total_ms = (time.perf_counter() - started) * 1000
        info = self._summary(loaded, original, photo.size, inference_ms, total_ms, threshold, normalize, background)
        if alpha_matting:
            info += " · alpha matting on"
        return (before_path, after_path), mask_path, cutout_path, gallery, info

    # --------------------------------------------------------------- helpers

    def _request_folder(self) -> Path:
        """A fresh folder for one request's files; folders older than 15 minutes are pruned as new ones come."""
        self._prune(max_age_s=900)
        folder = self.output_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def _prune(self, max_age_s: float) -> None:
        now = time.time()
        for folder in self.output_dir.iterdir() if self.output_dir.is_dir() else []:
            try:
                if now - folder.stat().st_mtime > max_age_s:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def _summary(self, loaded, original, processed, inference_ms, total_ms, threshold, normalize, background) -> str:
        width, height = original
        size = f"{width} × {height} px"
        if tuple(processed) != tuple(original):
            size += f" (processed at {processed[0]} × {processed[1]}, the limit is {self.settings.shrink_to_pixels / 1e6:.0f} MP)"
        mask_kind = "soft (threshold 0)" if not threshold else f"hard at threshold {threshold:.2f}"
        return (
            f"**Model** `{_short(loaded.name)}`: {loaded.description}  \n"
            f"**Image** {size}  \n"
            f"**Inference** {inference_ms:.0f} ms (pre-processing, network, resize back) · "
            f"**request** {total_ms:.0f} ms  \n"
            f"**Mask** {mask_kind} · normalisation {'on' if normalize else 'off'} · background {background}"
        )


def _short(name: str) -> str:
    """Local paths shortened to their last two parts, so the page does not show the server's layout."""
    path = Path(name)
    return "/".join(path.parts[-2:]) if path.is_absolute() else name


# ----------------------------------------------------------------------- layout

CSS = """
#u2net-header h1 { margin-bottom: 0.2em; }
#u2net-info { min-height: 5.5em; }
"""

HEADER = """
<div id="u2net-header">

# U²-Net background removal

Salient object detection with [U²-Net](https://arxiv.org/abs/2005.09007) (Qin et al., 2020), served by
[u2net-hub](https://github.com/u2net-hub/u2net-hub). Drop a photo, get its mask and an RGBA cutout, and see what
each of the six decoder stages predicts before the network fuses them.
</div>
"""

FOOTER = """
**Models.** The bundled demo model is the authors' released tiny configuration (1.1 M parameters), fine-tuned here on
synthetic scenes and mixed back towards the released weights: on real photos it behaves like the released tiny model
(maxF 0.85 against its masks). The full configuration loads the authors' released weights from the
Hub (needs network). Type any Hub id or (when running locally) a folder written by `save_pretrained`.

**API.** Every control is also an endpoint: `client.predict(handle_file("photo.jpg"), model, threshold, normalize,
background, colour, alpha_matting, api_name="/segment")` with `gradio_client`; see "Use via API" below.
"""


def _example_rows(model: str) -> tuple[list[list[Any]], list[str]]:
    rows, labels = [], []
    for file, threshold, normalize, background, colour, label in (
        ("astronaut.jpg", 0.0, False, "transparent", "#2e86de", "astronaut · transparent"),
        ("coffee.jpg", 0.0, False, "white", "#2e86de", "coffee · white"),
        ("chelsea.jpg", 0.5, False, "blur", "#2e86de", "chelsea · blurred photo, threshold 0.5"),
        ("synthetic.png", 0.0, True, "colour", "#2e86de", "synthetic scene · blue, normalised"),
    ):
        path = EXAMPLES_DIR / file
        if path.is_file():
            rows.append([str(path), model, threshold, normalize, background, colour, False])
            labels.append(label)
    return rows, labels


def build_demo(remover: BackgroundRemover | None = None) -> gr.Blocks:
    """The Blocks app; ``launch_demo`` queues and launches it."""
    remover = remover or BackgroundRemover()
    settings = remover.settings
    with gr.Blocks(title="U²-Net background removal", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(HEADER)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                image = readable_uploads(gr.Image(
                    label="Photo",
                    sources=["upload", "webcam", "clipboard"],
                    type="filepath",
                    image_mode=None,
                    height=360,
                    elem_id="u2net-input",
                ))
                model = gr.Dropdown(
                    choices=settings.model_choices(),
                    value=settings.default_model,
                    allow_custom_value=True,
                    label="Model",
                    info="a preset, any Hub id ('user/model') or a local folder written by save_pretrained",
                    elem_id="u2net-model",
                )
                model_status = gr.Markdown(elem_id="u2net-model-status")
                with gr.Accordion("Settings", open=True):
                    threshold = gr.Slider(
                        0.0, 1.0, value=0.0, step=0.01, label="Threshold",
                        info="0 keeps the soft mask; above 0 the mask becomes hard (0 or 255)",
                    )
                    normalize = gr.Checkbox(
                        value=False, label="Per-image normalisation",
                        info="stretch each map to 0..1 (the original test script's normPRED)",
                    )
                    alpha_matting = gr.Checkbox(
                        value=False, label="Alpha matting",
                        info="refine hair and fur from the photo's colours at full size (slower; threshold must be 0)",
                    )
                    with gr.Row():
                        background = gr.Radio(BACKGROUNDS, value="transparent", label="Cutout background")
                        colour = gr.ColorPicker(value="#2e86de", label="Colour", visible=False)
                run = gr.Button("Remove background", variant="primary", elem_id="u2net-run")
            with gr.Column(scale=1):
                slider = gr.ImageSlider(
                    label="Before / after", type="filepath", format="webp", max_height=520, elem_id="u2net-slider"
                )
                info = gr.Markdown(elem_id="u2net-info")
                with gr.Row():
                    mask = gr.Image(
                        label="Mask (8-bit, photo size)", type="filepath", format="png",
                        interactive=False, elem_id="u2net-mask",
                    )
                    cutout_file = gr.File(label="Cutout (RGBA PNG, full size)", interactive=False, elem_id="u2net-cutout")
        gallery = gr.Gallery(
            label="Side outputs (deep supervision): the fused map and side1..side6, with each stage's resolution",
            columns=7, height=230, object_fit="contain", format="png", elem_id="u2net-gallery",
        )

        inputs = [image, model, threshold, normalize, background, colour, alpha_matting]
        outputs = [slider, mask, cutout_file, gallery, info]
        run.click(remover.segment, inputs, outputs, api_name="segment")
        model.change(remover.load_model, model, model_status, api_name="load_model")
        background.change(
            lambda choice: gr.ColorPicker(visible=choice == "colour"), background, colour, api_visibility="private"
        )
        demo.load(remover.load_model, model, model_status, api_visibility="private")

        rows, labels = _example_rows(settings.default_model)
        if rows:
            gr.Examples(
                rows, inputs, outputs, fn=remover.segment, cache_examples=True, cache_mode="lazy",
                example_labels=labels, label="Examples (bundled photos; results cached after first use)",
            )
        gr.Markdown(FOOTER)
    return demo


def launch_demo(demo: gr.Blocks, settings: Settings, **kwargs: Any):
    """Queue with bounded concurrency and launch; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured."""
    demo.queue(default_concurrency_limit=max(1, settings.concurrency), max_size=settings.queue_size)
    return demo.launch(
        max_file_size=settings.max_file_size,
        theme=gr.themes.Soft(),
        css=CSS,
        footer_links=["api", "gradio", "settings"],
        **kwargs,
    )


def _preload(remover: BackgroundRemover, model: str) -> None:
    try:
        remover.models.get(model)
    except ModelLoadError as error:
        print(f"the default model is not available: {error}", file=sys.stderr)


# Cached example outputs belong to this process's model: keep them out of the working tree and out of later runs.
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(owned_temp_dir(TEMP_PREFIX + "examples-")))
# Gradio's copies of uploads and results: in a folder of ours too, unless the host chose one.
os.environ.setdefault("GRADIO_TEMP_DIR", str(owned_temp_dir(TEMP_PREFIX + "gradio-")))
#: The event functions of the app below (settings from the environment).
remover = BackgroundRemover()
#: The app: what a Space serves, what `python app.py` launches and what `gradio app.py` reloads.
demo = build_demo(remover)


def main(argv: list[str] | None = None) -> None:
    """Launch the Space: ``python space/app.py [--model M] [--host H] [--port P]``."""
    global demo, remover
    parser = argparse.ArgumentParser(description="U²-Net background removal demo (Gradio)")
    parser.add_argument("--model", help="model selected at start-up: a folder or a Hub id (default: $U2NET_MODEL or the bundled demo)")
    parser.add_argument("--host", help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    args = parser.parse_args(argv)
    reuse_freed_memory()  # this process is ours: keep activation buffers between requests
    # Our temp folders go when the server stops (exit or SIGTERM); those of a killed server go at the next start.
    clean_up_on_signals()
    for stale in prune_stale_temp_dirs(TEMP_PREFIX):
        print(f"removed {stale}, left by a server that was stopped before it could clean up", file=sys.stderr)
    if args.model:
        os.environ["U2NET_MODEL"] = args.model  # also what a reload (`gradio app.py -- --model M`) rebuilds with
        remover = BackgroundRemover()
        demo = build_demo(remover)
    # Load the default model while the server starts, so the first visitor does not wait for it
    # (a failure here is only logged: the page reports it, and the other models still work).
    threading.Thread(target=_preload, args=(remover, remover.settings.default_model), daemon=True).start()
    launch_demo(demo, remover.settings, server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
