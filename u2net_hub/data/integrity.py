"""Imperfect data: find every unusable sample before training, and read samples so that one bad file
names itself instead of ending a run with a DataLoader traceback.

Two pieces:

* :func:`check_saliency_dataset` opens every image and mask once, before the
  first step: the headers (format, size, EXIF orientation) and a cheap decode
  (JPEG at 1/8 scale, which still reads the whole entropy-coded stream; PNG
  chunk CRCs through ``verify``; other formats fully), in a thread pool
  (Pillow decodes without the GIL). It returns every unreadable file and every
  image/mask pair whose sizes differ, so one message can name them all.
* :class:`TrainingSamples` is the torch dataset the training loop reads: it
  decodes a row itself, raises :class:`BadSampleError` naming the file (or,
  with ``skip_bad=True``, warns and returns None, which :func:`collate_samples`
  drops), and draws each sample's crop and flip from ``(seed, epoch, index)``
  so that the augmentation does not depend on which process or DataLoader
  worker reads it, nor on how many samples were read before: a resumed run
  draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from ..processing import ImageLoadError, check_pixels, load_image
from .transforms import collate_fn

__all__ = ["SampleProblem", "DataCheck", "BadSampleError", "check_saliency_dataset", "TrainingSamples",
           "collate_samples", "sample_generator", "undecoded", "describe_problems"]

#: Rows read per chunk while checking (bounds the memory of datasets that embed their image bytes).
_CHUNK = 256
_ORIENTATION = 0x0112


class BadSampleError(ValueError):
    """A sample that cannot be read; the message names the file (or the row) and the reason."""


@dataclass(frozen=True)
class SampleProblem:
    """One unusable or suspicious sample: its row, a name a user can find (file path or ``row N``), why."""

    index: int
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class DataCheck:
    """What :func:`check_saliency_dataset` found.

    ``bad``: samples that cannot be used (unreadable image or mask).
    ``size_mismatches``: pairs whose mask has another size than its image (the
    mask would be stretched onto the image); a warning by default, unusable
    with ``strict``.
    """

    num_samples: int
    bad: list[SampleProblem] = field(default_factory=list)
    size_mismatches: list[SampleProblem] = field(default_factory=list)

    def unusable(self, strict: bool = False) -> list[SampleProblem]:
        """The samples to refuse or skip: the bad ones, plus the size mismatches when ``strict``.

        Args:
            strict: count a mask of another size than its image as unusable too.

        Returns:
            The problems, by sample index.
        """
        problems = self.bad + (self.size_mismatches if strict else [])
        return sorted(problems, key=lambda p: p.index)

    def usable_indices(self, strict: bool = False) -> list[int]:
        """The rows to train on: every index but the :meth:`unusable` ones.

        Args:
            strict: as in :meth:`unusable`.

        Returns:
            The indices, in order (for ``dataset.select``).
        """
        dropped = {p.index for p in self.unusable(strict)}
        return [i for i in range(self.num_samples) if i not in dropped]

    def __bool__(self) -> bool:  # "is there anything to report"
        return bool(self.bad or self.size_mismatches)


def undecoded(dataset, columns: tuple[str, ...] = ("image", "mask")):
    """The dataset with its Image columns left encoded ({"bytes", "path"} cells), so reading cannot fail.

    Args:
        dataset: a `datasets.Dataset`.
        columns: the columns to leave encoded (those that are not decoding Image columns are left alone).

    Returns:
        The dataset, cast where needed.
    """
    from datasets import Image as ImageFeature

    for column in columns:
        feature = dataset.features.get(column)
        if isinstance(feature, ImageFeature) and feature.decode:
            dataset = dataset.cast_column(column, ImageFeature(decode=False))
    return dataset


def _cell_source(cell: Any) -> tuple[Any, str | None]:
    """(what PIL can open: bytes, a path, a PIL image or an array; the file's path when known)."""
    if isinstance(cell, dict):
        path = cell.get("path")
        data = cell.get("bytes")
        return (data if data is not None else path), path
    if isinstance(cell, (str, os.PathLike)):
        return cell, str(cell)
    return cell, None


def _name(cell: Any, index: int, column: str) -> str:
    _, path = _cell_source(cell)
    return str(path) if path else f"row {index} ({column})"


def _open(source: Any) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(source)))
    return Image.open(source)


def _probe(cell: Any, full: bool) -> tuple[int, int]:
    """The displayed (width, height) of an encoded image cell; raises ValueError/OSError when unreadable."""
    source, path = _cell_source(cell)
    if source is None:
        raise ValueError("missing (no bytes and no path)")
    if isinstance(source, Image.Image):
        return source.size
    if isinstance(source, np.ndarray):
        return (source.shape[1], source.shape[0]) if source.ndim >= 2 else (0, 0)
    if isinstance(source, (str, os.PathLike)):
        file = Path(source)
        if not file.is_file():
            raise ValueError("no such file" if not file.exists() else "not a file")
        if file.stat().st_size == 0:
            raise ValueError("the file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(source) as image:
            width, height = image.size
            check_pixels((width, height), "image")
            orientation = 1
            # PNG keeps EXIF anywhere, and Pillow decodes the whole image to find it: read it only when it was
            # in the header; the other formats carry it before the pixels.
            if image.format != "PNG" or "exif" in image.info:
                try:
                    orientation = image.getexif().get(_ORIENTATION, 1)
                except Exception:  # noqa: BLE001 - a broken EXIF block does not make the pixels unusable
                    orientation = 1
            if full:
                if image.format == "JPEG":
                    image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
                    image.load()
                elif image.format == "PNG":
                    with _open(source) as fresh:  # verify must come right after open
                        fresh.verify()  # every chunk's CRC, up to IEND: catches truncation and corruption
                else:
                    image.load()
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees when shown (and when loaded for training)
        width, height = height, width
    return width, height


def _reason(error: BaseException) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not an image file (or a format Pillow cannot read)"
    if isinstance(error, ImageLoadError):
        return str(error).split(": ", 1)[-1]
    text = str(error) or type(error).__name__
    if isinstance(error, (OSError, SyntaxError, EOFError)) and not isinstance(error, FileNotFoundError):
        return f"cannot decode ({text})"
    return text


def _check_row(index: int, image_cell: Any, mask_cell: Any, full: bool,
               image_column: str, mask_column: str) -> tuple[list[SampleProblem], SampleProblem | None]:
    bad: list[SampleProblem] = []
    sizes = {}
    for column, cell in ((image_column, image_cell), (mask_column, mask_cell)):
        try:
            sizes[column] = _probe(cell, full)
        except Exception as error:  # noqa: BLE001 - every failure is reported by name, none is fatal here
            bad.append(SampleProblem(index, _name(cell, index, column), _reason(error)))
    mismatch = None
    if not bad and sizes[image_column] != sizes[mask_column]:
        (iw, ih), (mw, mh) = sizes[image_column], sizes[mask_column]
        mismatch = SampleProblem(
            index, _name(mask_cell, index, mask_column),
            f"{mw}x{mh} mask for the {iw}x{ih} image {_name(image_cell, index, image_column)}",
        )
    return bad, mismatch


def check_saliency_dataset(
    dataset,
    image_column: str = "image",
    mask_column: str = "mask",
    *,
    full: bool = True,
    num_threads: int | None = None,
    progress: bool = False,
    description: str = "checking the data",
) -> DataCheck:
    """Open every image and mask of a `datasets.Dataset` once and report what cannot be trained on.

    Why: one unreadable file otherwise surfaces as a long DataLoader traceback
    mid-run, without its name. This reads headers and does a cheap decode
    (``full=False``: headers only), in ``num_threads`` threads (default: up
    to 8, one per core), and never raises for bad data.

    Args:
        dataset: a `datasets.Dataset` with Image (or path string) columns.
        image_column: the column of the images to check.
        mask_column: the column of the masks to check.
        full: also decode (JPEG at 1/8 scale, PNG CRCs); False checks headers and sizes only.
        num_threads: worker threads; 1 checks in this thread.
        progress: show a tqdm bar.
        description: the progress bar's label.

    Returns:
        A :class:`DataCheck` with every bad sample and every image/mask size mismatch.
    """
    encoded = undecoded(dataset, (image_column, mask_column)).with_format(None)
    total = len(encoded)
    if num_threads is None:
        num_threads = min(8, os.cpu_count() or 1)
    result = DataCheck(total)
    bar = tqdm(total=total, desc=description, unit="sample", disable=not progress or total < 2, file=sys.stderr,
               dynamic_ncols=True)
    pool = ThreadPoolExecutor(num_threads) if num_threads > 1 and total > 16 else None
    try:
        for start in range(0, total, _CHUNK):
            rows = encoded[start:start + _CHUNK]
            args = [(start + i, image, mask, full, image_column, mask_column)
                    for i, (image, mask) in enumerate(zip(rows[image_column], rows[mask_column]))]
            found = pool.map(lambda a: _check_row(*a), args) if pool else (_check_row(*a) for a in args)
            for bad, mismatch in found:
                result.bad.extend(bad)
                if mismatch is not None:
                    result.size_mismatches.append(mismatch)
            bar.update(len(args))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    return result


# ------------------------------------------------------------------ reading for training


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The augmentation random stream of one sample in one epoch: a function of (seed, epoch, index) alone.

    Args:
        seed: the run's seed.
        epoch: the epoch, from 0.
        index: the sample's row.

    Returns:
        A freshly seeded CPU generator.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _load_mask(cell: Any) -> Image.Image:
    source, _ = _cell_source(cell)
    if source is None:
        raise ValueError("missing (no bytes and no path)")
    if isinstance(source, (Image.Image, np.ndarray)):
        return source
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise ValueError("no such file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _open(source)
        image.load()
    return ImageOps.exif_transpose(image)


class TrainingSamples(torch.utils.data.Dataset):
    """A saliency dataset read through a :class:`~u2net_hub.data.SaliencyTransform`, one sample at a time.

    Why not ``dataset.with_transform``: a row that cannot be decoded must say
    which file it is, and a sample's random crop and flip must not depend on
    the worker that reads it or on what was read before (exact resuming). Keys
    are ``index`` or ``(epoch, index)`` (what
    :class:`u2net_hub.training.EpochShuffleSampler` yields with ``keyed=True``);
    the augmentation of a key is drawn from :func:`sample_generator`.

    Args:
        dataset: a `datasets.Dataset` with image and mask columns.
        transform: the SaliencyTransform (train or eval).
        seed: the run's seed (augmentation streams derive from it).
        skip_bad: return None (and warn once per sample) instead of raising :class:`BadSampleError`.
        image_column: the column holding the images.
        mask_column: the column holding the masks; None for images without masks (labels are all zero; the
            teacher of a distillation supplies the targets).
    """

    def __init__(self, dataset, transform, seed: int = 0, skip_bad: bool = False,
                 image_column: str = "image", mask_column: str | None = "mask"):
        columns = (image_column,) if mask_column is None else (image_column, mask_column)
        self.dataset = undecoded(dataset, columns).with_format(None)
        self.transform = transform
        self.seed = int(seed)
        self.skip_bad = skip_bad
        self.image_column, self.mask_column = image_column, mask_column
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        row = self.dataset[int(index)]
        image_cell = row[self.image_column]
        mask_cell = None if self.mask_column is None else row[self.mask_column]
        column, cell = self.image_column, image_cell
        try:
            source, _ = _cell_source(image_cell)
            if source is None:
                raise ValueError("missing (no bytes and no path)")
            image = load_image(source)
            column, cell = self.mask_column, mask_cell
            mask = Image.new("L", image.size) if self.mask_column is None else _load_mask(mask_cell)
            params = self.transform.draw(sample_generator(self.seed, epoch, index))
            pixel_values, labels = self.transform.apply(image, mask, params)
        except Exception as error:  # noqa: BLE001 - named here, decided by skip_bad
            problem = SampleProblem(int(index), _name(cell, int(index), column), _reason(error))
            if not self.skip_bad:
                raise BadSampleError(str(problem)) from None
            if int(index) not in self._warned:
                self._warned.add(int(index))
                print(f"warning: skipped {problem}", file=sys.stderr, flush=True)
            return None
        return {"pixel_values": pixel_values, "labels": labels}


def collate_samples(rows: list) -> dict[str, torch.Tensor]:
    """:func:`~u2net_hub.data.collate_fn` without the samples :class:`TrainingSamples` skipped (None).

    Args:
        rows: the DataLoader's samples, None for a skipped one.

    Returns:
        The batch (``pixel_values``, ``labels``) of the samples kept.

    Raises:
        BadSampleError: every sample of the batch was skipped.
    """
    kept = [row for row in rows if row is not None]
    if not kept:
        raise BadSampleError(f"every sample of a batch of {len(rows)} was unreadable and skipped")
    return collate_fn(kept)


def describe_problems(problems: list[SampleProblem], title: str, limit: int = 50) -> str:
    """One message: the title, then one indented line per sample (at most `limit`, then a count).

    Args:
        problems: the samples to name.
        title: the first line (a colon is added).
        limit: how many to list before "... and N more".

    Returns:
        The message.
    """
    lines = [f"{title}:"] + [f"  {problem}" for problem in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def bad_sample_message(error: BaseException) -> str:
    """The one-line message of a BadSampleError, also when a DataLoader worker re-raised it with its traceback.

    Args:
        error: the exception caught around the training loop.

    Returns:
        The line naming the sample and the reason.
    """
    text = str(error).strip()
    marker = f"{BadSampleError.__name__}: "
    if marker in text:
        text = text.rsplit(marker, 1)[-1]
    return text.splitlines()[-1] if text else type(error).__name__
