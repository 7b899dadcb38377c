"""The web editor in a real browser (Playwright driving Debian's /usr/bin/chromium, headless), against uvicorn serving
the real igan-digits manipulator on a free loopback port: draw, erase, generate, choose, morph, upload a photo and
download its edit, with every request checked to stay on 127.0.0.1."""

import io
import os
import threading
import time
import urllib.parse

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
# CI sets GENRT_REQUIRE_BROWSER=1 (.ci/run installs chromium): there a missing browser or playwright fails the test.
REQUIRED = os.environ.get("GENRT_REQUIRE_BROWSER", "") not in ("", "0")


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason}, and GENRT_REQUIRE_BROWSER is set", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright import sync_api
except ImportError:
    _missing("playwright (the test extra) is not installed")
if not os.access(CHROMIUM, os.X_OK):
    _missing(f"no browser at {CHROMIUM} (apt-get install chromium)")
pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")

from genrt.image import save_png  # noqa: E402
from genrt.web import create_app  # noqa: E402
from genrt.web.server import LOOPBACK_HOSTS, bind, url_of  # noqa: E402
from tests.web.images import decode  # noqa: E402

pytestmark = pytest.mark.slow
TIMEOUT_MS = 30_000  # 2 shared CPU cores: each edit is a few hundred ms, the first page load more


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def server(manipulator):
    """The editor on 127.0.0.1 and a free port, in a thread; its URL. Stopped at teardown, whatever the test did."""
    import uvicorn

    sock = bind("127.0.0.1", 0)
    app = create_app(manipulator, allowed_hosts=LOOPBACK_HOSTS)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not uv.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield url_of(sock)
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def page(browser, server):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.requests = []  # every URL the page asked for
    page.on("request", lambda request: page.requests.append(request.url))
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # Console errors too (a Content-Security-Policy violation is one), but not the failed requests a test makes.
    page.on(
        "console",
        lambda m: m.type == "error" and "Failed to load resource" not in m.text and page.errors.append(m.text),
    )
    page.goto(server)
    page.wait_for_selector("#canvas[data-ready='true']")
    yield page
    context.close()
    assert not page.errors, page.errors
    outside = [u for u in page.requests if urllib.parse.urlsplit(u).scheme not in ("data", "blob")
               and urllib.parse.urlsplit(u).hostname != "127.0.0.1"]  # fmt: skip
    assert not outside, f"the page loaded external URLs: {outside}"


def canvas_pixels(page) -> np.ndarray:
    """The canvas as RGBA uint8 (H, W, 4)."""
    data = page.evaluate(
        """() => {
            const c = document.querySelector('#canvas');
            return [c.height, c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];
        }"""
    )
    h, w, values = data
    return np.asarray(values, np.uint8).reshape(h, w, 4)


def drag(page, start, end, steps: int = 12) -> None:
    """Mouse down at start, moves to end, up; points as fractions of the canvas."""
    box = page.locator("#canvas").bounding_box()
    at = lambda p: (box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"])  # noqa: E731
    page.mouse.move(*at(start))
    page.mouse.down()
    page.mouse.move(*at(end), steps=steps)
    page.mouse.up()


def wait_ready(page) -> None:
    page.wait_for_function("() => document.querySelector('#status').textContent === 'ready'")


def test_draw_generate_choose_morph(page, manipulator, tmp_path):
    wait_ready(page)
    h, w = manipulator.image_size
    start = canvas_pixels(page)
    assert start.shape[:2] == (h * (320 // max(h, w)), w * (320 // max(h, w)))
    assert start[..., :3].max() > start[..., :3].min()  # G(z0) is drawn, not a blank canvas

    # A sketch line, then the eraser across it: the canvas is back as it was.
    page.click("#tool-sketch")
    drag(page, (0.1, 0.2), (0.9, 0.2))
    assert not np.array_equal(canvas_pixels(page), start)
    page.click("#tool-eraser")
    drag(page, (0.5, 0.05), (0.5, 0.35))
    assert np.array_equal(canvas_pixels(page), start)

    # A red colour stroke across the middle.
    page.click("#tool-color")
    assert page.get_attribute("#tool-color", "aria-pressed") == "true"
    page.locator("#color").fill("#ff0000")
    drag(page, (0.2, 0.5), (0.8, 0.5))
    drawn = canvas_pixels(page)
    middle = drawn[drawn.shape[0] // 2, drawn.shape[1] // 4 : 3 * drawn.shape[1] // 4]
    assert (middle[:, 0].astype(int) - middle[:, 1] > 100).all()  # red along the stroke

    page.click("#generate")
    k = page.evaluate("fetch('/api/info').then((r) => r.json()).then((i) => i.k)")
    page.wait_for_function(f"() => document.querySelectorAll('#candidates img.candidate').length === {k}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#candidates img.candidate')].every((i) => i.complete && i.naturalWidth)"
    )
    wait_ready(page)
    candidates = page.locator("#candidates img.candidate")
    assert candidates.nth(0).get_attribute("class").split() == ["candidate", "chosen"]  # the best, chosen first

    candidates.nth(1).click()
    page.wait_for_function(
        "() => document.querySelector('#candidates img.candidate:nth-child(2)').classList.contains('chosen')"
    )
    wait_ready(page)
    page.wait_for_function("() => document.querySelectorAll('#morph img.frame').length === 8")
    frames = page.locator("#morph img.frame")
    chosen = decode(candidates.nth(1).get_attribute("src"))
    assert chosen.shape == (h, w, manipulator.channels)
    last = decode(frames.nth(7).get_attribute("src"))
    assert np.abs(last.astype(int) - chosen).max() <= 1  # the morph ends at the chosen candidate
    first = decode(frames.nth(0).get_attribute("src"))
    z0 = np.asarray(page.evaluate("fetch('/api/start').then((r) => r.json()).then((s) => s.z)"), np.float32)
    assert np.abs(first.astype(int) - manipulator.generate(z0[None])[0]).max() <= 1  # and starts at G(z0)
    assert "error" not in (page.get_attribute("#status", "class") or "")

    shot = tmp_path / "editor.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000

    # No photo: Download saves the chosen image.
    with page.expect_download() as download:
        page.click("#download")
    saved = download.value.path()
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(saved)).reshape(chosen.shape), chosen)


def test_upload_photo_and_download_its_edit(page, manipulator, tmp_path):
    from PIL import Image

    wait_ready(page)
    rng = np.random.default_rng(1)
    photo = np.clip(np.linspace(0, 255, 70)[:, None, None] + rng.normal(0, 15, (70, 50, 3)), 0, 255).astype(np.uint8)
    path = save_png(tmp_path / "photo.png", photo)
    page.set_input_files("#photo-input", str(path))
    page.wait_for_selector("#photo-preview:not([hidden])")
    wait_ready(page)
    assert page.evaluate("fetch('/api/info').then((r) => r.json()).then((i) => i.has_photo)") is True

    page.click("#generate")
    page.wait_for_function("() => document.querySelectorAll('#morph img.frame').length === 8")
    wait_ready(page)
    with page.expect_download() as download:
        page.click("#download")
    edited = np.asarray(Image.open(io.BytesIO(open(download.value.path(), "rb").read())))
    assert edited.shape == photo.shape  # the edit carried onto the photo at its own size
    wait_ready(page)


def test_bad_upload_shows_the_error(page, tmp_path):
    wait_ready(page)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#photo-input", str(bad))
    page.wait_for_function("() => document.querySelector('#status').classList.contains('error')")
    assert "not an image" in page.text_content("#status")
    assert page.is_hidden("#photo-preview")
