"""The Space's temporary folders: removed when the server gets SIGTERM, and left-overs of killed servers pruned
at the next start. A real `python app.py` server, a real request through gradio_client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from u2net_hub import U2Net

SPACE_DIR = Path(__file__).resolve().parents[1] / "space"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ours(tmp: Path) -> set[str]:
    return {p.name for p in tmp.glob("u2net-space-*")}


def test_sigterm_removes_the_temp_folders_and_a_start_prunes_those_of_killed_servers(tmp_path):
    from gradio_client import Client, handle_file

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp / "u2net-space-killed").mkdir()
    (tmp / "u2net-space-killed" / ".owner-pid").write_text(str(dead.pid))
    (tmp / "u2net-space-killed" / "mask.png").write_bytes(b"x" * 1000)
    (tmp / "u2net-space-old").mkdir()  # no owner file (an older version), two hours old
    os.utime(tmp / "u2net-space-old", (time.time() - 7200, time.time() - 7200))
    (tmp / "u2net-space-running").mkdir()  # a live server's (this test process stands in for it)
    (tmp / "u2net-space-running" / ".owner-pid").write_text(str(os.getpid()))

    torch.manual_seed(0)
    U2Net(variant="tiny", input_size=64).save_pretrained(tmp_path / "model")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photo)
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRADIO_")}
    env.update(TMPDIR=str(tmp), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
               U2NET_MODEL=str(tmp_path / "model"))
    log = open(tmp_path / "space.log", "w")
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=SPACE_DIR, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "space.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5):
                    break
            except OSError:
                time.sleep(0.5)
        assert "u2net-space-killed" not in _ours(tmp) and "u2net-space-old" not in _ours(tmp)
        assert "u2net-space-running" in _ours(tmp)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        result = client.predict(handle_file(str(photo)), str(tmp_path / "model"), 0.0, False, "transparent",
                                "#2e86de", api_name="/segment")
        assert Path(result[1]).is_file()
        written = [p for p in tmp.glob("u2net-space-*/**/*") if p.is_file() and p.suffix in (".png", ".webp")]
        assert written, "the request wrote no files into the Space's temp folders"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == -signal.SIGTERM
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    assert _ours(tmp) == {"u2net-space-running"}, (tmp_path / "space.log").read_text()[-3000:]
    # Gradio's own copies of uploads and results were in one of our folders too: no file is left anywhere
    # (Gradio makes an empty tmp/gradio/vibe_edit_history folder when it is imported).
    left = [p for p in tmp.rglob("*") if p.is_file() and "u2net-space-running" not in p.parts]
    assert not left, left[:5]
