"""`predict()`: images in, masks at each image's own size out.

The network always sees ``input_size`` x ``input_size`` (so images of any size
batch together); only the probability maps are resized back, one image at a
time, in float32 through PIL, so a 6000x4000 photo costs a few of its own
float32 planes and never a float64 or batch-sized copy. Side outputs are kept
at the network's size and only brought to full size when they are read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .pipeline import Ready, run
from .processing import (
    ImageLoadError,
    cutout as _cutout,
    image_to_array,
    is_batch,
    load_image,
    load_image_reduced,
    mask_at_size,
    postprocess,
    to_mask,
)


@dataclass(repr=False, eq=False)
class Prediction:
    """The result for one image, everything at the image's own size.

    ``image``: the RGB image the mask belongs to (upright per EXIF).
    ``probability``: float32 H x W saliency in [0, 1] (the fused output).
    ``mask``: the same as an 8-bit PIL "L" image (0..255).
    ``side_probabilities`` / ``side_masks``: the six side outputs (side1 .. side6)
    as arrays / "L" images, computed on first access; ``None`` when
    ``predict(..., sides=False)``.
    ``network_side_probabilities``: the same six at the network's input size,
    (6, S, S) float32, as the network made them (cheap previews).
    """

    image: Image.Image
    probability: np.ndarray
    normalized: bool = False
    #: The six side probabilities at the network's size, (6, S, S) float32; resized on demand.
    network_side_probabilities: np.ndarray | None = field(default=None)
    #: The network input side the maps came from (sets the width of alpha matting's unknown band).
    input_size: int | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports it."""
        return self.image.size

    @property
    def side_maps(self) -> np.ndarray | None:
        """Deprecated name of :attr:`network_side_probabilities`."""
        warnings.warn(
            "Prediction.side_maps is renamed network_side_probabilities", DeprecationWarning, stacklevel=2
        )
        return self.network_side_probabilities

    @cached_property
    def mask(self) -> Image.Image:
        """The fused probability as an 8-bit "L" image (0..255) at the image's size."""
        return to_mask(self.probability)

    @cached_property
    def side_probabilities(self) -> list[np.ndarray] | None:
        """The six side outputs (side1..side6) as float32 H x W arrays at the image's size, or None."""
        if self.network_side_probabilities is None:
            return None
        return [postprocess(side, self.size, normalize=self.normalized) for side in self.network_side_probabilities]

    @cached_property
    def side_masks(self) -> list[Image.Image] | None:
        """The six side outputs as "L" images at the image's size, or None."""
        if self.side_probabilities is None:
            return None
        return [to_mask(side) for side in self.side_probabilities]

    def cutout(
        self,
        background: Any = None,
        threshold: float | None = None,
        *,
        alpha_matting: bool = False,
        alpha_matting_foreground_threshold: int = 240,
        alpha_matting_background_threshold: int = 10,
        alpha_matting_erode_size: int = 10,
        post_process_mask: bool = False,
        progress: bool | None = None,
    ) -> Image.Image:
        """RGBA at the image's size with the mask as alpha (see :func:`u2net_hub.processing.cutout`).

        Args:
            background: None keeps transparency; "white", any colour name, "#rrggbb" or
                (r, g, b) fills it; "blur" puts the object on its own blurred photo.
            threshold: in (0, 1], makes the alpha hard (0 or 255); None keeps it soft.

            alpha_matting: refine the edge (hair, fur) from the photo's colours and remove the
                background's colour from it (docs/matting.md); the ``alpha_matting_*`` knobs are rembg's.
            post_process_mask: rembg's morphological clean-up (hard mask, smooth outline).

        Returns:
            An RGBA image (or RGB when a background fills it).
        """
        if alpha_matting:
            alpha = self.probability
        else:
            alpha = self.probability if threshold else self.mask
        return _cutout(
            self.image, alpha, background=background, threshold=threshold,
            alpha_matting=alpha_matting,
            alpha_matting_foreground_threshold=alpha_matting_foreground_threshold,
            alpha_matting_background_threshold=alpha_matting_background_threshold,
            alpha_matting_erode_size=alpha_matting_erode_size,
            network_size=self.input_size, post_process_mask=post_process_mask, progress=progress,
        )

    def __repr__(self) -> str:
        width, height = self.size
        sides = 0 if self.network_side_probabilities is None else len(self.network_side_probabilities)
        return f"Prediction(size={width}x{height}, normalized={self.normalized}, side_outputs={sides})"


def _check_model(model: Any) -> None:
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "preprocessing"):
        raise TypeError(
            f"predict() needs a U2Net model as its first argument, got {type(model).__name__}; "
            "load one with U2Net.from_pretrained(...)"
        )
    if getattr(model, "out_channels", 1) != 1:
        raise ValueError(f"predict() handles single-map saliency models; this one has {model.out_channels} output channels")


def _check_batch_size(batch_size: Any) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _load(item: Any, index: int, batched: bool) -> Image.Image:
    try:
        return load_image(item)
    except ImageLoadError as error:
        if batched:
            raise ImageLoadError(f"image {index}: {error}") from None
        raise


class StreamedPrediction(Prediction):
    """A :class:`Prediction` that keeps the network-size maps and brings them to full size only when read.

    Why: a folder run writes one output per image; computing the full-size
    float32 map for a mask that can be made in uint8 (:func:`~u2net_hub.processing.mask_at_size`,
    within one grey level, ~4x cheaper) is wasted work and memory.
    ``probability`` is exactly what :func:`predict` gives. ``image`` is None
    when the photo was decoded reduced (``draft=True``); ``cutout`` then raises.
    """

    def __init__(self, image: Image.Image | None, size: tuple[int, int], fused: np.ndarray,
                 normalized: bool, network_side_probabilities: np.ndarray | None, input_size: int | None = None):
        self.image = image
        self.input_size = input_size
        self._size = (int(size[0]), int(size[1]))
        self._fused = fused
        self.normalized = normalized
        self.network_side_probabilities = network_side_probabilities

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @cached_property
    def probability(self) -> np.ndarray:  # type: ignore[override]
        return postprocess(self._fused, self._size, normalize=self.normalized)

    @cached_property
    def mask(self) -> Image.Image:
        if self.normalized or "probability" in self.__dict__:
            return to_mask(self.probability)
        return mask_at_size(self._fused, self._size)

    def cutout(self, *args: Any, **kwargs: Any) -> Image.Image:
        if self.image is None:
            raise ValueError("this prediction was made from a reduced decode (draft=True), which keeps no full image; "
                             "predict without draft for cutouts")
        return super().cutout(*args, **kwargs)


def iter_predictions(
    model: torch.nn.Module,
    images: Iterable[Any],
    *,
    normalize: bool = False,
    batch_size: int = 8,
    fast: bool = True,
    compile: bool = False,
    sides: bool = True,
    resample: str = "bilinear",
    draft: bool = False,
    then: Callable[[int, StreamedPrediction], Any] | None = None,
    workers: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, result)`` for many images in input order, with decoding and encoding overlapped.

    Why: for folders and long lists; memory stays flat (a few batches of images
    alive at a time, see :mod:`u2net_hub.pipeline`) and a bad image does not
    stop the others: its result is the :class:`ImageLoadError` (or whatever
    ``then`` raised). Results are :class:`StreamedPrediction` objects, or what
    ``then(index, prediction)`` returns; ``then`` runs on the worker threads,
    so saving files there overlaps with the network.

    Args:
        model: as in :func:`predict`.
        normalize: as in :func:`predict`.
        batch_size: as in :func:`predict`.
        fast: as in :func:`predict`.
        compile: as in :func:`predict`.
        sides: as in :func:`predict`.
        resample: as in :func:`predict`.
        images: paths, bytes, PIL images or arrays; any iterable, consumed lazily.
        draft: decode JPEGs reduced (1/2..1/8 scale, straight to the network's
            size); less decoding, but the network sees a different image (on the
            benchmark photos 19% of mask pixels differ from a full decode by more
            than one grey level, docs/speed.md). No cutouts from such predictions.
        then: called on the pool with each finished prediction.
        workers: decoding/encoding threads (default: one per core, at most 4 beside a CPU network and
            32 beside a GPU).

    Returns:
        An iterator of (index, prediction or ``then``'s result, or the exception for that image).
    """
    _check_model(model)
    batch_size = _check_batch_size(batch_size)
    preprocessing = model.preprocessing
    size = preprocessing.input_size

    def prepare(item: Any) -> Ready:
        if draft:
            image, full_size = load_image_reduced(item, size)
            return Ready(image_to_array(image, preprocessing, resample), (None, full_size))
        image = load_image(item)
        return Ready(image_to_array(image, preprocessing, resample), (image, image.size))

    def finish(payload: Any, fused: np.ndarray, side_maps: np.ndarray | None) -> Any:
        index, (image, full_size) = payload
        prediction = StreamedPrediction(image, full_size, fused, normalize, side_maps, size)
        return prediction if then is None else then(index, prediction)

    def prepare_indexed(pair: tuple[int, Any]) -> Ready:
        index, item = pair
        ready = prepare(item)
        ready.payload = (index, ready.payload)
        return ready

    yield from _with_exact_model(
        model, fast,
        run(model, enumerate(images), prepare_indexed, finish, batch_size=batch_size, fast=fast, compile=compile,
            sides=sides, workers=workers),
    )


def _with_exact_model(model: torch.nn.Module, fast: bool, results: Iterator) -> Iterator:
    """The exact path runs the model itself: in eval mode for the run, its training flag restored after."""
    was_training = model.training
    if not fast:
        model.eval()
    try:
        yield from results
    finally:
        results.close()
        if not fast and was_training:
            model.train()


def predict(
    model: torch.nn.Module,
    images: Any,
    *,
    normalize: bool = False,
    batch_size: int = 8,
    fast: bool = True,
    compile: bool = False,
    sides: bool = True,
    resample: str = "bilinear",
    progress: bool = False,
    workers: int | None = None,
) -> Prediction | list[Prediction]:
    """Saliency masks for one image or a list of images (a list in gives a list out).

    Runs on the model's device, under ``torch.inference_mode()``; the model's
    own mode (training or eval) is left as it was. Decoding and post-processing
    overlap with the network on a few threads, and on CPU glibc keeps activation
    buffers for the call's duration (:func:`~u2net_hub.acceleration.freed_memory_reused`).
    For folders too large to hold every result, use :func:`iter_predictions`.

    Args:
        model: a U2Net (as first argument, or call ``model.predict(images, ...)``).
        images: a path, PIL image of any mode, numpy array or encoded bytes, or a list
            of them, of any and mixed sizes.
        normalize: apply the original's per-image min-max ("normPRED"), image by image
            even inside a batch.
        batch_size: images per forward pass.
        fast: run the fast path: the BatchNorm-folded, conv+ReLU-fused channels_last copy
            in bf16 where the hardware has it; ``fast=False`` runs the exact float32 network.
        compile: run the fast path through ``torch.compile`` (slow first call).
        sides: keep the six side outputs (``Prediction.side_probabilities``).
        resample: the pre-processing resize filter ("bilinear", or "lanczos" like rembg).
        progress: show a tqdm progress bar.
        workers: threads that decode and post-process while the network runs (default one
            per core, at most 4 beside a CPU network and 32 beside a GPU; 0 runs everything on the
            calling thread).

    Returns:
        One :class:`Prediction` per image (a list for a list), everything at each image's size.

    Raises:
        ImageLoadError: an image cannot be read (the message names which one in a list).
    """
    _check_model(model)
    batch_size = _check_batch_size(batch_size)
    batched = is_batch(images)
    items = list(images) if batched else [images]
    if not items:
        return []
    preprocessing = model.preprocessing

    def prepare(pair: tuple[int, Any]) -> Ready:
        index, item = pair
        image = _load(item, index, batched)
        return Ready(image_to_array(image, preprocessing, resample), image)

    def finish(image: Image.Image, fused: np.ndarray, side_maps: np.ndarray | None) -> Prediction:
        probability = postprocess(fused, image.size, normalize=normalize)
        return Prediction(
            image=image, probability=probability, normalized=normalize, network_side_probabilities=side_maps,
            input_size=preprocessing.input_size,
        )

    results: list[Prediction] = []
    bar = None
    if progress:
        bar = tqdm(total=len(items), desc="predict", unit="image")
    stream = _with_exact_model(
        model, fast,
        run(model, enumerate(items), prepare, finish, batch_size=batch_size, fast=fast, compile=compile,
            sides=sides, workers=workers),
    )
    try:
        for _, result in stream:
            if isinstance(result, Exception):
                raise result
            results.append(result)
            if bar is not None:
                bar.update(1)
    finally:
        stream.close()
        if bar is not None:
            bar.close()
    return results if batched else results[0]


__all__ = ["Prediction", "StreamedPrediction", "predict", "iter_predictions", "ImageLoadError"]
