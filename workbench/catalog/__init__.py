"""Catalogue search over three backends: the local sample catalogue, a STAC API, CDSE OData.

>>> from workbench.catalog import search
>>> items = search("sentinel-2-l2a", [14, 45.5, 16, 47], "2023-09-01", "2024-08-31")
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Iterable

import pystac

from workbench.catalog.local import add_items, collections, search_local
from workbench.catalog.odata import COLLECTIONS as ODATA_COLLECTIONS
from workbench.catalog.odata import search_odata
from workbench.catalog.query import CatalogQuery, item_epsg, make_query, normalize_item
from workbench.catalog.stac import search_stac
from workbench.config import Settings, load_settings
from workbench.errors import CatalogError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = [
    "search",
    "semantic_search",
    "require_items",
    "EmptySearchError",
    "add_items",
    "collections",
    "items_to_geodataframe",
    "CatalogQuery",
    "make_query",
    "item_epsg",
    "normalize_item",
]


class EmptySearchError(CatalogError):
    """A catalogue search found nothing where something was needed."""


def require_items(
    items: list[pystac.Item],
    collection: str,
    bbox: Iterable[float],
    start: str | dt.date | dt.datetime,
    end: str | dt.date | dt.datetime,
    *,
    backend: str | None = None,
    settings: Settings | None = None,
) -> list[pystac.Item]:
    """``items`` when there are any; else raise :class:`EmptySearchError` saying what the search covered.

    For the local sample catalogue the message gives the footprint and time span
    the collection really has, so the user can move the search box.
    """
    if items:
        return items
    settings = settings or load_settings()
    backend = backend or settings.catalog_backend
    box = [round(float(v), 4) for v in bbox]
    message = f"the {backend} catalogue has no {collection} items in {box} between {start} and {end}"
    if backend == "local":
        from workbench.catalog.local import extent

        try:
            found = extent(settings.local_catalog_path, collection)
        except CatalogError:
            found = None
        if found is not None:
            (w, s, e, n), t0, t1 = found
            message += (f"; the sample collection covers [{w:.3f}, {s:.3f}, {e:.3f}, {n:.3f}] "
                        f"from {t0.date()} to {t1.date()}")
    raise EmptySearchError(message + " (set allow_empty to go on with nothing)")


def search(
    collection: str,
    bbox: Iterable[float],
    start: str | dt.date | dt.datetime,
    end: str | dt.date | dt.datetime,
    *,
    backend: str | None = None,
    limit: int | None = None,
    settings: Settings | None = None,
    **filters: Any,
) -> list[pystac.Item]:
    """Search a catalogue for items of ``collection`` over ``bbox`` between ``start`` and ``end``.

    Parameters
    ----------
    collection
        CDSE STAC collection id, e.g. ``sentinel-2-l2a`` or ``sentinel-1-grd``.
    bbox
        (west, south, east, north) in degrees.
    start, end
        ISO dates/datetimes; a bare ``end`` date includes that whole day.
    backend
        ``local``, ``stac`` or ``odata``; default the ``catalog_backend`` setting.
    limit
        Maximum number of items.
    settings
        Settings to use (default :func:`workbench.config.load_settings`).
    **filters
        ``max_cloud_cover`` (percent), ``product_type``, ``orbit_direction``.

    Returns
    -------
    list of pystac.Item
        Items with ``proj:code`` set (older ``proj:epsg`` items are normalised).

    Raises
    ------
    CatalogError
        On a bad bbox, an end before the start, an unknown collection or
        backend, or a service that cannot be reached or answers badly.
    """
    settings = settings or load_settings()
    backend = backend or settings.catalog_backend
    known = ODATA_COLLECTIONS if backend == "odata" else None
    query = make_query(collection, bbox, start, end, limit=limit, known_collections=known, **filters)
    if backend == "local":
        items = search_local(query, settings.local_catalog_path)
    elif backend == "stac":
        items = search_stac(query, settings.stac_url, timeout=settings.connect_timeout)
    elif backend == "odata":
        items = search_odata(query, settings.odata_url, timeout=settings.connect_timeout)
    else:
        raise CatalogError(f"unknown catalogue backend {backend!r}; expected 'local', 'stac' or 'odata'")
    from workbench.pipeline import record_usage

    record_usage("catalogue_items", {"backend": backend, "collection": collection,
                                     "ids": [item.id for item in items]})
    return items


def items_to_geodataframe(items: Iterable[pystac.Item]) -> "gpd.GeoDataFrame":
    """Footprints and key properties of items as a GeoDataFrame (EPSG:4326), for tables and maps."""
    import geopandas as gpd
    import shapely.geometry

    rows = []
    for item in items:
        rows.append(
            {
                "id": item.id,
                "collection": item.collection_id,
                "datetime": (item.datetime or item.common_metadata.start_datetime),
                "cloud_cover": item.properties.get("eo:cloud_cover"),
                "epsg": item_epsg(item),
                "assets": ", ".join(sorted(item.assets)),
                "geometry": shapely.geometry.shape(item.geometry) if item.geometry else None,
            }
        )
    columns = ["id", "collection", "datetime", "cloud_cover", "epsg", "assets", "geometry"]
    return gpd.GeoDataFrame(rows, columns=columns, geometry="geometry", crs="EPSG:4326")


def __getattr__(name: str) -> object:
    """``semantic_search`` on first use (it needs the GeoSPARQL store, a heavier import)."""
    if name == "semantic_search":
        from workbench.catalog.semantic import semantic_search

        globals()["semantic_search"] = semantic_search
        return semantic_search
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
