"""Writes that survive a kill: a file appears whole or not at all, and stays after a power cut.

Used by the predictions written at scale (`datasets_io`) and by training checkpoints (`training`).
Imports nothing of ours.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename, a new file) to disk; a no-op where folders cannot be opened (Windows).

    Args:
        folder: the folder whose listing must survive a power cut.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_name(path: str | os.PathLike) -> Path:
    """The hidden name beside `path` that :func:`atomic_file` writes to first (``.<name>.tmp-<pid>``).

    Args:
        path: the file to be written.

    Returns:
        The temporary path, unique per process so that two writers never share one.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary beside `path`; on a clean exit fsync it, rename it over `path` and fsync the folder.

    Readers see the old file or the whole new one, never a part. On an error the temporary is removed
    and `path` is left as it was.

    Args:
        path: the file to write (its folder is created).
        mode: ``"wb"`` or ``"w"``.
        encoding: the text encoding in mode ``"w"`` (UTF-8 when not given).

    Yields:
        The open handle to write to.
    """
    path = Path(path)
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', not {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` (bytes, or text as UTF-8) to `path` through :func:`atomic_file`.

    Args:
        path: the file to write.
        data: its whole content.
    """
    with atomic_file(path, "w" if isinstance(data, str) else "wb") as handle:
        handle.write(data)
