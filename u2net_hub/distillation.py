"""Distillation: a teacher model's seven maps as the targets on photos that have no masks.

Why: a fine-tune on masks from another domain (synthetic scenes, composites) drifts away from what the
starting model did on real photographs. Masks computed once by a teacher anchor only those exact images; asking
the student to match the teacher's fused and side maps on every random crop and flip the loader draws, in the
same step as the labelled batch, anchors the behaviour on many more views (``train/train.py --distill_from``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .acceleration import to_channels_last
from .data import index_folder
from .losses import weighted_sum
from .modeling import U2NetOutput

__all__ = ["unlabelled_images", "distillation_loss", "split_output", "DistillationStream"]

_MASK_FOLDERS = {"mask", "masks", "label", "labels", "gt"}  # subfolders of a dataset folder that hold no photos


def unlabelled_images(folder: str | Path):
    """Every image file under `folder` (recursively) as a `datasets.Dataset` with one ``image`` column.

    Args:
        folder: a folder of photos, searched recursively; subfolders named ``masks``, ``labels`` or ``gt`` (a
            dataset folder's masks) are skipped.

    Returns:
        The dataset, its cells left as paths.

    Raises:
        ValueError: the folder does not exist or holds no image.
    """
    from datasets import Dataset, Features, Image

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{folder}: no such folder")
    paths = [str(path) for stem, found in index_folder(root).items()
             if not any(part.lower() in _MASK_FOLDERS for part in stem.split("/")[:-1]) for path in found]
    if not paths:
        raise ValueError(f"{folder} holds no image files")
    return Dataset.from_dict({"image": paths}, features=Features({"image": Image(decode=False)}))


def split_output(output: U2NetOutput, first: int) -> tuple[U2NetOutput, U2NetOutput]:
    """The output of a concatenated batch as (its first `first` samples, the rest)."""
    head = U2NetOutput(output.logits[:first], tuple(s[:first] for s in output.side_logits))
    tail = U2NetOutput(output.logits[first:], tuple(s[first:] for s in output.side_logits))
    return head, tail


def distillation_loss(student: U2NetOutput, teacher: U2NetOutput, weights: Sequence[float] | None = None) -> Tensor:
    """Deep supervision with the teacher's maps as soft targets: each student map against its counterpart.

    The fused map is matched to the teacher's fused map and side k to the teacher's side k, with binary cross
    entropy on the student's logits (float32, safe under autocast), summed as the paper sums its seven terms.

    Args:
        student: the student's output (with gradients).
        teacher: the teacher's output on the same pixels (no gradients needed).
        weights: seven weights (fused first); None means all 1.

    Returns:
        A scalar float32 tensor.
    """
    pairs = list(zip(student.all_logits, teacher.all_logits))
    if len(pairs) != 7 or pairs[0][0].shape != pairs[0][1].shape:
        raise ValueError(f"student and teacher maps differ: {tuple(student.logits.shape)} against "
                         f"{tuple(teacher.logits.shape)}")
    with torch.autocast(device_type=student.logits.device.type, enabled=False):
        terms = [F.binary_cross_entropy_with_logits(s.float(), torch.sigmoid(t.float())) for s, t in pairs]
    return weighted_sum(terms, weights)


class DistillationStream:
    """An endless stream of unlabelled batches, each with the teacher's output on it.

    The order of each pass is that of the loader's :class:`~u2net_hub.training.EpochShuffleSampler` for the
    pass's number, so a run resumed at micro-batch ``start`` draws what an uninterrupted run would have.

    Args:
        teacher: the teacher network (switched to eval mode; its weights are never updated).
        dataloader: the (prepared) loader of unlabelled samples.
        sampler: its sampler (``set_epoch`` is called before each pass).
        device: where the teacher runs.
        start: how many micro-batches were consumed before (a resumed run).
        channels_last: feed the teacher channels_last input.
        autocast: a context-manager factory the teacher's forward runs under (None: none).
        skip_first_batches: ``accelerator.skip_first_batches`` (to skip into a pass on resume; needed when
            `start` is not a whole number of passes).
    """

    def __init__(self, teacher: torch.nn.Module, dataloader, sampler, device: torch.device | str, *, start: int = 0,
                 channels_last: bool = True, autocast: Callable[[], Any] | None = None,
                 skip_first_batches: Callable | None = None):
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        if channels_last:
            self.teacher = self.teacher.to(memory_format=torch.channels_last)
        self.dataloader = dataloader
        self.sampler = sampler
        self.device = device
        self.channels_last = channels_last
        self.autocast = autocast
        self.skip_first_batches = skip_first_batches
        per_pass = len(dataloader)
        if per_pass < 1:
            raise ValueError("the distillation data gives no batch")
        if start % per_pass and skip_first_batches is None:
            raise ValueError(f"starting {start % per_pass} batches into a pass needs skip_first_batches")
        self.num_images = len(dataloader.dataset)
        self._batches = self._iterate(start // per_pass, start % per_pass)

    def _iterate(self, epoch: int, skip: int) -> Iterator[dict]:
        while True:
            self.sampler.set_epoch(epoch)
            if hasattr(self.dataloader, "set_epoch"):
                self.dataloader.set_epoch(epoch)
            loader = self.dataloader
            if skip and self.skip_first_batches is not None:
                loader = self.skip_first_batches(self.dataloader, skip)
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
            skip = 0
            yield from loader
            epoch += 1

    def __iter__(self) -> "DistillationStream":
        return self

    def __next__(self) -> dict:
        """The next batch: ``pixel_values`` and ``targets`` (the teacher's :class:`U2NetOutput`)."""
        batch = next(self._batches)
        pixel_values = batch["pixel_values"].to(self.device)
        if self.channels_last:
            pixel_values = to_channels_last(pixel_values)
        with torch.no_grad(), (self.autocast() if self.autocast is not None else contextlib.nullcontext()):
            targets = self.teacher(pixel_values)
        targets = U2NetOutput(targets.logits.float(), tuple(s.float() for s in targets.side_logits))
        return {"pixel_values": pixel_values, "targets": targets}
