"""Many images through the network with decoding and encoding overlapped: the engine behind predict().

On a folder of photos the network is only part of the cost: decoding full-size
JPEGs, resizing, bringing the maps back to full size and PNG encoding are as
much again. PIL and zlib release the GIL for all of these, so a small thread
pool does them while the network runs on the main thread: the next batch is
decoded and pre-processed, the previous one post-processed and written.

Memory stays flat on any number of images: at most ``batch_size`` images are
decoded ahead, one batch is in the network and at most ``batch_size`` results
wait to be handed out, so no more than ``3 * batch_size`` images are alive at
once (:data:`IN_FLIGHT_BATCHES`). Results come out in input order; a failure on
one image (unreadable, or its ``finish`` raising) is handed out in its place
and the others go on.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from .acceleration import freed_memory_reused, optimized_for_inference

#: Images alive at once, in batches: one decoded ahead, one in the network, one waiting to be handed out.
IN_FLIGHT_BATCHES = 3


@dataclass
class Ready:
    """One image prepared for the network: its (3, S, S) float32 input and whatever ``finish`` needs."""

    array: np.ndarray
    payload: Any = None


def default_workers() -> int:
    """Threads for decoding and encoding: one per core the process may use, at least one, at most four."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _network(model: torch.nn.Module, fast: bool, compile: bool):
    """The module to run (the cached fast copy, or the exact model) and its device."""
    device = next(model.parameters()).device
    if compile and not fast:
        raise ValueError("compile=True compiles the fast path; it cannot be combined with fast=False")
    if fast:
        return optimized_for_inference(model, compile=compile), device
    return model, device


def run(
    model: torch.nn.Module,
    items: Iterable[Any],
    prepare: Callable[[Any], Ready],
    finish: Callable[[Any, np.ndarray, np.ndarray | None], Any],
    *,
    batch_size: int = 8,
    fast: bool = True,
    compile: bool = False,
    sides: bool = True,
    workers: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, result)`` for every item, in input order, with the work overlapped.

    Why: the caller says what one image costs (``prepare``: item -> :class:`Ready`;
    ``finish``: (payload, fused map, side maps or None) -> result, maps at the
    network's size) and gets both run on a thread pool while the network runs
    batch after batch on the calling thread.

    Args:
        model: a U2Net (the fast copy is built while the first images decode).
        items: anything ``prepare`` accepts; consumed lazily.
        prepare, finish: run on the pool; an exception in either becomes that item's result.
        batch_size: images per forward pass.
        fast, compile: as in :func:`u2net_hub.inference.predict`.
        sides: also compute the six side maps (else ``finish`` gets None).
        workers: pool threads (default :func:`default_workers`); 0 runs everything on the calling thread.

    Returns:
        An iterator of (index, result or the exception raised for that item). A
        failing forward pass gives every item of its batch that exception.
    """
    workers = default_workers() if workers is None else int(workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="u2net-io") if workers > 0 else None

    def submit(function: Callable, *args: Any) -> Future:
        if pool is not None:
            return pool.submit(function, *args)
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except Exception as error:  # noqa: BLE001 - handed to the caller as this item's result
            future.set_exception(error)
        return future

    source = enumerate(items)
    loading: deque[tuple[int, Future]] = deque()
    done: deque[tuple[int, Future | Any]] = deque()  # results waiting to be handed out, in order
    exhausted = False

    def top_up() -> None:
        nonlocal exhausted
        while not exhausted and len(loading) < batch_size:
            try:
                index, item = next(source)
            except StopIteration:
                exhausted = True
                return
            loading.append((index, submit(prepare, item)))

    def outcome(future: Future) -> Any:
        try:
            return future.result()
        except Exception as error:  # noqa: BLE001 - the item's own failure, reported in its place
            return error

    def hand_out(limit: int) -> Iterator[tuple[int, Any]]:
        """Yield finished results from the front; block on the oldest while more than `limit` wait."""
        while done:
            index, value = done[0]
            if isinstance(value, Future):
                if len(done) <= limit and not value.done():
                    return
                value = outcome(value)
            done.popleft()
            yield index, value

    network = device = None
    try:
        with freed_memory_reused(model):
            top_up()
            network, device = _network(model, fast, compile)
            while loading:
                entries: list[tuple[int, Any]] = []  # this batch in input order: Ready, or the item's error
                while loading and sum(not isinstance(e, Exception) for _, e in entries) < batch_size:
                    index, future = loading.popleft()
                    entries.append((index, outcome(future)))
                top_up()  # the next batch decodes while this one runs
                batch = [(index, ready) for index, ready in entries if not isinstance(ready, Exception)]
                finished: dict[int, Any] = {}
                if batch:
                    x = torch.from_numpy(np.stack([ready.array for _, ready in batch])).to(device)
                    try:
                        with torch.inference_mode():
                            output = network(x)
                            fused = torch.sigmoid(output.logits[:, 0].float()).cpu().numpy()
                            side_maps = None
                            if sides:
                                stacked = torch.stack([s[:, 0] for s in output.side_logits], dim=1)
                                side_maps = torch.sigmoid(stacked.float()).cpu().numpy()
                        del output, x
                    except (RuntimeError, ValueError) as error:
                        finished = {index: error for index, _ in batch}
                    else:
                        for i, (index, ready) in enumerate(batch):
                            own_sides = None if side_maps is None else side_maps[i].copy()
                            finished[index] = submit(finish, ready.payload, fused[i].copy(), own_sides)
                done.extend((index, finished.get(index, value)) for index, value in entries)
                del batch, entries, finished
                yield from hand_out(limit=batch_size)
            yield from hand_out(limit=0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ writing


def png_options(mode: str, compress_level: int | None = None) -> dict[str, Any]:
    """Pillow PNG save options: the fast settings by default, or zlib level 0-9 when asked.

    Why: PNG encoding is most of a folder run (Pillow's default level 6 takes
    ~50 ms for a 6 MP mask and ~0.8 s for a 6 MP RGBA cutout on a Xeon core).
    By default masks ("L") use zlib's run-length strategy (~3x faster, files
    ~10% larger) and colour images level 1 (~4x faster, ~14% larger);
    ``compress_level=6`` gives Pillow's default (smallest, slowest).
    """
    if compress_level is not None:
        if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
            raise ValueError(f"compress_level must be an integer from 0 to 9, got {compress_level!r}")
        return {"compress_level": compress_level}
    if mode in ("L", "1", "P"):
        return {"compress_level": 1, "compress_type": 3}  # zlib Z_RLE
    return {"compress_level": 1}


__all__ = ["IN_FLIGHT_BATCHES", "Ready", "default_workers", "png_options", "run"]
