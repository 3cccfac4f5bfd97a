"""STAC API backend (pystac-client), following CDSE conventions (STAC 1.1, ``proj:code``)."""

from __future__ import annotations

from typing import Any

import pystac

from workbench.catalog.query import CatalogQuery, normalize_item
from workbench.errors import CatalogError

__all__ = ["search_stac", "cql2_filter"]


def cql2_filter(query: CatalogQuery) -> dict[str, Any] | None:
    """CQL2-JSON filter for the query's extra filters (``None`` when there are none)."""
    args: list[dict[str, Any]] = []
    if "max_cloud_cover" in query.filters:
        args.append({"op": "<=", "args": [{"property": "eo:cloud_cover"}, query.filters["max_cloud_cover"]]})
    if "product_type" in query.filters:
        args.append({"op": "=", "args": [{"property": "product:type"}, query.filters["product_type"]]})
    if "orbit_direction" in query.filters:
        args.append({"op": "=", "args": [{"property": "sat:orbit_state"}, query.filters["orbit_direction"]]})
    if not args:
        return None
    return args[0] if len(args) == 1 else {"op": "and", "args": args}


def search_stac(query: CatalogQuery, url: str, *, page_size: int = 100, timeout: float = 30.0) -> list[pystac.Item]:
    """Run ``query`` against the STAC API at ``url``, following ``next`` links page by page.

    Raises
    ------
    CatalogError
        When the API cannot be reached, does not know the collection, or answers badly.
    """
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    from workbench._quiet import quiet_logger

    try:
        with quiet_logger("urllib3.connectionpool"):  # one clear error below, not a warning per retry
            client = Client.open(url, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - APIError wraps HTTP and connection errors alike
        raise CatalogError(f"cannot open the STAC API at {url}: {exc}") from exc
    try:
        found = client.get_collection(query.collection)
    except Exception as exc:  # noqa: BLE001 - a 404 surfaces as APIError or KeyError depending on server
        raise CatalogError(f"unknown collection {query.collection!r} at STAC API {url}: {exc}") from exc
    if found is None:
        raise CatalogError(f"unknown collection {query.collection!r} at STAC API {url}")
    search = client.search(
        collections=[query.collection],
        bbox=list(query.bbox),
        datetime=query.datetime_range,
        limit=min(page_size, query.limit or page_size),
        max_items=query.limit,
        filter=cql2_filter(query),
        filter_lang="cql2-json" if query.filters else None,
    )
    try:
        return [normalize_item(item) for item in search.items()]
    except APIError as exc:
        raise CatalogError(f"STAC API {url} rejected the search: {exc}") from exc
