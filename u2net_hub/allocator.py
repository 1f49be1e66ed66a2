"""glibc's allocator around forward passes: keep freed activation buffers instead of faulting them back in.

Its own module, with no torch import, so the `u2net` command line can set it
up before it knows which command (and which heavy packages) it will run.
:mod:`u2net_hub.acceleration` re-exports both functions under their old names.
"""

from __future__ import annotations

import ctypes
import platform
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # glibc's mallopt parameter numbers
_INT_MAX = 2**31 - 1


@lru_cache(maxsize=None)
def reuse_freed_memory(every_size: bool = False) -> bool:
    """Let glibc keep freed activation buffers for the next forward pass instead of handing them back.

    By default glibc returns every block over its mmap threshold to the kernel on
    free, so each forward pass of U²-Net page-faults its activations back in, and a
    training step re-faults all of its own (what that costs is measured in the
    docs' Performance page). With the thresholds raised, blocks up to 32 MB (every
    bf16 activation of one 320x320 image) always come from the heap, and larger ones do when a freed hole fits,
    which after a few passes they usually do; ``every_size=True`` (training)
    serves every size from the heap. Peak memory barely moves, but the resident
    set no longer shrinks between steps. Process-wide, so the CLI, the Space and train.py call it at
    start-up; library users may too.

    Args:
        every_size: also serve blocks of every size from the heap (``M_MMAP_MAX=0``; what training wants).

    Returns:
        True when glibc accepted the settings; False (and nothing done) where the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        done = bool(mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
        if every_size:
            done = done and bool(mallopt(_M_MMAP_MAX, 0))
        return done
    except (OSError, AttributeError):
        return False


_GLIBC_DEFAULT_MMAP_THRESHOLD = 128 * 1024  # glibc's M_MMAP_THRESHOLD before any mallopt call
_scope_lock = threading.Lock()
_scope_depth = 0


def _mallopt():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


@contextmanager
def freed_memory_reused(model: Any = None) -> Iterator[bool]:
    """Within the block, glibc keeps freed activation buffers as `reuse_freed_memory` does; after it, not.

    Why: a library user who never calls `reuse_freed_memory()` would otherwise
    lose about a fifth of every CPU forward pass to page faults, while a
    process-wide setting is not ours to make behind their back. On exit the
    thresholds go back to glibc's defaults (128 KiB; the dynamic threshold that
    glibc starts with stays off) and the heap is trimmed, so the resident set
    shrinks again. Nested and concurrent blocks restore when the last one ends.
    A process that called `reuse_freed_memory()` (the CLI, the Space, training)
    keeps its setting; so does a model on a GPU. Yields whether the setting is active.
    """
    global _scope_depth
    on_cpu = model is None or next(model.parameters()).device.type == "cpu"
    if reuse_freed_memory.cache_info().currsize or not on_cpu:
        yield bool(reuse_freed_memory.cache_info().currsize)
        return
    libc = _mallopt()
    if libc is None:
        yield False
        return
    with _scope_lock:
        if _scope_depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
            libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
        _scope_depth += 1
    try:
        yield True
    finally:
        with _scope_lock:
            _scope_depth -= 1
            if _scope_depth == 0 and not reuse_freed_memory.cache_info().currsize:
                libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_MMAP_THRESHOLD)  # the same 128 KiB
                libc.malloc_trim(0)


__all__ = ["freed_memory_reused", "reuse_freed_memory"]
