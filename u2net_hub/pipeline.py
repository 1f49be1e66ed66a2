"""Many images through the network with decoding and encoding overlapped: the engine behind predict().

On a folder of photos the network is only part of the cost: decoding full-size
JPEGs, resizing, bringing the maps back to full size and PNG encoding are as
much again. PIL and zlib release the GIL for all of these, so a small thread
pool does them while the network runs on the main thread: the next batch is
decoded and pre-processed, the previous one post-processed and written. On a
CPU with several threads the batch itself is split into lanes, single-threaded
forward passes that run at once (:func:`cpu_lanes`), and PNGs are written with
one fixed filter (:func:`write_png`).

Memory stays flat on any number of images: at most ``batch_size`` images are
decoded ahead, one batch is in the network and at most ``batch_size`` results
wait to be handed out, so no more than ``3 * batch_size`` images are alive at
once (:data:`IN_FLIGHT_BATCHES`). Results come out in input order; a failure on
one image (unreadable, or its ``finish`` raising) is handed out in its place
and the others go on.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from .acceleration import freed_memory_reused, optimized_for_inference, usable_cores

#: Images alive at once, in batches: one decoded ahead, one in the network, one waiting to be handed out.
IN_FLIGHT_BATCHES = 3


@dataclass
class Ready:
    """One image prepared for the network: its (3, S, S) float32 input and whatever ``finish`` needs."""

    array: np.ndarray
    payload: Any = None


#: Decoding/encoding threads beside a network on the CPU (it needs the cores too) and beside one on a GPU.
MAX_WORKERS_CPU, MAX_WORKERS_GPU = 4, 32


def default_workers(device: torch.device | str | None = None) -> int:
    """Threads for decoding and encoding: one per core the process may use, at least one.

    Why the two caps: beside a network on the CPU more threads only take cores from it; beside a GPU the
    cores have nothing else to do, and decoding full-size JPEGs is then the limit (on a 16-core H200 machine
    four threads fed the tiny model 45 photos/s, 2% of what the network alone does).
    """
    cores = usable_cores()
    on_gpu = device is not None and torch.device(device).type != "cpu"
    return max(1, min(MAX_WORKERS_GPU if on_gpu else MAX_WORKERS_CPU, cores))


def _network(model: torch.nn.Module, fast: bool, compile: bool):
    """The module to run (the cached fast copy, or the exact model) and its device."""
    device = next(model.parameters()).device
    if compile and not fast:
        raise ValueError("compile=True compiles the fast path; it cannot be combined with fast=False")
    if fast:
        return optimized_for_inference(model, compile=compile), device
    return model, device


def cpu_lanes(device: torch.device, batch_size: int, threads: int, compile: bool = False) -> int:
    """How many forward passes to run at once, each on part of the batch with ``threads // lanes`` threads.

    Why: U²-Net is ~120 short parallel regions per pass. While the pool
    threads decode and encode, an OpenMP team of two on two cores keeps
    waiting at each region's barrier for whichever thread the pool displaced,
    and a pass costs up to twice its CPU time; two single-threaded passes on
    half a batch each never wait for each other (and need ~20% less CPU than
    one two-threaded pass even on an idle machine). One lane on GPUs, for
    ``torch.compile`` and where torch runs one thread; at most one lane per
    two images, so each pass keeps a batch.
    """
    if device.type != "cpu" or compile or threads < 2 or batch_size < 2:
        return 1
    return max(1, min(threads, batch_size // 2, 8))


def _lane_threads(count: int) -> None:
    """Pool initializer: this thread's torch ops use `count` threads (OpenMP's setting is per thread)."""
    torch.get_num_threads()  # torch's per-thread set-up first, so it does not undo the line below
    torch.set_num_threads(count)


def _forward(network: torch.nn.Module, device: torch.device, inputs: np.ndarray,
             sides: bool, flip_average: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """One forward pass: the fused probabilities (B, S, S) and the side ones (B, 6, S, S) or None.

    ``flip_average``: the batch and its mirror image go through the network together and each
    map is the sigmoid of the mean of the two logits (the mirror's flipped back); the mean of
    logits, not of probabilities, keeps the map as sharp as one pass (docs/demo-model.md).
    """
    x = torch.from_numpy(inputs).to(device)
    count = x.shape[0]

    def merged(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if flip_average:
            logits = (logits[:count] + logits[count:].flip(-1)) / 2
        return torch.sigmoid(logits)

    with torch.inference_mode():
        output = network(torch.cat([x, x.flip(-1)]) if flip_average else x)
        fused = merged(output.logits[:, 0]).cpu().numpy()
        side_maps = None
        if sides:
            stacked = torch.stack([s[:, 0] for s in output.side_logits], dim=1)
            side_maps = merged(stacked).cpu().numpy()
    return fused, side_maps


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
    lanes: int | None = None,
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
        lanes: forward passes run at once, each on its share of the batch (default :func:`cpu_lanes`).

    Returns:
        An iterator of (index, result or the exception raised for that item). A
        failing forward pass gives every item of its batch that exception.
    """
    workers = default_workers(next(model.parameters()).device) if workers is None else int(workers)
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
    lane_pool = None
    threads = torch.get_num_threads()

    flip_average = model.preprocessing.flip_average

    def forward(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if lane_pool is None or len(inputs) < 2:
            return _forward(network, device, inputs, sides, flip_average)
        parts = [part for part in np.array_split(inputs, lane_count) if len(part)]
        outputs = [future.result() for future in [lane_pool.submit(_forward, network, device, part, sides,
                                                                   flip_average)
                                                  for part in parts]]
        fused = np.concatenate([f for f, _ in outputs])
        return fused, (np.concatenate([s for _, s in outputs]) if sides else None)

    try:
        with freed_memory_reused(model):
            top_up()
            network, device = _network(model, fast, compile)
            lane_count = cpu_lanes(device, batch_size, threads, compile) if lanes is None else int(lanes)
            if lane_count > 1:
                per_lane = max(1, threads // lane_count)
                lane_pool = ThreadPoolExecutor(max_workers=lane_count, thread_name_prefix="u2net-lane",
                                               initializer=_lane_threads, initargs=(per_lane,))
            while loading:
                entries: list[tuple[int, Any]] = []  # this batch in input order: Ready, or the item's error
                while loading and sum(not isinstance(e, Exception) for _, e in entries) < batch_size:
                    index, future = loading.popleft()
                    entries.append((index, outcome(future)))
                top_up()  # the next batch decodes while this one runs
                batch = [(index, ready) for index, ready in entries if not isinstance(ready, Exception)]
                finished: dict[int, Any] = {}
                if batch:
                    try:
                        fused, side_maps = forward(np.stack([ready.array for _, ready in batch]))
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
        if lane_pool is not None:
            lane_pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)  # the lanes' setting is process-wide for threads started later


# ------------------------------------------------------------------ writing


#: File types ``u2net predict --output-format`` writes, and their file name suffixes.
OUTPUT_SUFFIXES = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
#: Lossy quality for WebP and JPEG outputs (Pillow's scale, 1-100).
DEFAULT_QUALITY = 90
_PNG_COLOUR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}
_PNG_BAND_BYTES = 1 << 22  # rows filtered and compressed at a time: a 24 MP cutout costs no full-size copy


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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def write_png(image: Image.Image, target: Any) -> None:
    """Write an 8-bit "L", "RGB" or "RGBA" image as PNG with one fixed filter ("Up") and zlib level 1.

    Why: Pillow tries all five PNG filters on every row, which costs more than
    the compression itself at level 1. Masks are upsampled from the network's
    size, so a row is nearly its neighbour above: "Up" with zlib's run-length
    strategy is ~3x faster than Pillow's fast settings and the files are
    smaller; for RGB(A) cutouts "Up" at level 1 is ~1.8x faster at about the
    same size. The pixels are the same (PNG is lossless). zlib and numpy
    release the GIL, so pool threads encode in parallel.

    Args:
        image: a PIL image in mode "L", "RGB" or "RGBA".
        target: a path or a binary file object.
    """
    if image.mode not in _PNG_COLOUR_TYPES:
        raise ValueError(f"write_png writes L, RGB or RGBA images, got mode {image.mode!r}")
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    strategy = zlib.Z_RLE if image.mode == "L" else zlib.Z_DEFAULT_STRATEGY
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, strategy)
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[image.mode], 0, 0, 0)
    band = max(1, _PNG_BAND_BYTES // max(1, rows.shape[1]))
    handle = open(target, "wb") if isinstance(target, (str, os.PathLike)) else target
    try:
        handle.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header))
        for top in range(0, height, band):
            block = rows[top : top + band]
            filtered = np.empty((len(block), rows.shape[1] + 1), dtype=np.uint8)
            filtered[:, 0] = 2  # "Up": each byte minus the one above it (the first row has none above)
            if top == 0:
                filtered[0, 1:] = block[0]
                np.subtract(block[1:], block[:-1], out=filtered[1:, 1:])
            else:
                np.subtract(block, rows[top - 1 : top - 1 + len(block)], out=filtered[:, 1:])
            data = compressor.compress(filtered)
            if data:
                handle.write(_png_chunk(b"IDAT", data))
        handle.write(_png_chunk(b"IDAT", compressor.flush()) + _png_chunk(b"IEND", b""))
    finally:
        if handle is not target:
            handle.close()


def save_image(image: Image.Image, target: Any, output_format: str = "png", compress_level: int | None = None,
               quality: int = DEFAULT_QUALITY) -> None:
    """Write an output image: PNG (lossless; :func:`write_png` unless a zlib level is asked), WebP or JPEG.

    Why one place: every output of ``u2net predict`` goes through here, so the
    fast PNG settings, ``--compress-level`` and the lossy formats mean the same
    for masks, cutouts and side outputs.

    Args:
        image: the PIL image ("L" mask, "RGB" or "RGBA" cutout).
        target: a path or a binary file object.
        output_format: "png", "webp" or "jpeg" (lossy, ``quality``; JPEG has no alpha and refuses "RGBA").
        compress_level: PNG only: zlib level 0-9 through Pillow (6 = Pillow's default); None: the fast writer.
        quality: WebP and JPEG quality, 1-100.
    """
    if output_format == "png":
        if compress_level is None and image.mode in _PNG_COLOUR_TYPES:
            write_png(image, target)
        else:
            image.save(target, format="PNG", **png_options(image.mode, compress_level))
    elif output_format == "webp":
        image.save(target, format="WEBP", quality=quality, method=0)
    elif output_format == "jpeg":
        if image.mode not in ("L", "RGB"):
            raise ValueError(f"JPEG has no alpha channel: cannot write a {image.mode} image as JPEG")
        image.save(target, format="JPEG", quality=quality)
    else:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_SUFFIXES)}, got {output_format!r}")


__all__ = [
    "DEFAULT_QUALITY", "IN_FLIGHT_BATCHES", "OUTPUT_SUFFIXES", "Ready", "cpu_lanes", "default_workers",
    "png_options", "run", "save_image", "write_png",
]
