"""The Space's settings (from the environment) and its model cache (each model loaded once, thread-safe).

Kept apart from ``app.py`` so the UI file is only the UI; both deploy together in ``space/``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import constants
from PIL import Image

from u2net_hub import DEMO_MODEL, U2Net
from u2net_hub.hub import ModelLoadError

#: The full configuration with the authors' released weights, converted (`u2net convert`) and pushed to the Hub.
FULL_MODEL = os.environ.get("U2NET_FULL_MODEL", "u2net-hub/u2net")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {value!r}") from None


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes", "on")


@dataclass
class Settings:
    """Everything an operator may tune, read from the environment by ``from_env``."""

    #: The model selected at start-up: a local folder or a Hub id (``U2NET_MODEL``).
    default_model: str = DEMO_MODEL
    full_model: str = FULL_MODEL
    #: Photos above this many pixels are scaled down before anything else (``U2NET_SPACE_SHRINK_TO_PIXELS``;
    #: ``U2NET_SPACE_MAX_PIXELS``, its old name, is still read).
    shrink_to_pixels: int = 16_000_000
    #: Requests run at the same time (``U2NET_SPACE_CONCURRENCY``); the rest wait in the queue.
    concurrency: int = 2
    #: Requests that may wait; more are refused with "queue full" (``U2NET_SPACE_QUEUE_SIZE``).
    queue_size: int = 64
    #: Upload limit (``U2NET_SPACE_MAX_FILE_SIZE``), in Gradio's "<n><unit>" form.
    max_file_size: str = "50mb"
    #: Models kept in memory at once (``U2NET_SPACE_MAX_MODELS``), least recently used evicted.
    max_models: int = 3
    #: Whether users may type local folders; off on a public Space (``SPACE_ID`` set) unless asked for.
    allow_local_models: bool = True

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        settings = cls(
            default_model=os.environ.get("U2NET_MODEL", "").strip() or DEMO_MODEL,
            full_model=os.environ.get("U2NET_FULL_MODEL", "").strip() or FULL_MODEL,
            shrink_to_pixels=_env_int("U2NET_SPACE_SHRINK_TO_PIXELS",
                                      _env_int("U2NET_SPACE_MAX_PIXELS", cls.shrink_to_pixels)),
            concurrency=_env_int("U2NET_SPACE_CONCURRENCY", cls.concurrency),
            queue_size=_env_int("U2NET_SPACE_QUEUE_SIZE", cls.queue_size),
            max_file_size=os.environ.get("U2NET_SPACE_MAX_FILE_SIZE", "").strip() or cls.max_file_size,
            max_models=_env_int("U2NET_SPACE_MAX_MODELS", cls.max_models),
            allow_local_models=_env_bool("U2NET_SPACE_ALLOW_LOCAL", not os.environ.get("SPACE_ID")),
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(settings, key, value)
        return settings

    def model_choices(self) -> list[tuple[str, str]]:
        """The dropdown's presets: (label, value); any other Hub id or folder may be typed in."""
        choices = [
            ("bundled demo: tiny, trained on synthetic scenes and cut-outs", DEMO_MODEL),
            (f"full U²-Net, the authors' weights ({self.full_model})", self.full_model),
        ]
        known = {value for _, value in choices}
        if self.default_model not in known:  # U2NET_MODEL named something else: offer it first
            choices.insert(0, (self.default_model, self.default_model))
        return choices


# ---------------------------------------------------------------------- models


_HUB_PROBE: dict[str, float | bool] = {}


def hub_reachable(timeout_s: float = 3.0, remember_s: float = 30.0) -> bool:
    """Whether the Hub endpoint answers a TCP connection (False at once under HF_HUB_OFFLINE); remembered briefly."""
    if constants.HF_HUB_OFFLINE:
        return False
    now = time.monotonic()
    if now - float(_HUB_PROBE.get("at", -1e9)) < remember_s:
        return bool(_HUB_PROBE["ok"])
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout_s).close()
        ok = True
    except OSError:
        ok = False
    _HUB_PROBE.update(at=now, ok=ok)
    return ok


@dataclass
class LoadedModel:
    name: str
    model: U2Net
    seconds: float

    @property
    def description(self) -> str:
        device = next(self.model.parameters()).device
        return f"{self.model.variant} · {self.model.num_parameters / 1e6:.2f} M parameters · {device.type}"


class ModelCache:
    """Loads each model once, keeps the most recently used few; safe under concurrent requests.

    Two requests for the same new model wait on one load instead of loading
    it twice; requests for a model already loaded never wait on a load.
    Failures are not remembered, so a model that failed offline loads once
    the network is back.
    """

    def __init__(self, max_models: int = 3, allow_local: bool = True, always_allowed: tuple[str, ...] = ()):
        self.max_models = max(1, max_models)
        self.allow_local = allow_local
        self.always_allowed = {self._normal_path(p) for p in always_allowed if p}
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # how many times a model was really read (for tests and the status line)

    @staticmethod
    def _normal_path(name: str) -> str:
        return str(Path(name).expanduser().resolve())

    def resolve(self, name: Any) -> str:
        """A cache key: the absolute path of a local folder, or the Hub id as typed."""
        if not isinstance(name, str) or not name.strip():
            raise ModelLoadError("choose a model: a preset, a Hub id like 'user/model' or a local folder")
        name = name.strip()
        path = Path(name).expanduser()
        looks_local = name.startswith((".", "/", "~")) or "\\" in name or path.is_dir()
        if not looks_local:
            return name
        key = self._normal_path(name)
        if not self.allow_local and key not in self.always_allowed:
            raise ModelLoadError(f"loading local folders is disabled here; give a Hub id instead of {name!r}")
        if not Path(key).is_dir():
            raise ModelLoadError(f"{name!r} is not a folder on this machine")
        return key

    def get(self, name: Any) -> LoadedModel:
        key = self.resolve(name)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                return loaded
            key_lock = self._loading.setdefault(key, threading.Lock())
        try:
            with key_lock:
                with self._lock:
                    loaded = self._models.get(key)
                if loaded is None:
                    loaded = self._load(key)
                    with self._lock:
                        self._models[key] = loaded
                        self.loads += 1
                        while len(self._models) > self.max_models:
                            self._models.popitem(last=False)
        finally:
            with self._lock:  # no lock left behind per typed-in name (a public Space sees many)
                self._loading.pop(key, None)
        return loaded

    def cached(self) -> list[str]:
        with self._lock:
            return list(self._models)

    @staticmethod
    def _load(key: str) -> LoadedModel:
        started = time.perf_counter()
        # Without a network, huggingface_hub retries for ~25 s before giving up; a quick probe
        # lets an offline machine fail at once (or use its local cache) instead.
        offline = not Path(key).is_dir() and not hub_reachable()
        model = U2Net.load(key, local_files_only=offline)  # every failure becomes one ModelLoadError
        if torch.cuda.is_available():
            model = model.to("cuda")
        try:
            # Builds the fast (BatchNorm-folded) copy now, under the load lock, not in the first request.
            model.predict(Image.new("RGB", (64, 64), (128, 128, 128)), sides=True)
        except Exception as error:
            raise ModelLoadError(f"{key!r} loaded but cannot run: {error}") from None
        return LoadedModel(name=key, model=model, seconds=time.perf_counter() - started)


__all__ = ["FULL_MODEL", "LoadedModel", "ModelCache", "ModelLoadError", "Settings", "hub_reachable"]
