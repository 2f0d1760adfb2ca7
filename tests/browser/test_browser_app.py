"""Drive the real app in Debian's Chromium, with each 3D renderer: the Home page predicts and renders 3D; deep links
(/home, /attention?…) open the right state; clicking an atom makes it the target; the PNG buttons save images and
the exported HTML draws with the network blocked; every page is screenshotted.

Skips when /usr/bin/chromium or the playwright package is missing (CI installs chromium with apt).
Screenshots go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
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


def _pause(page, seconds: float) -> None:
    """Wait while the sync API keeps dispatching the browser's events (``time.sleep`` would freeze ``page.url``
    and ``page.frames`` at their last values: a poll that sleeps never sees an iframe attached or a pushState)."""
    page.wait_for_timeout(seconds * 1000.0)


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
        _pause(page, 0.25)
    raise TimeoutError("the app script did not finish")


def _watch(page, name: str):
    """Keep the page's console messages, uncaught errors and HTTP error responses in
    tests/artifacts/console-<name>.log: when a check fails in CI, that file and the failure screenshot are what is
    left to read."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"console-{name}.log"

    def write(line: str) -> None:
        with path.open("a") as log:
            log.write(f"{time.time():.3f} {line}\n")

    page.on("console", lambda msg: write(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: write(f"pageerror: {err}"))
    page.on("response", lambda resp: write(f"http {resp.status}: {resp.url}") if resp.status >= 400 else None)
    return page


def _failure_report(page, what: str) -> str:
    """Save a full-page screenshot and describe the page (exceptions shown, frames and their canvases)."""
    stem = re.sub(r"\W+", "_", what)[:60]
    shot = ARTIFACTS / f"failure_{stem}.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
    except Exception as exc:  # a crashed page still gets its description below
        shot = f"(no screenshot: {exc})"
    errors = [e.inner_text()[:300] for e in page.query_selector_all('[data-testid="stException"]')]
    frames = []
    for frame in page.frames:
        try:
            frames.append((frame.url[:60], frame.evaluate(CANVAS_SIZES)))
        except Exception as exc:
            frames.append((frame.url[:60], f"unreadable: {exc}"[:80]))
    return f"{what}; url={_location(page)}; exceptions shown={errors}; frames={frames}; screenshot={shot}"


def _location(page) -> str:
    """The address the browser shows now. (Not ``page.url``: the sync API updates that from events it only
    processes during its own calls, so a loop that sleeps between reads of it never sees a later pushState.)"""
    return page.evaluate("window.location.href")


def _wait_for_url(page, fragment: str, timeout_s: float = 60.0) -> None:
    """The app writes its state into the URL from the script run; the browser shows it when the server's message
    arrives, which may be after the widgets have changed."""
    deadline = time.time() + timeout_s
    while fragment not in _location(page):
        if time.time() > deadline:
            raise AssertionError(_failure_report(page, f"{fragment!r} never reached the URL"))
        _pause(page, 0.25)


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
        _pause(page, 0.5)
    print(_failure_report(page, f"no sized {renderer} canvas"))  # shown by pytest with the failed assertion
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
            page = _watch(browser.new_page(viewport={"width": 1400, "height": 1900}), renderer)
            page.goto(url)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=180_000)
            _wait_until_idle(page)
            text = page.inner_text("body")
            assert "SrTiO3" in text and "Prediction" in text
            assert not page.query_selector('[data-testid="stException"]'), "the script raised"
            element = _scene_element(page, renderer)
            assert element is not None, f"no 3D canvas was rendered ({renderer})"
            _pause(page, 2.0)  # let WebGL draw
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
            _pause(page, 3.0)
            page.screenshot(path=str(ARTIFACTS / f"attention_{renderer}.png"), full_page=True)

            # Compare frames: Ti in SrTiO3 is found octahedral; per-layer strips per frame method.
            page.goto(url + "/compare")
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=180_000)
            _wait_until_idle(page)
            assert not page.query_selector('[data-testid="stException"]')
            assert "octahedral" in page.inner_text("body")
            assert _scene_element(page, renderer) is not None
            _pause(page, 3.0)
            page.screenshot(path=str(ARTIFACTS / f"compare_{renderer}.png"), full_page=True)
        finally:
            browser.close()


# ---------------------------------------------------------------------------------------------------------------
# clicks, deep links, exports and every page (issue 10)
# ---------------------------------------------------------------------------------------------------------------
# In the 3Dmol.js iframe: every clickable sphere's screen position, its structure index j (from its hover label) and
# element; the viewers are the page's cfViewers_<id> (render_3dmol.view_html).
SPHERES_JS = """() => {
  const keys = Object.keys(window).filter(k => k.startsWith('cfViewers_'));
  if (!keys.length || !window[keys[0]].length) return null;
  const v = window[keys[0]][0];
  const out = [];
  (v.shapes || []).forEach((s) => {
    if (!s.clickable || !s.intersectionShape || !s.intersectionShape.sphere.length) return;
    const c = s.intersectionShape.sphere[0].center;
    const p = v.modelToScreen({x: c.x, y: c.y, z: c.z});
    const m = String(s.hover_callback || '').match(/"([A-Z][a-z]?) j=(\\d+) /);
    if (m) out.push({element: m[1], j: +m[2], x: p.x, y: p.y, r: s.intersectionShape.sphere[0].radius});
  });
  return out;
}"""


def _goto(page, url: str, selector: str = '[data-testid="stDataFrame"]') -> None:
    page.goto(url)
    page.wait_for_selector(selector, timeout=180_000)
    _wait_until_idle(page)
    body = page.inner_text("body")
    assert "Page not found" not in body, url
    assert not page.query_selector('[data-testid="stException"]'), f"the script raised on {url}"


def _target_atom(page) -> str:
    return page.locator('input[aria-label="Target atom"]').input_value().strip()


def _click_atom_3dmol(page, element: str, not_j: int) -> int:
    deadline = time.time() + 60
    while time.time() < deadline:
        for frame in page.frames:
            if frame == page.main_frame:
                continue
            try:
                spheres = frame.evaluate(SPHERES_JS)
            except Exception:
                continue
            if not spheres:
                continue
            candidates = [s for s in spheres if s["element"] == element and s["j"] != not_j]
            if not candidates:
                continue
            best = max(candidates, key=lambda s: s["r"])
            box = frame.frame_element().bounding_box()
            page.mouse.click(box["x"] + best["x"], box["y"] + best["y"])
            return int(best["j"])
        _pause(page, 0.5)
    raise AssertionError("no clickable atom found in the 3Dmol.js view")


def _hover_label(page) -> str:
    return page.evaluate("Array.from(document.querySelectorAll('.hovertext')).map(e => e.textContent).join(' ')") or ""


def _click_atom_plotly(page, element: str, not_j: int) -> int:
    """Hover over the main scene on a grid until Plotly's hover label names another atom of ``element`` (and still
    does after a pause: a label can lag behind the mouse), then click there."""
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    for fy in np.linspace(0.2, 0.8, 16):
        for fx in np.linspace(0.15, 0.75, 16):
            x, y = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
            page.mouse.move(x, y)
            _pause(page, 0.06)
            match = re.search(r"\b([A-Z][a-z]?) j=(\d+) ", _hover_label(page))
            if not match or match.group(1) != element or int(match.group(2)) == not_j:
                continue
            page.mouse.move(x + 1, y)
            _pause(page, 0.5)
            again = re.search(r"\b([A-Z][a-z]?) j=(\d+) ", _hover_label(page))
            if not again or again.groups() != match.groups():
                continue
            page.mouse.down()  # a still click anywhere on the atom (not just within 5 px of its centre)
            _pause(page, 0.1)
            page.mouse.up()
            return int(match.group(2))
    raise AssertionError("no atom of %s found under the mouse in the Plotly view" % element)


def _png_download(page, trigger, suffix: str = "_layer1.png") -> bytes:
    """The main view's PNG (its file is <formula>_atom<j>_layer<k>.png; the strip's is …_layers.png)."""
    with page.expect_download(timeout=60_000) as info:
        trigger()
    assert info.value.suggested_filename.endswith(suffix), info.value.suggested_filename
    data = Path(info.value.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return data


def test_click_deep_links_exports_and_every_page(server):
    url, renderer = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1900}, accept_downloads=True)
            page = _watch(context.new_page(), renderer)

            # /home is a deep link too (it used to answer "Page not found"); the example comes from the URL.
            _goto(page, url + "/home?example=ZnS", '[data-testid="stMetric"]')
            # Any metric, not the first one: while the page renders, "Space group" can come first.
            page.locator('[data-testid="stMetric"]', has_text="ZnS").first.wait_for(timeout=60_000)
            assert "example=ZnS" in _location(page)
            assert _scene_element(page, renderer) is not None
            _pause(page, 2.0)
            page.screenshot(path=str(ARTIFACTS / f"page_home_{renderer}.png"), full_page=True)

            # Attention: the link sets the target (Ti 1); a click on an O makes that O the target.
            _goto(page, url + "/attention?example=SrTiO3&layer=1&head=0&atom=1")
            assert _target_atom(page) == "1: Ti"
            assert _scene_element(page, renderer) is not None
            _pause(page, 3.0)
            page.screenshot(path=str(ARTIFACTS / f"page_attention_{renderer}.png"), full_page=True)
            click = _click_atom_3dmol if renderer == "3dmol" else _click_atom_plotly
            j = click(page, "O", not_j=1)
            _pause(page, 1.0)
            _wait_until_idle(page)
            assert _target_atom(page) == f"{j}: O", "the click did not change the target atom"
            _wait_for_url(page, f"atom={j}")  # and the URL follows
            _pause(page, 3.0)
            page.screenshot(path=str(ARTIFACTS / f"page_attention_clicked_{renderer}.png"), full_page=True)

            # PNG export of the main view, drawn in the browser.
            if renderer == "3dmol":
                # The main view is the topmost 3Dmol.js iframe (the layer strip has its own PNG button below).
                frames = [f for f in page.frames if f != page.main_frame and f.query_selector("button.cf-png")]
                frame = min(frames, key=lambda f: f.frame_element().bounding_box()["y"])
                png = _png_download(page, lambda: frame.click("button.cf-png"))
            else:
                chart = page.locator('[data-testid="stPlotlyChart"]').first
                chart.hover()
                png = _png_download(page, lambda: chart.locator('[data-title="Download plot as a PNG"]').click())
            assert _ink_fraction(png) > 0.01, "the PNG is blank"
            (ARTIFACTS / f"export_view_{renderer}.png").write_bytes(png)

            # The HTML export draws with every network request blocked.
            with page.expect_download(timeout=60_000) as info:
                page.get_by_role("button", name="Download scene (HTML)").click()
            html_path = ARTIFACTS / f"export_scene_{renderer}.html"
            html_path.write_bytes(Path(info.value.path()).read_bytes())
            offline = context.new_page()
            offline.route("http*://**", lambda route: route.abort())
            offline.goto(html_path.as_uri())
            canvas = None
            for _ in range(60):
                canvas = offline.query_selector("canvas")
                if canvas is not None and (canvas.bounding_box() or {}).get("width", 0) > 100:
                    break
                _pause(offline, 0.5)
            assert canvas is not None, "the exported HTML drew nothing offline"
            _pause(offline, 3.0)
            assert _ink_fraction(canvas.screenshot()) > 0.01, "the exported HTML is blank offline"
            shot = offline.screenshot()
            (ARTIFACTS / f"export_scene_offline_{renderer}.png").write_bytes(shot)
            offline.close()

            # Compare frames (Zn in zincblende: a tetrahedron), Perturbation (a sweep), Fine-tune (an upload).
            _goto(page, url + "/compare?example=ZnS&atom=1&head=0")
            assert "Zn (site 1): CN 4, tetrahedral" in page.inner_text("body")
            _pause(page, 3.0)
            page.screenshot(path=str(ARTIFACTS / f"page_compare_{renderer}.png"), full_page=True)

            _goto(page, url + "/perturbation?example=SrTiO3", '[data-testid="stButton"]')
            page.get_by_role("button", name="Run sweep").click()
            page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=300_000)
            _wait_until_idle(page)
            _pause(page, 2.0)
            page.screenshot(path=str(ARTIFACTS / f"page_perturbation_{renderer}.png"), full_page=True)

            _goto(page, url + "/finetune", '[data-testid="stFileUploader"]')
            _pause(page, 1.0)
            page.screenshot(path=str(ARTIFACTS / f"page_finetune_{renderer}.png"), full_page=True)
        finally:
            browser.close()


# ---------------------------------------------------------------------------------------------------------------
# the paper's figures, the layer × head grid, a fine-tune of one epoch and a stopped one
# ---------------------------------------------------------------------------------------------------------------
def _labelled_csv(path: Path) -> Path:
    """12 built-in crystals (and strained copies) with made-up labels, written for this test only (no data is
    committed): a smooth function of volume per atom plus fixed noise, in eV/atom."""
    import pandas as pd
    from pymatgen.io.cif import CifWriter

    from crystalframer.analysis.perturb import strain
    from crystalframer.examples import get_example, list_examples

    structures = [get_example(n) for n in list_examples()[:8]]
    structures += [strain(s, 0.03).structure for s in structures[:4]]
    rng = np.random.default_rng(0)
    labels = [-1.0 + 0.05 * s.volume / len(s) + 0.05 * rng.standard_normal() for s in structures]
    pd.DataFrame({"id": [f"made-up-{k}" for k in range(len(structures))],
                  "cif": [str(CifWriter(s)) for s in structures], "made_up_label": labels}).to_csv(path, index=False)
    return path


def _start_finetune(page, epochs: int, batch_size: int) -> None:
    page.get_by_label("Epochs").fill(str(epochs))
    page.get_by_label("Batch size").fill(str(batch_size))
    page.get_by_role("button", name="Start fine-tuning").click()


def test_paper_figures_grid_finetune_and_stop(server, tmp_path):
    url, renderer = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _watch(browser.new_page(viewport={"width": 1400, "height": 1900}), renderer)

            # The paper's second figure (MgF2 in place of MgSnF4): max vs weighted PCA side by side.
            _goto(page, url + "/compare", '[data-testid="stButton"]')
            page.get_by_role("button", name="MgF2 octahedra (in place of MgSnF4)").click()
            _pause(page, 1.0)
            _wait_until_idle(page)
            body = page.inner_text("body")
            assert "Max vs weighted PCA, side by side" in body
            assert "CN 6, octahedral" in body
            assert _scene_element(page, renderer) is not None
            _pause(page, 3.0)
            page.get_by_text("Max vs weighted PCA, side by side").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / f"paper_figure_mgf2_{renderer}.png"), full_page=True)

            # The layer × head grid on the Attention page (a new page load: a new session, the default crystal).
            _goto(page, url + "/attention")
            heading = page.get_by_text("Every layer × head")
            heading.scroll_into_view_if_needed()
            charts = page.locator('[data-testid="stPlotlyChart"]')
            panels = [charts.nth(k).evaluate("e => e.querySelectorAll('g.cartesianlayer > g.subplot').length")
                      for k in range(charts.count())]
            assert 32 in panels, f"no 4 × 8 layer × head grid (2D panels per chart: {panels})"
            grid = charts.nth(panels.index(32))
            _pause(page, 1.0)
            grid.screenshot(path=str(ARTIFACTS / f"attention_layer_head_grid_{renderer}.png"))
            if renderer != "plotly":
                return  # the Fine-tune page draws no 3D: once is enough

            # Fine-tune one epoch on a small labelled upload (made-up labels), then a long run stopped by Stop.
            csv_path = _labelled_csv(tmp_path / "made_up_labels.csv")
            _goto(page, url + "/finetune", '[data-testid="stFileUploader"]')
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(csv_path))
            page.get_by_text("12 structures with numeric columns").wait_for(timeout=120_000)
            _wait_until_idle(page)
            started = time.time()
            _start_finetune(page, epochs=1, batch_size=4)
            page.get_by_text("3. Results").wait_for(timeout=300_000)
            _wait_until_idle(page)
            one_epoch_s = time.time() - started
            body = page.inner_text("body")
            assert "Validation MAE" in body and "after 1 epoch(s)" in body, body[-800:]
            assert not page.query_selector('[data-testid="stException"]')
            page.screenshot(path=str(ARTIFACTS / f"finetune_one_epoch_{renderer}.png"), full_page=True)
            print(f"fine-tune of 1 epoch on 12 structures: {one_epoch_s:.1f} s from the click to the results")

            _start_finetune(page, epochs=200, batch_size=1)
            stop = page.get_by_role("button", name="Stop", exact=True)
            stop.wait_for(timeout=120_000)
            page.get_by_text("validation MAE before training").wait_for(timeout=120_000)  # epoch 0 is shown
            _pause(page, 2.0)
            page.screenshot(path=str(ARTIFACTS / f"finetune_running_{renderer}.png"), full_page=True)
            stop.click()
            page.get_by_text("Stopped on request").wait_for(timeout=120_000)
            _wait_until_idle(page)
            body = page.inner_text("body")
            match = re.search(r"Stopped on request after (\d+) epoch", body)
            assert match and 1 <= int(match.group(1)) < 200, body[-800:]
            assert page.get_by_role("button", name="Start fine-tuning").is_enabled()
            page.screenshot(path=str(ARTIFACTS / f"finetune_stopped_{renderer}.png"), full_page=True)
        finally:
            browser.close()
