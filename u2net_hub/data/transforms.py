"""Paired image/mask transforms for training and evaluation, in the form `datasets` expects.

The recipe of the paper's repository: resize both to ``resolution`` (image
bilinear, mask nearest neighbour), then for training a random
``crop_size`` crop and a random flip, the *same* box and flip for image and
mask. Every geometric step runs on PIL images with one shared set of
parameters, so the mask cannot drift from the image.

Normalisation is the inference code's own (:func:`u2net_hub.processing.image_to_array`:
divide by the image's maximum, then ImageNet mean/std), applied to the final
crop as the original training loader did; the model therefore sees the same
statistics at training and at test time. Labels are the mask divided by its
maximum (all-zero masks stay zero), so 0/1, 0/255 and 16-bit masks all work.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ..configs import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from ..processing import image_to_array, load_image

__all__ = ["SaliencyTransform", "collate_fn", "mask_to_pil", "pre_resize", "FLIP_MODES"]

FLIP_MODES = ("horizontal", "vertical", "both", "none")


def mask_to_pil(mask: Any) -> Image.Image:
    """A mask in any common form -> a one-channel PIL image ("L" for 8-bit, "F" otherwise).

    RGB masks are read as luminance; a mask with a varying alpha channel is
    read from its alpha (the matting convention); 1-bit, 16-bit and float
    masks keep their values (the transform divides by the maximum later).

    Args:
        mask: a PIL image of any mode or a numpy array (H, W) or (H, W, 1|3|4).

    Returns:
        The mask as an "L" or "F" image.
    """
    if isinstance(mask, np.ndarray):
        array = mask
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
            array = array[..., -1] if array.shape[-1] == 4 and np.ptp(array[..., -1]) > 0 else array[..., 0]
        if array.ndim != 2:
            raise ValueError(f"a mask array must be (H, W) or (H, W, 1|3|4), got shape {mask.shape}")
        if array.dtype == np.uint8:
            return Image.fromarray(array, "L")
        return Image.fromarray(array.astype(np.float32), "F")
    if not isinstance(mask, Image.Image):
        raise TypeError(f"a mask must be a PIL image or a numpy array, got {type(mask).__name__}")
    mode = mask.mode
    if mode in ("L", "F"):
        return mask
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in mask.info):
        alpha = mask.getchannel("A") if mode != "P" else mask.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            return alpha
    if mode == "I" or mode.startswith("I;"):
        values = np.asarray(mask)
        return Image.fromarray(values.astype(np.float32), "F")
    return mask.convert("L")


def _check_flip(flip: Any) -> str:
    if flip is True:
        return "horizontal"
    if flip is False or flip is None:
        return "none"
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES} (or a bool), got {flip!r}")
    return flip


class SaliencyTransform:
    """Callable for ``dataset.with_transform``: a batch of PIL ``image``/``mask`` -> tensors.

    Returns ``{"pixel_values": [float32 (3, H, W)], "labels": [float32 (1, H, W) in [0, 1]]}``.
    ``train=True``: resize to ``resolution``, random ``crop_size`` crop (same
    box for both), random flip (same for both). ``train=False``: resize only,
    no randomness at all.

    Randomness: with ``seed=None`` the transform draws from torch's global
    generator (seeded by ``torch.manual_seed``/``accelerate.utils.set_seed``
    and already distinct in every DataLoader worker). With a ``seed`` it owns
    a ``torch.Generator``; inside a DataLoader worker that generator is seeded
    from ``(seed, worker id)`` so workers do not repeat each other.

    Args:
        resolution: the side every pair is resized to first.
        crop_size: the side of the random crop when training (None: no crop); 288 of 320 in the paper.
        train: random crop and flip (False: resize only).
        flip: ``horizontal``, ``vertical``, ``both`` or ``none`` (True/False: horizontal/none).
        mean: the model's per-channel mean.
        std: the model's per-channel standard deviation.
        divide_by_max: divide the image by its maximum first (the authors' pre-processing).
        image_column: the batch's image column.
        mask_column: the batch's mask column.
        seed: own a generator with this seed (None: draw from torch's global generator).
    """

    def __init__(
        self,
        resolution: int = 320,
        crop_size: int | None = 288,
        train: bool = True,
        flip: str | bool = "horizontal",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        divide_by_max: bool = True,
        image_column: str = "image",
        mask_column: str = "mask",
        seed: int | None = None,
    ):
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
        if train and crop_size is not None and (not isinstance(crop_size, int) or not 1 <= crop_size <= resolution):
            raise ValueError(
                f"crop_size must be an integer in [1, resolution={resolution}] or None (no crop), got {crop_size!r}; "
                "the paper crops 288 of 320, i.e. about 0.9 x resolution"
            )
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need three values each (std > 0), got {mean!r} and {std!r}")
        self.resolution = resolution
        self.crop_size = crop_size if train and crop_size is not None else resolution
        self.train = bool(train)
        self.flip = _check_flip(flip) if train else "none"
        self.image_column, self.mask_column = image_column, mask_column
        self.preprocessing = Preprocessing(self.crop_size, tuple(mean), tuple(std), bool(divide_by_max))
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_worker: int | None = None

    @classmethod
    def for_model(cls, model: Any, train: bool = True, crop_size: int | None = None, **kwargs) -> "SaliencyTransform":
        """The transform matching a model's own pre-processing (resolution, mean, std, divide-by-max).

        Args:
            model: a :class:`u2net_hub.U2Net` (anything with a ``preprocessing``).
            train: as in the constructor.
            crop_size: the crop when training (None: 0.9 x the model's input size, 288 of 320 as in the paper).
            **kwargs: the constructor's other arguments (flip, columns, seed).

        Returns:
            The transform.
        """
        pre: Preprocessing = model.preprocessing
        if crop_size is None and train:
            crop_size = round(pre.input_size * 0.9)  # 288 of 320, as in the paper
        return cls(pre.input_size, crop_size, train, mean=pre.mean, std=pre.std, divide_by_max=pre.divide_by_max,
                   **kwargs)

    def __repr__(self) -> str:
        return (f"SaliencyTransform(resolution={self.resolution}, crop_size={self.crop_size}, train={self.train}, "
                f"flip={self.flip!r}, mean={self.preprocessing.mean}, std={self.preprocessing.std}, "
                f"divide_by_max={self.preprocessing.divide_by_max}, seed={self.seed})")

    # -- randomness --------------------------------------------------------------------------------

    def _rng(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = torch.utils.data.get_worker_info()
        worker = None if info is None else info.id
        if self._generator is None or worker != self._generator_worker:
            generator = torch.Generator()
            generator.manual_seed(int(self.seed) if worker is None else hash((int(self.seed), worker)) & (2**63 - 1))
            self._generator, self._generator_worker = generator, worker
        return self._generator

    def _randint(self, high: int, generator: torch.Generator | None = None) -> int:
        """Uniform integer in [0, high)."""
        if high <= 1:
            return 0
        return int(torch.randint(high, (1,), generator=generator or self._rng()).item())

    def draw(self, generator: torch.Generator | None = None) -> tuple[int, int, bool, bool]:
        """The next random (top, left, flip left-right, flip top-bottom); all zero/False when not training.

        Args:
            generator: draw from this generator (e.g. one per sample, see
                :func:`u2net_hub.data.integrity.sample_generator`) instead of the transform's own stream.

        Returns:
            The parameters for :meth:`apply`.
        """
        if not self.train:
            return 0, 0, False, False
        span = self.resolution - self.crop_size + 1
        top, left = self._randint(span, generator), self._randint(span, generator)
        horizontal = self.flip in ("horizontal", "both") and self._randint(2, generator) == 1
        vertical = self.flip in ("vertical", "both") and self._randint(2, generator) == 1
        return top, left, horizontal, vertical

    # -- the transform -----------------------------------------------------------------------------

    def apply(self, image: Any, mask: Any, params: tuple[int, int, bool, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform one pair with explicit parameters (what `draw` returns).

        Args:
            image: anything :func:`u2net_hub.processing.load_image` reads.
            mask: anything :func:`mask_to_pil` reads.
            params: (top, left, flip left-right, flip top-bottom).

        Returns:
            pixel_values float32 (3, S, S) and labels float32 (1, S, S) in [0, 1], S the crop size.
        """
        top, left, horizontal, vertical = params
        size = (self.resolution, self.resolution)
        image = load_image(image)
        mask = mask_to_pil(mask)
        image = image.resize(size, Image.Resampling.BILINEAR)
        mask = mask.resize(size, Image.Resampling.NEAREST)
        if self.crop_size != self.resolution:
            box = (left, top, left + self.crop_size, top + self.crop_size)
            image, mask = image.crop(box), mask.crop(box)
        for flag, how in ((horizontal, Image.Transpose.FLIP_LEFT_RIGHT), (vertical, Image.Transpose.FLIP_TOP_BOTTOM)):
            if flag:
                image, mask = image.transpose(how), mask.transpose(how)
        # The crop already has the preprocessing's input size, so this resize is a no-op copy.
        pixel_values = torch.from_numpy(np.ascontiguousarray(image_to_array(image, self.preprocessing)))
        labels = np.asarray(mask, dtype=np.float32)
        top_value = float(labels.max()) if labels.size else 0.0
        labels = labels / top_value if top_value > 0 else np.zeros_like(labels)
        return pixel_values, torch.from_numpy(np.ascontiguousarray(labels))[None]

    def __call__(self, batch: dict[str, list]) -> dict[str, list[torch.Tensor]]:
        for column in (self.image_column, self.mask_column):
            if column not in batch:
                raise KeyError(
                    f"SaliencyTransform needs a {column!r} column; the batch has {sorted(batch)} "
                    "(load data with u2net_hub.data.load_saliency_dataset to get image/mask columns)"
                )
        images, masks = batch[self.image_column], batch[self.mask_column]
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks in the batch")
        out: dict[str, list[torch.Tensor]] = {"pixel_values": [], "labels": []}
        for image, mask in zip(images, masks):
            if image is None or mask is None:
                raise ValueError("a row has no image or no mask; drop it before training (dataset.filter)")
            x, y = self.apply(image, mask, self.draw())
            out["pixel_values"].append(x)
            out["labels"].append(y)
        return out


def collate_fn(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack transformed rows into a batch: pixel_values (B, 3, H, W), labels (B, 1, H, W).

    Args:
        rows: what :class:`SaliencyTransform` made, one dict per sample.

    Returns:
        The batch.
    """
    if not rows:
        raise ValueError("collate_fn got an empty batch")
    batch = {}
    for key in ("pixel_values", "labels"):
        try:
            batch[key] = torch.stack([row[key] for row in rows])
        except KeyError:
            raise KeyError(f"collate_fn expects rows with 'pixel_values' and 'labels', got {sorted(rows[0])}") from None
        except RuntimeError as error:
            shapes = sorted({tuple(row[key].shape) for row in rows})
            raise ValueError(f"cannot stack {key} of different shapes {shapes}: {error}") from None
    return batch


def pre_resize(dataset: Any, resolution: int, image_column: str = "image", mask_column: str = "mask",
               num_proc: int | None = None) -> Any:
    """The dataset with every image and mask already resized to ``resolution`` (a cached `datasets.map`).

    It is the transform's first, most expensive step (decoding a full-size photo
    and resizing it) done once instead of every epoch; the transform's own
    resize then returns an exact copy, so training sees the same pixels either
    way. Images are stored as lossless PNG (float masks as TIFF); `datasets`
    caches the result next to a Hub or folder dataset's own cache files, so a
    second run, or the other ranks of a multi-process run, reuse it.

    Args:
        dataset: a `datasets.Dataset` with image and mask columns.
        resolution: the side to resize to (the transform's `resolution`).
        image_column: the image column.
        mask_column: the mask column.
        num_proc: processes for `datasets.map` (None: this one).

    Returns:
        The resized dataset.
    """
    from datasets import Image as ImageFeature

    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    missing = [c for c in (image_column, mask_column) if c not in dataset.column_names]
    if missing:
        raise KeyError(f"pre_resize needs the columns {missing}; the dataset has {dataset.column_names}")
    size = (resolution, resolution)

    def resize(batch: dict[str, list]) -> dict[str, list]:
        return {
            image_column: [load_image(image).resize(size, Image.Resampling.BILINEAR) for image in batch[image_column]],
            mask_column: [mask_to_pil(mask).resize(size, Image.Resampling.NEAREST) for mask in batch[mask_column]],
        }

    features = dataset.features.copy()
    features[image_column], features[mask_column] = ImageFeature(), ImageFeature()
    return dataset.map(resize, batched=True, batch_size=32, features=features, num_proc=num_proc,
                       desc=f"pre-resizing to {resolution}x{resolution}")
