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


@pytest.fixture(scope="module", params=["3dmol", "plotly"])
def server(request):
    """A live server; params: the default 3D renderer (3Dmol.js served from static/ or the CDN, or Plotly)."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               CRYSTALFRAMER_RENDERER=request.param)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / f"streamlit-{request.param}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         # No file watcher: a watched checkout (with .venv/ and the caches other tests write) overflows inotify,
         # and the reconciling storms slowed the server until the 3Dmol.js canvas missed its deadline.
         "--server.fileWatcherType", "none"],
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
    yield url, request.param
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


CANVAS_SIZES = "Array.from(document.querySelectorAll('canvas')).map(c => [c.width, c.height])"


def _scene_element(page, renderer: str, min_width: int = 200, timeout_s: float = 150.0):
    """The element holding a sized 3D WebGL canvas: 3Dmol.js draws in an iframe, Plotly in the page itself."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if renderer == "plotly":
            for chart in page.query_selector_all('[data-testid="stPlotlyChart"]'):
                sizes = chart.evaluate("e => Array.from(e.querySelectorAll('canvas')).map(c => [c.width, c.height])")
                if any(w >= min_width and h >= 100 for w, h in sizes):
                    return chart
        else:
            for frame in page.frames:
                if frame == page.main_frame:
                    continue
                try:
                    sizes = frame.evaluate(CANVAS_SIZES)
                except Exception:
                    continue
                if any(w >= min_width and h >= 100 for w, h in sizes):
                    return frame.frame_element()
        time.sleep(0.5)
    return None


def _ink_fraction(png: bytes) -> float:
    """Fraction of pixels that are not (near-)white: > 0 means something was drawn."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    hist = img.histogram()
    return 1.0 - sum(hist[245:]) / float(sum(hist))


def test_home_predicts_and_renders_3d(server):
    url, renderer = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1900})
            page.goto(url)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=180_000)
            _wait_until_idle(page)
            text = page.inner_text("body")
            assert "SrTiO3" in text and "Prediction" in text
            assert not page.query_selector('[data-testid="stException"]'), "the script raised"
            element = _scene_element(page, renderer)
            assert element is not None, f"no 3D canvas was rendered ({renderer})"
            time.sleep(2.0)  # let WebGL draw
            shot = element.screenshot()
            assert _ink_fraction(shot) > 0.01, f"the 3D canvas is blank ({renderer})"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / f"home_3d_{renderer}.png").write_bytes(shot)
            page.screenshot(path=str(ARTIFACTS / f"home_{renderer}.png"), full_page=True)

            # The attention page: scene, table, layer strip.
            page.goto(url + "/attention")
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=180_000)
            _wait_until_idle(page)
            assert not page.query_selector('[data-testid="stException"]')
            assert _scene_element(page, renderer) is not None
            time.sleep(3.0)
            page.screenshot(path=str(ARTIFACTS / f"attention_{renderer}.png"), full_page=True)

            # Compare frames: Ti in SrTiO3 is found octahedral; per-layer strips per frame method.
            page.goto(url + "/compare")
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=180_000)
            _wait_until_idle(page)
            assert not page.query_selector('[data-testid="stException"]')
            assert "octahedral" in page.inner_text("body")
            assert _scene_element(page, renderer) is not None
            time.sleep(3.0)
            page.screenshot(path=str(ARTIFACTS / f"compare_{renderer}.png"), full_page=True)
        finally:
            browser.close()
