"""The Space in a real browser: Debian's headless Chromium driven by Playwright.

Opens the page, uploads a photo, runs it, and checks that the slider, the mask,
the download and the seven captioned heat maps actually rendered (decoded
images with a size, not just DOM nodes). A screenshot is always written to a
temporary folder; with ``U2NET_UPDATE_SCREENSHOT=1`` it also replaces
``docs/space-screenshot.png``, taken with the bundled demo model (or the model
folder in ``U2NET_SCREENSHOT_MODEL``) so the README shows real masks. Playwright never downloads a browser here: a missing
Chromium is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_space_server import REPO_ROOT, SpaceServer

CHROMIUM = os.environ.get("U2NET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = REPO_ROOT / "docs" / "space-screenshot.png"
UPDATE_SCREENSHOT = os.environ.get("U2NET_UPDATE_SCREENSHOT", "").lower() in ("1", "true", "yes")
TIMEOUT_MS = 120_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's package (`make system-deps`, i.e. "
            "`apt-get install chromium`) or point U2NET_CHROMIUM at a Chromium binary"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_folder):
    """`make demo`'s command (space/app.py from the repository root), with the demo model for screenshots."""
    workdir = tmp_path_factory.mktemp("space-browser")
    if UPDATE_SCREENSHOT:
        from u2net_hub import DEMO_MODEL

        model = os.environ.get("U2NET_SCREENSHOT_MODEL") or str(DEMO_MODEL)
        if not Path(model, "model.safetensors").is_file():
            pytest.fail(f"U2NET_UPDATE_SCREENSHOT needs a trained model for the screenshot, but {model} has no weights")
    else:
        model = str(tiny_folder)
    space = SpaceServer(model, workdir, cwd=REPO_ROOT, script="space/app.py")
    try:
        space.wait_ready()
        yield space
    finally:
        space.stop()


def _rendered(page, selector: str) -> list[dict]:
    """Natural sizes of the decoded images under ``selector`` (0 x 0 means broken or not loaded)."""
    return page.eval_on_selector_all(
        selector + " img",
        "els => els.map(e => ({w: e.naturalWidth, h: e.naturalHeight, complete: e.complete}))",
    )


def test_upload_run_and_see_every_output(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(server.url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        page.wait_for_selector("#u2net-input input[type=file]", state="attached", timeout=TIMEOUT_MS)
        page.wait_for_selector("#u2net-model-status :text('Loaded')", timeout=TIMEOUT_MS)  # demo.load warmed the model

        photo = REPO_ROOT / "space" / "examples" / "coffee.jpg"
        page.locator("#u2net-input input[type=file]").set_input_files(str(photo))
        page.wait_for_selector("#u2net-input img", timeout=TIMEOUT_MS)
        page.click("#u2net-run")

        page.wait_for_function(
            "document.querySelectorAll('#u2net-gallery img').length >= 7", timeout=TIMEOUT_MS
        )
        page.wait_for_selector("#u2net-info :text('600 × 400 px')", timeout=TIMEOUT_MS)
        page.wait_for_function(
            """() => ['#u2net-slider', '#u2net-mask', '#u2net-gallery'].every(sel =>
                   [...document.querySelectorAll(sel + ' img')].length > 0 &&
                   [...document.querySelectorAll(sel + ' img')].every(img => img.complete && img.naturalWidth > 0))""",
            timeout=TIMEOUT_MS,
        )

        slider = _rendered(page, "#u2net-slider")
        assert len(slider) >= 2 and all(image["w"] == 600 and image["h"] == 400 for image in slider[:2])
        mask = _rendered(page, "#u2net-mask")
        assert mask and mask[0]["w"] == 600 and mask[0]["h"] == 400
        gallery = _rendered(page, "#u2net-gallery")
        assert len(gallery) == 7 and all(image["w"] > 0 for image in gallery)
        gallery_text = page.locator("#u2net-gallery").inner_text()
        for caption in ("fused", "side1 · 1/1", "side6 · 1/32"):
            assert caption in gallery_text
        download = page.locator("#u2net-cutout a[download]")
        assert download.count() >= 1 and "coffee-cutout" in page.locator("#u2net-cutout").inner_text()
        assert "Inference" in page.locator("#u2net-info").inner_text()
        assert not errors, errors

        shot = tmp_path / "space-screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if UPDATE_SCREENSHOT:
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
    finally:
        page.close()


def test_an_unreadable_upload_shows_an_error_message(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(server.url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        page.wait_for_selector("#u2net-input input[type=file]", state="attached", timeout=TIMEOUT_MS)
        fake = tmp_path / "fake.png"
        fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
        page.locator("#u2net-input input[type=file]").set_input_files(str(fake))
        page.click("#u2net-run")
        page.wait_for_selector(":text('not an image this app can read')", timeout=TIMEOUT_MS)
        assert server.process.poll() is None
    finally:
        page.close()


def test_a_bundled_example_runs_from_its_cache(browser, server):
    """Clicking an example fills the controls and shows outputs (computed on first use, then cached)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(server.url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        page.wait_for_selector("#u2net-input input[type=file]", state="attached", timeout=TIMEOUT_MS)
        page.get_by_text("chelsea · blurred photo").click()
        page.wait_for_selector("#u2net-info :text('451 × 300 px')", timeout=TIMEOUT_MS)
        page.wait_for_function("document.querySelectorAll('#u2net-gallery img').length >= 7", timeout=TIMEOUT_MS)
        info = page.locator("#u2net-info").inner_text()
        assert "background blur" in info and "threshold 0.50" in info
        assert page.locator("#u2net-input img").count() >= 1  # the example photo was put in the input
    finally:
        page.close()
