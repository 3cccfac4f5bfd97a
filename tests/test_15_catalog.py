"""Catalogue search: query validation, the local catalogue, a STAC API and CDSE OData on loopback."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pystac
import pytest
import shapely.geometry

from workbench import catalog
from workbench.catalog import odata as odata_backend
from workbench.config import load_settings
from workbench.errors import CatalogError
from tests.servers.odata import ODataCatalogue, parse_filter
from tests.servers.stac_api import StacApi

DAY0 = dt.datetime(2023, 9, 1, 10, 0, tzinfo=dt.timezone.utc)


def make_item(index: int, *, old_proj: bool = False, lon: float = 14.5, cloud: float = 10.0) -> pystac.Item:
    """A CDSE-style Sentinel-2 L2A item (STAC 1.1, proj:code, B04_10m/SCL_20m assets)."""
    geom = shapely.geometry.box(lon, 46.0, lon + 1.0, 46.9)
    props: dict[str, Any] = {"eo:cloud_cover": cloud, "platform": "sentinel-2a"}
    if old_proj:
        props["proj:epsg"] = 32633
    else:
        props["proj:code"] = "EPSG:32633"
    item = pystac.Item(id=f"S2A_MSIL2A_{index:03d}", geometry=shapely.geometry.mapping(geom), bbox=list(geom.bounds),
                       datetime=DAY0 + dt.timedelta(days=5 * index), properties=props, collection="sentinel-2-l2a")
    for key in ("B04_10m", "SCL_20m"):
        item.add_asset(key, pystac.Asset(href=f"/data/{index}/{key}.tif", media_type=pystac.MediaType.COG))
    return item


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("bbox", "start", "end", "needle"),
    [
        ([16, 45, 14, 47], "2023-01-01", "2023-02-01", "west"),
        ([14, 47, 16, 45], "2023-01-01", "2023-02-01", "south"),
        ([14, 45, 190, 47], "2023-01-01", "2023-02-01", "longitudes"),
        ([14, -95, 16, 47], "2023-01-01", "2023-02-01", "latitudes"),
        ([14, 45, 16], "2023-01-01", "2023-02-01", "four numbers"),
        ("14,45,16,47", "2023-01-01", "2023-02-01", "four numbers"),
        ([14, 45, 16, 47], "2023-03-01", "2023-02-01", "before start"),
        ([14, 45, 16, 47], "March 2023", "2023-02-01", "ISO"),
    ],
)
def test_bad_queries(bbox: Any, start: str, end: str, needle: str) -> None:
    with pytest.raises(CatalogError, match=needle):
        catalog.make_query("sentinel-2-l2a", bbox, start, end)


def test_bad_filters_and_limit() -> None:
    args = ("sentinel-2-l2a", [14, 45, 16, 47], "2023-01-01", "2023-02-01")
    with pytest.raises(CatalogError, match="unknown filter"):
        catalog.make_query(*args, cloudy=3)
    with pytest.raises(CatalogError, match="max_cloud_cover"):
        catalog.make_query(*args, max_cloud_cover=130)
    with pytest.raises(CatalogError, match="limit"):
        catalog.make_query(*args, limit=0)


def test_end_date_is_inclusive() -> None:
    q = catalog.make_query("c", [0, 0, 1, 1], "2023-01-01", "2023-01-01")
    assert q.end - q.start > dt.timedelta(hours=23)


def test_old_proj_epsg_items_are_normalised() -> None:
    item = catalog.normalize_item(make_item(0, old_proj=True))
    assert item.properties["proj:code"] == "EPSG:32633"
    assert catalog.item_epsg(item) == 32633


# ---------------------------------------------------------------- local


@pytest.fixture()
def local_catalog(project_dir: Path) -> Path:
    path = load_settings().local_catalog_path
    catalog.add_items(path, "sentinel-2-l2a", [make_item(i, old_proj=i % 2 == 0, cloud=10.0 * i) for i in range(6)])
    catalog.add_items(path, "sentinel-1-grd", [make_item(50)])
    return path


def test_local_search(local_catalog: Path) -> None:
    items = catalog.search("sentinel-2-l2a", [14.2, 45.5, 15.0, 47.0], "2023-09-01", "2023-09-16")
    assert [i.id for i in items] == ["S2A_MSIL2A_000", "S2A_MSIL2A_001", "S2A_MSIL2A_002", "S2A_MSIL2A_003"]
    assert all(i.properties["proj:code"] == "EPSG:32633" for i in items)
    assert Path(items[0].assets["B04_10m"].href).is_absolute()
    assert len(catalog.search("sentinel-2-l2a", [14.2, 45.5, 15.0, 47.0], "2023-09-01", "2023-12-31",
                              max_cloud_cover=25)) == 3
    assert catalog.search("sentinel-2-l2a", [0, 0, 1, 1], "2023-09-01", "2023-12-31") == []
    assert catalog.collections(local_catalog) == ["sentinel-1-grd", "sentinel-2-l2a"]


def test_local_unknown_collection_and_missing_catalogue(local_catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="unknown collection 'sentinel-9'"):
        catalog.search("sentinel-9", [14, 45, 16, 47], "2023-09-01", "2023-12-31")
    with pytest.raises(CatalogError, match="no local catalogue"):
        catalog.search("sentinel-2-l2a", [14, 45, 16, 47], "2023-09-01", "2023-12-31",
                       settings=load_settings(project_dir=tmp_path / "empty"))


def test_local_replace_and_concurrent_adds(local_catalog: Path) -> None:
    threads = [threading.Thread(target=catalog.add_items, args=(local_catalog, "sentinel-2-l2a", [make_item(100 + i)]))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    count = catalog.add_items(local_catalog, "sentinel-2-l2a", [make_item(0, cloud=99)])
    assert count == 10
    items = catalog.search("sentinel-2-l2a", [14, 45, 16, 47], "2023-09-01", "2023-09-02")
    assert items[0].properties["eo:cloud_cover"] == 99


def test_relative_asset_href_is_refused(project_dir: Path) -> None:
    item = make_item(0)
    item.assets["B04_10m"].href = "relative/B04.tif"
    with pytest.raises(CatalogError, match="must be absolute"):
        catalog.add_items(load_settings().local_catalog_path, "sentinel-2-l2a", [item])


# ---------------------------------------------------------------- STAC API


@pytest.fixture()
def stac_api() -> Any:
    items = [make_item(i, old_proj=i % 3 == 0, cloud=float(i * 7 % 100), lon=14.0 + (i % 2)).to_dict() for i in range(25)]
    with StacApi(["sentinel-2-l2a", "sentinel-1-grd"], items) as api:
        yield api


def test_stac_search_pages_and_filters(stac_api: StacApi) -> None:
    settings = load_settings(environ={}, stac_url=stac_api.url)
    items = catalog.search("sentinel-2-l2a", [14.0, 45.5, 16.0, 47.0], "2023-09-01", "2023-12-31",
                           backend="stac", settings=settings)
    assert len(items) == 25
    assert all(i.properties["proj:code"] == "EPSG:32633" for i in items)
    pages = [r for r in stac_api.requests if r[1] == "/search"]
    assert len(pages) >= 1
    limited = catalog.search("sentinel-2-l2a", [14.0, 45.5, 16.0, 47.0], "2023-09-01", "2023-12-31",
                             backend="stac", settings=settings, limit=7)
    assert len(limited) == 7
    cloudy = catalog.search("sentinel-2-l2a", [14.0, 45.5, 16.0, 47.0], "2023-09-01", "2023-12-31",
                            backend="stac", settings=settings, max_cloud_cover=30)
    assert cloudy and all(i.properties["eo:cloud_cover"] <= 30 for i in cloudy)
    narrow = catalog.search("sentinel-2-l2a", [14.1, 45.5, 14.5, 47.0], "2023-09-01", "2023-09-20",
                            backend="stac", settings=settings)
    assert {i.id for i in narrow} == {"S2A_MSIL2A_000", "S2A_MSIL2A_002"}


def test_stac_paging_with_small_pages(stac_api: StacApi) -> None:
    from workbench.catalog.stac import search_stac

    q = catalog.make_query("sentinel-2-l2a", [14.0, 45.5, 16.0, 47.0], "2023-09-01", "2023-12-31")
    before = len(stac_api.requests)
    items = search_stac(q, stac_api.url, page_size=4)
    assert len(items) == 25
    assert len([r for r in stac_api.requests[before:] if r[1] == "/search"]) == 7


def test_stac_unknown_collection_and_unreachable(stac_api: StacApi) -> None:
    from tests.conftest import free_port

    with pytest.raises(CatalogError, match="unknown collection"):
        catalog.search("sentinel-9", [14, 45, 16, 47], "2023-09-01", "2023-12-31", backend="stac",
                       settings=load_settings(environ={}, stac_url=stac_api.url))
    with pytest.raises(CatalogError, match="cannot open the STAC API"):
        catalog.search("sentinel-2-l2a", [14, 45, 16, 47], "2023-09-01", "2023-12-31", backend="stac",
                       settings=load_settings(environ={}, stac_url=f"http://127.0.0.1:{free_port()}", connect_timeout=2))


# ---------------------------------------------------------------- OData


def make_product(index: int, *, start: dt.datetime, lon: float = 14.5, cloud: float = 5.0,
                 collection: str = "SENTINEL-2", product_type: str = "S2MSI2A") -> dict[str, Any]:
    geom = shapely.geometry.box(lon, 46.0, lon + 1.0, 46.9)
    name = f"S2B_MSIL2A_{start:%Y%m%dT%H%M%S}_N0509_R{index:03d}_T33TVM.SAFE"
    return {
        "Id": f"id-{index:05d}", "Name": name, "Collection": collection, "Online": True,
        "ContentDate": {"Start": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                        "End": (start + dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")},
        "S3Path": f"/eodata/Sentinel-2/MSI/L2A/{start:%Y/%m/%d}/{name}",
        "GeoFootprint": shapely.geometry.mapping(geom),
        "Footprint": f"geography'SRID=4326;{geom.wkt}'",
        "Attributes": [
            {"@odata.type": "#OData.CSC.DoubleAttribute", "Name": "cloudCover", "Value": cloud, "ValueType": "Double"},
            {"@odata.type": "#OData.CSC.StringAttribute", "Name": "productType", "Value": product_type, "ValueType": "String"},
        ],
    }


def test_odata_filter_is_what_cdse_documents() -> None:
    q = catalog.make_query("sentinel-2-l2a", [14, 45.5, 16, 47], "2023-09-01", "2023-09-30", max_cloud_cover=40)
    text = odata_backend.build_filter(q)
    assert text.startswith("Collection/Name eq 'SENTINEL-2' and OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((14.0 45.5,16.0 45.5,16.0 47.0,14.0 47.0,14.0 45.5))')")
    assert "ContentDate/Start ge 2023-09-01T00:00:00.000Z" in text
    assert "ContentDate/Start le 2023-09-30T23:59:59.999Z" in text
    assert "att/OData.CSC.DoubleAttribute/Value le 40.00" in text
    assert parse_filter(text)["product_type"] == "S2MSI2A"


def test_odata_search_maps_products_with_s3_paths() -> None:
    products = [make_product(i, start=DAY0 + dt.timedelta(hours=i), cloud=float(i)) for i in range(30)]
    products.append(make_product(99, start=DAY0, product_type="S2MSI1C"))
    products.append(make_product(98, start=DAY0, lon=100.0))
    with ODataCatalogue(products) as server:
        items = catalog.search("sentinel-2-l2a", [14, 45.5, 16, 47], "2023-09-01", "2023-09-30", backend="odata",
                               settings=load_settings(environ={}, odata_url=server.url), max_cloud_cover=19.5)
        assert server.queries and all(q["$orderby"] == "ContentDate/Start asc" for q in server.queries)
    assert len(items) == 20
    first = items[0]
    assert first.assets["product"].href.startswith("s3://eodata/Sentinel-2/MSI/L2A/2023/09/01/")
    assert first.properties["eo:cloud_cover"] == 0.0
    assert first.collection_id == "sentinel-2-l2a"
    assert shapely.geometry.shape(first.geometry).bounds == (14.5, 46.0, 15.5, 46.9)


def test_odata_pages_past_the_skip_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a (shrunk) $skip cap, paging restarts from the last ContentDate and loses nothing."""
    monkeypatch.setattr(odata_backend, "MAX_SKIP", 20)
    products = [make_product(i, start=DAY0 + dt.timedelta(minutes=7 * i)) for i in range(57)]
    with ODataCatalogue(products, max_skip=20) as server:
        q = catalog.make_query("sentinel-2-l2a", [14, 45.5, 16, 47], "2023-09-01", "2023-09-30")
        items = odata_backend.search_odata(q, server.url, page_size=10)
        skips = [int(q["$skip"]) for q in server.queries]
    assert len(items) == 57 and len({i.id for i in items}) == 57
    assert max(skips) <= 20
    assert any("ge 2023-09-01T" in q["$filter"] and q["$skip"] == "0" for q in server.queries[1:])


def test_odata_errors() -> None:
    from tests.conftest import free_port

    with pytest.raises(CatalogError, match="unknown collection"):
        catalog.search("landsat-8", [14, 45, 16, 47], "2023-09-01", "2023-09-30", backend="odata",
                       settings=load_settings(environ={}))
    with pytest.raises(CatalogError, match="cannot reach"):
        catalog.search("sentinel-2-l2a", [14, 45, 16, 47], "2023-09-01", "2023-09-30", backend="odata",
                       settings=load_settings(environ={}, odata_url=f"http://127.0.0.1:{free_port()}/odata/v1",
                                              connect_timeout=2))
    with ODataCatalogue([], max_top=5) as server:
        with pytest.raises(CatalogError, match="HTTP 400"):
            odata_backend.search_odata(catalog.make_query("sentinel-2-l2a", [14, 45, 16, 47], "2023-09-01",
                                                          "2023-09-30"), server.url, page_size=50)


def test_odata_product_without_dates_is_an_error() -> None:
    with pytest.raises(CatalogError, match="Name/ContentDate"):
        odata_backend.product_to_item({"Name": "x"}, "sentinel-2-l2a")


def test_item_collection_round_trip(tmp_path: Path) -> None:
    from workbench.catalog.io import read_item_collection, write_item_collection

    path = write_item_collection([make_item(1), make_item(2)], tmp_path / "items.json")
    assert [i.id for i in read_item_collection(path)] == ["S2A_MSIL2A_001", "S2A_MSIL2A_002"]
    (tmp_path / "bad.json").write_text('{"type": "nope"}')
    with pytest.raises(CatalogError, match="not a STAC item collection"):
        read_item_collection(tmp_path / "bad.json")
