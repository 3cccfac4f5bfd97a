"""The processor panel in a real browser: JupyterLab and Voilà on 127.0.0.1, Debian's chromium (Playwright).

A temp project holds the sample Sentinel-1 scene and a tiny registered sea-ice CNN
(:func:`tests.servers.processes.build_project`). JupyterLab is started through ``binder/start``
(as Binder starts it); the test opens ``notebooks/08_processor_panel.ipynb``, runs it, types a
region into the bbox fields, picks the processor, clicks Run and waits for the product's
layers on the map and a "successful" job row. The Voilà app (the command of ``make app``)
and Binder's default page (``OPEN_PROCESSOR_PANEL=1``) render the same panel. Every request that
is not for 127.0.0.1 is refused and recorded: none may happen (the widget JavaScript comes
from the installed lab extensions, not a CDN), and the pages log no console error.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM_ARGS, LEAFLET_DIR, _offline_route, chromium_path
from tests.servers.panel import panel_project
from tests.servers.processes import free_port, inner_bbox, project_env, stop_server
from workbench.processors import InputError, validate_inputs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "08_processor_panel.ipynb"
TOKEN = "wb-panel-test-token"
BIN = Path(sys.executable).parent
#: docs/img/processor_panel.png is refreshed from this run when set (once, by hand).
UPDATE_DOCS = os.environ.get("UPDATE_PANEL_SCREENSHOT") == "1"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout:g} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project with the sample scene and ``seaice_tiny``, the panel notebook, Jupyter dirs of its own."""
    from jupyter_client.kernelspec import find_kernel_specs

    chromium_path()
    for asset in (LEAFLET_DIR / "leaflet.js", FONTAWESOME_DIR / "css" / "all.min.css"):
        if not asset.is_file():
            pytest.skip(f"{asset} is missing (make web-assets)")
    if "workbench" not in find_kernel_specs():
        pytest.skip("the workbench kernel is not installed (make install)")
    info = panel_project(tmp_path_factory)
    root = info["root"]
    (root / "notebooks").mkdir(exist_ok=True)
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / "notebooks" / NOTEBOOK)
    jupyter = root / ".jupyter-test"
    settings = jupyter / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = project_env(root, JUPYTER_CONFIG_DIR=str(jupyter / "config"), JUPYTER_DATA_DIR=str(jupyter / "data"),
                      JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"), IPYTHONDIR=str(jupyter / "ipython"),
                      JUPYTERLAB_SETTINGS_DIR=str(jupyter / "lab-settings"),
                      JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "workspaces"),
                      PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    info.update(root=root, env=env)
    yield info


@pytest.fixture(scope="module")
def lab(project: dict[str, Any]) -> Iterator[str]:
    """JupyterLab on 127.0.0.1, started through binder/start with OPEN_PROCESSOR_PANEL=1 (as Binder would)."""
    root, port = project["root"], free_port()
    log = root / "jupyterlab.log"
    cmd = [str(ROOT / "binder" / "start"), str(BIN / "jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1",
           "--port", str(port), f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {**project["env"], "OPEN_PROCESSOR_PANEL": "1"}
    with open(log, "ab") as out:  # the server keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/api/status?token={TOKEN}", proc, log)
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def voila(project: dict[str, Any]) -> Iterator[str]:
    """The Voilà app of ``make app`` on 127.0.0.1."""
    root, port = project["root"], free_port()
    log = root / "voila.log"
    makefile = (ROOT / "Makefile").read_text()
    assert "voila notebooks/08_processor_panel.ipynb --no-browser --Voila.ip=127.0.0.1" in makefile
    cmd = [str(BIN / "voila"), f"notebooks/{NOTEBOOK}", "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
           "--Voila.port_retries=0"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=project["env"], cwd=root, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/voila/static/", proc, log)
        yield url
    finally:
        stop_server(proc)


#: Font Awesome 5 from the npm registry (``make web-assets``): Voilà's page template links it from a CDN.
FONTAWESOME_DIR = ROOT / ".cache" / "web" / "node_modules" / "@fortawesome" / "fontawesome-free"


class Browser:
    """A chromium page where no request leaves the machine, recording console errors.

    Requests for 127.0.0.1 pass; the CDN links of folium (leaflet) and of Voilà's template (Font
    Awesome) are answered from the npm copies (``handled``); every other request is refused and
    recorded (``refused``).
    """

    def __init__(self, page: Any) -> None:
        self.page = page
        #: (URL prefix, error texts) a test tolerates, for a link it knows and states why
        self.tolerated: tuple[str, tuple[str, ...]] | None = None
        self.refused: list[str] = []
        self.handled: list[str] = []
        self.local: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _route(self, route: Any) -> None:
        url: str = route.request.url
        if url.startswith("http://127.0.0.1"):
            self.local.append(url)
            route.continue_()
            return
        if "/@fortawesome/fontawesome-free@" in url:
            rest = url.split("/@fortawesome/fontawesome-free@", 1)[1].split("?")[0].split("#")[0]
            local = FONTAWESOME_DIR / rest.split("/", 1)[-1]
            if local.is_file() and FONTAWESOME_DIR.resolve() in local.resolve().parents:
                self.handled.append(url)
                route.fulfill(path=str(local))
                return
        if "leaflet@" in url:
            self.handled.append(url)
        else:
            self.refused.append(url)
        _offline_route(route)

    def check_clean(self) -> None:
        refused, errors = self.refused, self.errors
        if self.tolerated is not None:
            prefix, texts = self.tolerated
            refused = [u for u in refused if not u.startswith(prefix)]
            if len(refused) == len(self.refused):
                raise AssertionError(f"the tolerated request {prefix} was not made: drop the exemption")
            errors = [e for e in errors if not any(t in e for t in texts)]
        assert refused == [], f"requests for other machines: {refused}"
        assert errors == [], "\n".join(errors)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def browser(chromium: Any, tmp_path: Path) -> Iterator[Browser]:
    """A fresh page; its last state is kept as ``last.png`` in the test's tmp folder (for a failure's look)."""
    context = chromium.new_context(viewport={"width": 1500, "height": 1100})
    wrapped = Browser(context.new_page())
    try:
        yield wrapped
    finally:
        try:
            wrapped.page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
            (tmp_path / "last.log").write_text("\n".join(wrapped.errors + wrapped.refused))
        finally:
            context.close()


def _message(raw: dict[str, Any]) -> str:
    with pytest.raises(InputError) as info:
        validate_inputs("sea_ice_chart", raw)
    return str(info.value)


def _type_bbox(page: Any, bbox: list[float]) -> None:
    for name, value in zip(("west", "south", "east", "north"), bbox):
        field = page.locator(f".wb-bbox-{name} input")
        field.fill(f"{value:.5f}")
        field.press("Enter")


def _wait_panel(page: Any, timeout: float = 120_000) -> None:
    page.wait_for_selector(".wb-processor-panel .leaflet-container", timeout=timeout)
    page.wait_for_selector(".wb-processor-panel .leaflet-overlay-pane path", state="attached", timeout=30_000)


def _wait_text(page: Any, selector: str, text: str, *, timeout: float = 30.0) -> None:
    """Wait until the element's text contains ``text``; fail showing the text it has."""
    deadline = time.monotonic() + timeout
    found = ""
    while time.monotonic() < deadline:
        found = page.evaluate("(sel) => document.querySelector(sel)?.textContent ?? ''", selector)
        if text in found:
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"{selector} shows {found!r}, expected {text!r}")


def _check_validation(page: Any, project: dict[str, Any]) -> None:
    dates = {"start": "2021-12-01", "end": "2021-12-31", "model": {"name": "seaice_tiny"}}
    error = page.locator(".wb-error")
    expected = _message({"region": None, **dates})
    _wait_text(page, ".wb-error", expected)
    w, s, e, n = inner_bbox(project["scene_bbox"], 0.6)
    _type_bbox(page, [e, s, w, n])  # west and east swapped
    expected = _message({"region": {"bbox": [round(e, 5), round(s, 5), round(w, 5), round(n, 5)]}, **dates})
    _wait_text(page, ".wb-error", expected)
    assert "must be less than east" in error.inner_text()


def test_panel_in_jupyterlab_runs_the_processor(project: dict[str, Any], lab: str, browser: Browser,
                                                tmp_path: Path) -> None:
    page = browser.page
    page.goto(f"{lab}/lab/tree/notebooks/{NOTEBOOK}?token={TOKEN}")
    page.wait_for_function(
        "() => { const w = window.jupyterapp?.shell?.currentWidget;"
        " return w?.sessionContext?.session?.kernel?.status === 'idle'; }", timeout=120_000)
    kernel = page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.name")
    assert kernel == "workbench"
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    _wait_panel(page)
    _check_validation(page, project)
    # a region inside the sample scene: its footprint is drawn, one scene is announced
    _type_bbox(page, inner_bbox(project["scene_bbox"], 0.6))
    page.wait_for_selector(".wb-scene-count:has-text('1 scene of sentinel-1-grd')", timeout=30_000)
    page.wait_for_function("() => !document.querySelector('.wb-error')?.textContent.trim()", timeout=30_000)
    page.locator(".wb-processor select").select_option(label="Sea-ice chart from Sentinel-1")
    overlays_before = page.locator(".wb-processor-panel .leaflet-overlay-pane path").count()
    page.locator("button.wb-run").click()
    page.wait_for_function(  # the run ended: its product is on the map, or its error is shown
        "() => { const t = document.querySelector('.wb-progress-message')?.textContent ?? '';"
        " const shown = document.querySelector('.wb-processor-panel img.leaflet-image-layer');"
        " const error = document.querySelector('.wb-error')?.textContent.trim();"
        " return (t.startsWith('successful') && shown) || (t.startsWith('failed') && error); }", timeout=240_000)
    status = page.locator(".wb-jobs tr.wb-job .wb-job-status").first.inner_text()  # newest first
    assert status == "successful", page.locator(".wb-error").inner_text()
    page.wait_for_selector(".wb-processor-panel .leaflet-overlay-pane img.leaflet-image-layer", state="attached",
                           timeout=60_000)
    src = page.locator(".wb-processor-panel img.leaflet-image-layer").first.get_attribute("src")
    assert src and src.startswith("data:image/png;base64,")
    page.wait_for_function(
        f"() => document.querySelectorAll('.wb-processor-panel .leaflet-overlay-pane path').length > {overlays_before}",
        timeout=30_000)
    legend = page.locator(".wb-processor-panel .leaflet-control").filter(has_text="water")
    assert legend.count() >= 1 and "ice" in legend.first.inner_text()
    assert page.locator(".wb-progress .progress-bar, .wb-progress [class*=progress]").count() >= 1
    time.sleep(0.5)  # let the last tiles of the overlay paint before the screenshot
    page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=True)
    page.locator(".wb-processor-panel").screenshot(path=str(tmp_path / "processor_panel.png"))
    if UPDATE_DOCS:
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "processor_panel.png", ROOT / "docs" / "img" / "processor_panel.png")
    assert (tmp_path / "processor_panel.png").stat().st_size > 10_000
    # the map's JavaScript came from the jupyter-leaflet lab extension of the installed package
    assert any("/lab/extensions/jupyter-leaflet/static/" in u for u in browser.local)
    browser.check_clean()


def test_panel_as_a_voila_app(project: dict[str, Any], voila: str, browser: Browser, tmp_path: Path) -> None:
    page = browser.page
    page.goto(voila + "/", wait_until="commit")
    _wait_panel(page)
    assert page.locator(".cm-editor, .CodeMirror").count() == 0  # a page: no code shown
    _check_validation(page, project)
    # draw a rectangle with the mouse: the drawn shape becomes the region and fills the bbox fields
    page.locator(".wb-processor-panel a.leaflet-draw-draw-rectangle").click()
    box = page.locator(".wb-processor-panel .leaflet-container").bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 80, y0 + 60, steps=8)
    page.mouse.up()
    page.wait_for_function("() => { const v = document.querySelector('.wb-bbox-west input')?.value;"
                           " return v && !v.startsWith('14.12522'); }", timeout=30_000)
    west = float(page.locator(".wb-bbox-west input").input_value())
    east = float(page.locator(".wb-bbox-east input").input_value())
    south = float(page.locator(".wb-bbox-south input").input_value())
    north = float(page.locator(".wb-bbox-north input").input_value())
    assert west < east and south < north
    page.wait_for_function("() => document.querySelector('.wb-error')?.textContent.trim() === ''",
                           timeout=30_000)  # a valid region: the message is gone
    page.screenshot(path=str(tmp_path / "voila.png"), full_page=True)
    assert any("/voila/labextensions/jupyter-leaflet/static/" in u for u in browser.local)
    browser.check_clean()


def test_binder_start_opens_the_panel_page(project: dict[str, Any], lab: str, browser: Browser) -> None:
    page = browser.page
    # Voila's server extension (unlike the stand-alone app of `make app`) puts cdnjs' MathJax in the
    # page: on Binder it is reachable; offline its refusal is the one failure tolerated here (the
    # panel needs no MathJax).
    browser.tolerated = ("https://cdnjs.cloudflare.com/ajax/libs/mathjax/",
                         ("Failed to load resource: net::ERR_FAILED", "MathJax is not defined"))
    page.goto(f"{lab}/?token={TOKEN}", wait_until="commit")
    page.wait_for_url("**/voila/render/notebooks/08_processor_panel.ipynb*", wait_until="commit", timeout=30_000)
    _wait_panel(page)
    assert page.locator(".wb-run").count() == 1
    browser.check_clean()
