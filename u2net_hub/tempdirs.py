"""Temporary folders that do not outlive their process: removed at exit and on SIGTERM, and pruned at the next
start when a process was killed before it could clean up (SIGKILL, a crash, a power cut).

The Space writes every result to files (a few MB per request), so a server stopped by its host with
SIGTERM would otherwise leave hundreds of MB in /tmp after a busy day.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["owned_temp_dir", "prune_stale_temp_dirs", "remove_owned_temp_dirs", "clean_up_on_signals",
           "OWNER_FILE"]

#: Inside each folder: the id of the process that owns it.
OWNER_FILE = ".owner-pid"

_owned: list[Path] = []
_lock = threading.Lock()
_atexit_registered = False


def owned_temp_dir(prefix: str) -> Path:
    """A new folder in the system temp folder, removed when this process exits (or on SIGTERM once
    :func:`clean_up_on_signals` was called); it records its owner so a later start can prune it.

    Args:
        prefix: the folder name's start, e.g. ``u2net-space-``; :func:`prune_stale_temp_dirs` takes the same.
    Returns:
        The folder.
    """
    global _atexit_registered
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / OWNER_FILE).write_text(str(os.getpid()), encoding="utf-8")
    with _lock:
        _owned.append(path)
        if not _atexit_registered:
            atexit.register(remove_owned_temp_dirs)
            _atexit_registered = True
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def prune_stale_temp_dirs(prefix: str, max_age_s: float = 3600.0) -> list[Path]:
    """Remove the temp folders named ``prefix*`` whose owner process is gone.

    Folders of a live process are kept (another server may be running); folders without an owner
    file (written by older versions) are removed once they are older than ``max_age_s``.

    Returns:
        The folders removed.
    """
    removed = []
    now = time.time()
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            if not path.is_dir() or path.is_symlink():
                continue
            owner = path / OWNER_FILE
            if owner.is_file():
                try:
                    pid = int(owner.read_text(encoding="utf-8").strip())
                except ValueError:
                    pid = -1
                if pid == os.getpid() or (pid > 0 and _alive(pid)):
                    continue
            elif now - path.stat().st_mtime < max_age_s:
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def remove_owned_temp_dirs() -> None:
    """Remove every folder made by :func:`owned_temp_dir` in this process."""
    with _lock:
        paths, _owned[:] = list(_owned), []
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def clean_up_on_signals(signals: tuple[int, ...] | None = None) -> None:
    """On these signals, remove the owned folders, then die of the signal as before.

    Why: Python runs no atexit handler when a signal ends the process, and hosts stop servers with
    SIGTERM. Call from the main thread.
    """

    def handler(signum, frame):
        remove_owned_temp_dirs()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    if signals is None:
        signals = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
    for signum in signals:
        signal.signal(signum, handler)
