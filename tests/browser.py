"""Headless Debian chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

#: Leaflet from the npm registry, installed by `make web-assets` (the tests run offline, so the
#: CDN addresses that folium writes into its pages are answered from this copy).
LEAFLET_DIR = Path(__file__).resolve().parents[1] / ".cache" / "web" / "node_modules" / "leaflet" / "dist"

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    """Path of Debian's chromium, or skip the test where it is not installed."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (make chromium)")
    return path


def browser_page() -> Iterator["object"]:
    """Yield a Playwright page in headless chromium; closes everything afterwards."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", _offline_route)
            yield page
        finally:
            browser.close()


def _offline_route(route: "object") -> None:
    """Serve leaflet.js/.css from the local npm copy, pass local pages through, refuse the rest."""
    url: str = route.request.url  # type: ignore[attr-defined]
    name = url.rsplit("/", 1)[-1].split("?")[0]
    if url.startswith(("file://", "http://127.0.0.1", "http://localhost")):
        route.continue_()  # type: ignore[attr-defined]
    elif "leaflet@" in url and name in {"leaflet.js", "leaflet.css"}:
        if not (LEAFLET_DIR / name).exists():
            pytest.skip(f"{LEAFLET_DIR / name} is missing (make web-assets)")
        route.fulfill(path=str(LEAFLET_DIR / name))  # type: ignore[attr-defined]
    else:
        route.abort()  # type: ignore[attr-defined]
