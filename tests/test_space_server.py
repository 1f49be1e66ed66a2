"""The Space as users and API clients meet it: a real server in a subprocess, driven with gradio_client.

The server is started from inside ``space/`` (``python app.py``, the way a
Space runs it) on a free port, offline, with a real tiny checkpoint folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


REPO_ROOT = Path(__file__).resolve().parents[1]
SPACE_DIR = REPO_ROOT / "space"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SpaceServer:
    """`python app.py` in a subprocess; ``stop()`` always ends it (and its log is kept for failures)."""

    def __init__(self, model: str, workdir: Path, cwd: Path = SPACE_DIR, script: str = "app.py",
                 command: list[str] | None = None, **env: str):
        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = workdir / f"space-{self.port}.log"
        environment = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_EXAMPLES_CACHE": str(workdir / "examples-cache"),
            "GRADIO_TEMP_DIR": str(workdir / "gradio-tmp"),
            "U2NET_MODEL": model,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self._log = open(self.log_path, "w")
        # A session of its own: `gradio app.py` runs the app in a child process, and stop() ends both.
        self.process = subprocess.Popen(
            command or [sys.executable, script], cwd=cwd, env=environment, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Space exited with code {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the Space did not answer on {self.url} within {timeout_s:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)  # the server and any child it started
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_folder):
    workdir = tmp_path_factory.mktemp("space-server")
    model = str(tiny_folder)
    space = SpaceServer(model, workdir)
    try:
        space.wait_ready()
        yield space
    finally:
        space.stop()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(83, 131, 3), dtype=np.uint8)
    pixels[20:60, 40:90] = (40, 160, 230)
    path = tmp_path_factory.mktemp("photos") / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    return path


def segment(client, image, model, threshold=0.0, normalize=False, background="transparent", colour="#2e86de",
            alpha_matting=False):
    from gradio_client import handle_file

    return client.predict(
        handle_file(str(image)), model, threshold, normalize, background, colour, alpha_matting, api_name="/segment"
    )


def test_api_lists_the_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/segment", "/load_model"} <= set(endpoints)
    parameters = [p["parameter_name"] for p in endpoints["/segment"]["parameters"]]
    assert parameters == ["image", "model_name", "threshold", "normalize", "background", "colour", "alpha_matting"]


def test_segment_over_http(client, server, photo):
    (before, after), mask_path, cutout_path, gallery, info = segment(client, photo, server.model)

    mask = Image.open(mask_path)
    assert mask.size == Image.open(photo).size == (131, 83)
    assert mask.mode == "L"
    cut = Image.open(cutout_path)
    assert cut.format == "PNG" and cut.mode == "RGBA" and cut.size == (131, 83)
    np.testing.assert_array_equal(np.asarray(cut)[..., 3], np.asarray(mask))
    assert Image.open(before).size == Image.open(after).size == (131, 83)

    assert len(gallery) == 7
    captions = [item["caption"] for item in gallery]
    assert all(captions) and len(set(captions)) == 7
    assert captions[0].startswith("fused") and all(c.startswith(f"side{i}") for i, c in enumerate(captions[1:], 1))
    for item in gallery:
        assert Image.open(item["image"]).size[0] > 0
    assert "131 × 83 px" in info and "ms" in info


def test_alpha_matting_over_http(client, server, photo):
    """The API's alpha_matting parameter gives the library's matted cutout (alpha and object colour)."""
    from gradio_client.exceptions import AppError

    from u2net_hub import U2Net

    _, mask_path, cutout_path, _, info = segment(client, photo, server.model, alpha_matting=True)
    cut = np.asarray(Image.open(cutout_path))
    prediction = U2Net.from_pretrained(server.model).predict(Image.open(photo))
    expected = np.asarray(prediction.cutout(alpha_matting=True))
    # The server runs the fast path like this process does; allow the bf16 rounding of a different batch.
    assert cut.shape == expected.shape == (83, 131, 4)
    assert np.abs(cut[..., 3].astype(int) - expected[..., 3]).mean() < 2.0
    np.testing.assert_array_equal(cut[..., 3], np.asarray(Image.open(mask_path)))
    assert "alpha matting on" in info
    with pytest.raises(AppError, match="threshold to 0"):
        segment(client, photo, server.model, threshold=0.5, alpha_matting=True)


def test_corrupt_upload_is_an_error_and_the_next_request_works(client, server, photo, tmp_path):
    from gradio_client.exceptions import AppError

    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    text = tmp_path / "readme.txt"
    text.write_text("hello, I am not a photo")
    model = server.model
    for bad in (corrupt, text):
        with pytest.raises(AppError) as caught:
            segment(client, bad, model)
        message = str(caught.value)
        assert "not an image" in message and "Traceback" not in message
    assert Image.open(segment(client, photo, model)[1]).size == (131, 83)
    assert server.process.poll() is None


@pytest.mark.filterwarnings("ignore")
def test_unloadable_model_is_reported_and_others_keep_working(client, server, photo):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Model not loaded"):
        segment(client, photo, "someone/not-on-this-offline-machine")
    status = client.predict("someone/not-on-this-offline-machine", api_name="/load_model")
    assert status.startswith("**Model not loaded**")
    assert client.predict(server.model, api_name="/load_model").startswith("**Loaded**")
    assert Image.open(segment(client, photo, server.model)[1]).size == (131, 83)


def test_concurrent_requests_all_succeed(client, server, photo):
    model = server.model
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: segment(client, photo, model, threshold=0.5), range(4)))
    for result in results:
        assert set(np.unique(np.asarray(Image.open(result[1])))) <= {0, 255}


def test_gradio_reload_mode_serves_the_module_level_demo(tmp_path, photo, tiny_folder):
    """`gradio app.py` (the reload-on-edit mode) finds the module-level `demo` and serves the same API."""
    from gradio_client import Client, handle_file

    model = str(tiny_folder)
    gradio = Path(sys.executable).with_name("gradio")
    space = SpaceServer(model, tmp_path, command=[str(gradio), "app.py"])
    try:
        space.wait_ready()
        assert "reload" in space.log().lower()  # it really is the reloading server
        client = Client(space.url, verbose=False)
        _, mask, _, gallery, info = client.predict(
            handle_file(str(photo)), model, 0.0, False, "transparent", "#2e86de", api_name="/segment"
        )
        with Image.open(mask) as written:
            assert written.size == (131, 83)
        assert len(gallery) == 7 and "131 × 83 px" in info
    finally:
        space.stop()
