"""CDSE OData backend: builds the ``$filter``, pages under the 10,000 ``$skip`` cap, maps to STAC items."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pystac
import requests
import shapely.geometry
import shapely.wkt

from workbench.catalog.query import CatalogQuery
from workbench.errors import CatalogError

__all__ = ["COLLECTIONS", "build_filter", "product_to_item", "search_odata", "MAX_SKIP", "MAX_TOP"]

#: STAC collection id → (OData Collection/Name, productType attribute or None).
COLLECTIONS: dict[str, tuple[str, str | None]] = {
    "sentinel-1-grd": ("SENTINEL-1", "IW_GRDH_1S"),
    "sentinel-1-slc": ("SENTINEL-1", "IW_SLC__1S"),
    "sentinel-2-l1c": ("SENTINEL-2", "S2MSI1C"),
    "sentinel-2-l2a": ("SENTINEL-2", "S2MSI2A"),
    "sentinel-3-olci-l1-efr": ("SENTINEL-3", "OL_1_EFR___"),
}
MAX_SKIP = 10_000
MAX_TOP = 1_000


def _odata_time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _polygon_wkt(bbox: tuple[float, float, float, float]) -> str:
    w, s, e, n = bbox
    return f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))"


def build_filter(query: CatalogQuery, *, start: dt.datetime | None = None) -> str:
    """The OData ``$filter`` for a query (``start`` overrides the query's start, for paging on)."""
    if query.collection not in COLLECTIONS:
        raise CatalogError(f"unknown collection {query.collection!r} for OData; known: {sorted(COLLECTIONS)}")
    name, product_type = COLLECTIONS[query.collection]
    product_type = query.filters.get("product_type", product_type)
    t0 = start or query.start
    parts = [
        f"Collection/Name eq '{name}'",
        f"OData.CSC.Intersects(area=geography'SRID=4326;{_polygon_wkt(query.bbox)}')",
        f"ContentDate/Start ge {_odata_time(t0)}",
        f"ContentDate/Start le {_odata_time(query.end)}",
    ]
    if product_type:
        parts.append(
            "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
            f"att/OData.CSC.StringAttribute/Value eq '{product_type}')"
        )
    if "max_cloud_cover" in query.filters:
        parts.append(
            "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
            f"att/OData.CSC.DoubleAttribute/Value le {float(query.filters['max_cloud_cover']):.2f})"
        )
    if "orbit_direction" in query.filters:
        parts.append(
            "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'orbitDirection' and "
            f"att/OData.CSC.StringAttribute/Value eq '{str(query.filters['orbit_direction']).upper()}')"
        )
    return " and ".join(parts)


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _geometry(product: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(product.get("GeoFootprint"), dict):
        return product["GeoFootprint"]
    footprint = product.get("Footprint")
    if isinstance(footprint, str) and ";" in footprint:
        wkt = footprint.split(";", 1)[1].rstrip("'")
        return shapely.geometry.mapping(shapely.wkt.loads(wkt))
    return None


def product_to_item(product: dict[str, Any], collection: str) -> pystac.Item:
    """Map one OData product to a STAC-like item whose ``product`` asset is its ``S3Path``."""
    try:
        name = product["Name"]
        start = _parse_time(product["ContentDate"]["Start"])
        end = _parse_time(product["ContentDate"]["End"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"OData product lacks Name/ContentDate: {exc!r} in {str(product)[:200]}") from exc
    geometry = _geometry(product)
    bbox = list(shapely.geometry.shape(geometry).bounds) if geometry else None
    props: dict[str, Any] = {
        "start_datetime": start.isoformat(),
        "end_datetime": end.isoformat(),
        "cdse:id": product.get("Id"),
        "cdse:online": product.get("Online"),
    }
    for attribute in product.get("Attributes", []) or []:
        if attribute.get("Name") == "cloudCover":
            props["eo:cloud_cover"] = float(attribute["Value"])
        elif attribute.get("Name") == "productType":
            props["product:type"] = attribute["Value"]
        elif attribute.get("Name") == "orbitDirection":
            props["sat:orbit_state"] = str(attribute["Value"]).lower()
    item = pystac.Item(
        id=name.removesuffix(".SAFE").removesuffix(".SEN3"),
        geometry=geometry,
        bbox=bbox,
        datetime=start,
        properties=props,
        collection=collection,
    )
    s3_path = product.get("S3Path")
    if s3_path:
        item.add_asset(
            "product",
            pystac.Asset(href="s3:/" + s3_path if s3_path.startswith("/") else f"s3://{s3_path}",
                         media_type="application/x-safe" if name.endswith(".SAFE") else None,
                         roles=["data"], title=name),
        )
    return item


def _pages(
    session: requests.Session, url: str, query: CatalogQuery, *, page_size: int, timeout: float
) -> Iterator[dict[str, Any]]:
    """Products in ``ContentDate/Start`` order; past the ``$skip`` cap, restarts from the last start seen."""
    start: dt.datetime | None = None
    while True:
        skip = 0
        last_start: dt.datetime | None = None
        while skip < MAX_SKIP:
            params = {
                "$filter": build_filter(query, start=start),
                "$orderby": "ContentDate/Start asc",
                "$top": str(min(page_size, MAX_TOP)),
                "$skip": str(skip),
                "$expand": "Attributes",
            }
            try:
                response = session.get(f"{url.rstrip('/')}/Products", params=params, timeout=timeout)
            except requests.RequestException as exc:
                raise CatalogError(f"cannot reach the OData catalogue at {url}: {exc}") from exc
            if response.status_code != 200:
                raise CatalogError(
                    f"OData catalogue {url} answered HTTP {response.status_code}: {response.text[:300]}"
                )
            try:
                products = response.json()["value"]
            except (ValueError, KeyError) as exc:
                raise CatalogError(f"OData catalogue {url} answered something that is not OData JSON") from exc
            yield from products
            if len(products) < min(page_size, MAX_TOP):
                return
            last_start = _parse_time(products[-1]["ContentDate"]["Start"])
            skip += len(products)
        if last_start is None or last_start == start:
            raise CatalogError(
                f"more than {MAX_SKIP} products share the start time {start}; narrow the search"
            )
        start = last_start


def search_odata(
    query: CatalogQuery, url: str, *, page_size: int = 100, timeout: float = 30.0
) -> list[pystac.Item]:
    """Run ``query`` against the CDSE OData API at ``url`` (``.../odata/v1``)."""
    seen: set[str] = set()
    items: list[pystac.Item] = []
    with requests.Session() as session:
        for product in _pages(session, url, query, page_size=page_size, timeout=timeout):
            key = str(product.get("Id") or product.get("Name"))
            if key in seen:
                continue
            seen.add(key)
            items.append(product_to_item(product, query.collection))
            if query.limit and len(items) >= query.limit:
                break
    return items
