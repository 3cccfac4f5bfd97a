"""The footprint map renders in a real headless browser with one shape per item and the search box."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import pystac
import pytest
import shapely.geometry

from tests.browser import browser_page
from workbench.catalog import items_to_geodataframe
from workbench.ui.maps import footprint_map


@pytest.fixture()
def page() -> Iterator[object]:
    yield from browser_page()


def _items(n: int) -> list[pystac.Item]:
    out = []
    for i in range(n):
        geom = shapely.geometry.box(14 + 0.4 * i, 46, 14.3 + 0.4 * i, 46.5)
        out.append(pystac.Item(id=f"item-{i}", geometry=shapely.geometry.mapping(geom), bbox=list(geom.bounds),
                               datetime=dt.datetime(2024, 1, 1 + i, tzinfo=dt.timezone.utc), properties={}))
    return out


@pytest.mark.browser
def test_footprint_map_in_chromium(tmp_path: Path, page: object) -> None:
    fmap = footprint_map(items_to_geodataframe(_items(3)), bbox=[13.5, 45.5, 16.0, 47.0])
    html = tmp_path / "map.html"
    fmap.save(str(html))
    page.goto(html.as_uri())  # type: ignore[attr-defined]
    page.wait_for_selector("path.leaflet-interactive", state="attached", timeout=20_000)  # type: ignore[attr-defined]
    shapes = page.locator("path.leaflet-interactive")  # type: ignore[attr-defined]
    assert shapes.count() == 4  # three footprints + the search rectangle


def test_empty_footprints_make_a_map(tmp_path: Path) -> None:
    fmap = footprint_map(items_to_geodataframe([]))
    fmap.save(str(tmp_path / "empty.html"))
    assert "leaflet" in (tmp_path / "empty.html").read_text().lower()
