"""Validation of catalogue queries and normalisation of STAC items (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pystac

from workbench.errors import CatalogError

__all__ = ["CatalogQuery", "make_query", "parse_time", "normalize_item", "item_epsg", "KNOWN_FILTERS"]

KNOWN_FILTERS = ("max_cloud_cover", "product_type", "orbit_direction")


def parse_time(value: str | dt.date | dt.datetime, *, name: str, end_of_day: bool = False) -> dt.datetime:
    """Parse an ISO date or datetime into an aware UTC datetime.

    A bare date means the start of that day, or its last microsecond when
    ``end_of_day`` is true (so ``end="2024-08-31"`` includes that day).
    """
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time.max if end_of_day else dt.time.min)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                day = dt.date.fromisoformat(text)
                parsed = dt.datetime.combine(day, dt.time.max if end_of_day else dt.time.min)
            else:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise CatalogError(f"{name} {value!r} is not an ISO date (YYYY-MM-DD) or datetime") from None
    else:
        raise CatalogError(f"{name} must be an ISO date string or datetime, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def _bbox(value: Any) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in value)
    except (TypeError, ValueError):
        raise CatalogError(f"bbox {value!r} must be four numbers: west, south, east, north") from None
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise CatalogError(f"bbox {value!r}: longitudes must lie in [-180, 180]")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise CatalogError(f"bbox {value!r}: latitudes must lie in [-90, 90]")
    if west > east:
        raise CatalogError(
            f"bbox {value!r}: west ({west}) is east of east ({east}); "
            "split a box that crosses the antimeridian into two searches"
        )
    if south > north:
        raise CatalogError(f"bbox {value!r}: south ({south}) is north of north ({north})")
    return west, south, east, north


@dataclass(frozen=True)
class CatalogQuery:
    """A validated catalogue search.

    Attributes
    ----------
    collection
        Collection id in CDSE STAC naming (``sentinel-2-l2a``, ``sentinel-1-grd``...).
    bbox
        (west, south, east, north) in degrees, EPSG:4326.
    start, end
        Aware UTC datetimes, ``start <= end``.
    limit
        Maximum number of items, or ``None`` for all.
    filters
        Extra filters, among :data:`KNOWN_FILTERS`.
    """

    collection: str
    bbox: tuple[float, float, float, float]
    start: dt.datetime
    end: dt.datetime
    limit: int | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def datetime_range(self) -> str:
        """The STAC ``datetime`` interval, RFC 3339."""
        return f"{_rfc3339(self.start)}/{_rfc3339(self.end)}"


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def make_query(
    collection: str,
    bbox: Iterable[float],
    start: str | dt.date | dt.datetime,
    end: str | dt.date | dt.datetime,
    *,
    limit: int | None = None,
    known_collections: Iterable[str] | None = None,
    **filters: Any,
) -> CatalogQuery:
    """Validate search arguments into a :class:`CatalogQuery`.

    Raises
    ------
    CatalogError
        Bad bbox (west > east, out of range), end before start, unknown
        collection (when ``known_collections`` is given), unknown filter,
        or a non-positive limit.
    """
    if not isinstance(collection, str) or not collection:
        raise CatalogError(f"collection must be a non-empty string, got {collection!r}")
    if known_collections is not None:
        known = sorted(known_collections)
        if collection not in known:
            raise CatalogError(f"unknown collection {collection!r}; this catalogue has {known}")
    box = _bbox(bbox)
    t0 = parse_time(start, name="start")
    t1 = parse_time(end, name="end", end_of_day=True)
    if t1 < t0:
        raise CatalogError(f"end {end!r} is before start {start!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise CatalogError(f"limit must be a positive integer, got {limit!r}")
    unknown = set(filters) - set(KNOWN_FILTERS)
    if unknown:
        raise CatalogError(f"unknown filter(s) {sorted(unknown)}; known filters: {list(KNOWN_FILTERS)}")
    if "max_cloud_cover" in filters:
        cc = filters["max_cloud_cover"]
        if isinstance(cc, bool) or not isinstance(cc, (int, float)) or not 0 <= cc <= 100:
            raise CatalogError(f"max_cloud_cover must be a number in [0, 100], got {cc!r}")
    return CatalogQuery(collection, box, t0, t1, limit, dict(filters))


def item_epsg(item: pystac.Item) -> int | None:
    """EPSG code of an item: ``proj:code`` (STAC projection v2) or the older ``proj:epsg``."""
    code = item.properties.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    epsg = item.properties.get("proj:epsg")
    return int(epsg) if epsg is not None else None


def normalize_item(item: pystac.Item) -> pystac.Item:
    """Give older ``proj:epsg`` items (and their assets) the ``proj:code`` that newer code reads."""
    for props in [item.properties, *(a.extra_fields for a in item.assets.values())]:
        if "proj:code" not in props and props.get("proj:epsg") is not None:
            props["proj:code"] = f"EPSG:{int(props['proj:epsg'])}"
    return item
