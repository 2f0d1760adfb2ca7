"""Drive the real app in Debian's Chromium: the Home page predicts, the 3D canvas renders; screenshots are saved.

Skips when /usr/bin/chromium or the playwright package is missing (CI installs chromium with apt).
Screenshots go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                if resp.read().strip() == b"ok":
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError("streamlit did not become healthy in 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _wait_until_idle(page, timeout_s: float = 180.0) -> None:
    """Wait until the script run has finished (Streamlit's running indicator is gone) and stays gone."""
    deadline = time.time() + timeout_s
    quiet_since = None
    while time.time() < deadline:
        running = page.evaluate("document.querySelectorAll('[data-testid=\"stStatusWidget\"]').length")
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 2.0:
            return
        time.sleep(0.25)
    raise TimeoutError("the app script did not finish")


def _canvas_frame(page, min_width: int = 200, timeout_s: float = 60.0):
    """The iframe whose WebGL canvas (3Dmol.js, or Plotly's scene) has been sized, and that canvas' size."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for frame in page.frames:
            try:
                sizes = frame.evaluate("Array.from(document.querySelectorAll('canvas')).map(c => [c.width, c.height])")
            except Exception:
                continue
            big = [s for s in sizes if s[0] >= min_width and s[1] >= 100]
            if big and frame != page.main_frame:
                return frame, big[0]
        time.sleep(0.5)
    return None, None


def _ink_fraction(png: bytes) -> float:
    """Fraction of pixels that are not (near-)white: > 0 means something was drawn."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    hist = img.histogram()
    return 1.0 - sum(hist[245:]) / float(sum(hist))


def test_home_predicts_and_renders_3d(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1900})
            page.goto(server)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=180_000)
            _wait_until_idle(page)
            text = page.inner_text("body")
            assert "SrTiO3" in text and "Prediction" in text
            assert not page.query_selector('[data-testid="stException"]'), "the script raised"
            frame, size = _canvas_frame(page)
            assert frame is not None, "no 3D canvas was rendered"
            time.sleep(2.0)  # let WebGL draw
            element = page.query_selector('iframe[data-testid="stIFrame"]') or page.query_selector("iframe")
            shot = element.screenshot()
            assert _ink_fraction(shot) > 0.01, "the 3D canvas is blank"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "home_3d.png").write_bytes(shot)
            page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)

            # The attention page: scene, table, layer strip.
            page.goto(server + "/attention")
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=180_000)
            _wait_until_idle(page)
            assert not page.query_selector('[data-testid="stException"]')
            frame, size = _canvas_frame(page)
            assert frame is not None
            time.sleep(3.0)
            page.screenshot(path=str(ARTIFACTS / "attention.png"), full_page=True)
        finally:
            browser.close()
