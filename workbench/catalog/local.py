"""Local static STAC catalogue (pystac) of the sample data: the embedded default backend."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import pystac
import shapely.geometry

from workbench.catalog.query import CatalogQuery, normalize_item
from workbench.errors import CatalogError
from workbench.storage import file_lock

__all__ = ["add_items", "collections", "search_local"]

_SPATIAL_ANY = pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]])


@contextlib.contextmanager
def _locked(catalog_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the catalogue so that two writers never interleave."""
    with file_lock(catalog_path.parent.with_name(catalog_path.parent.name + ".lock")):
        yield


def _read(catalog_path: Path) -> pystac.Catalog:
    try:
        return pystac.Catalog.from_file(str(catalog_path))
    except FileNotFoundError:
        raise CatalogError(
            f"no local catalogue at {catalog_path}; build the sample data first "
            "(run notebooks/00_setup.ipynb, or `python -m workbench.samples.build`)"
        ) from None
    except (ValueError, KeyError, pystac.STACError, pystac.errors.STACTypeError) as exc:
        raise CatalogError(f"local catalogue {catalog_path} is not a valid STAC catalogue: {exc}") from exc


def add_items(
    catalog_path: str | os.PathLike[str],
    collection_id: str,
    items: Iterable[pystac.Item],
    *,
    description: str = "",
) -> int:
    """Add (or replace, by id) items in a collection of the local catalogue.

    The catalogue is created when missing. It is written to a sibling
    temporary folder and swapped into place, under a file lock, so readers
    never see a half-written catalogue and concurrent writers do not lose
    items.

    Parameters
    ----------
    catalog_path
        Path of ``catalog.json``.
    collection_id
        Collection to add to (created when missing).
    items
        Items whose asset hrefs are absolute paths or URLs.
    description
        Description of a newly created collection.

    Returns
    -------
    int
        Number of items in the collection afterwards.
    """
    path = Path(catalog_path).resolve()
    new_items = [normalize_item(i.clone()) for i in items]
    for item in new_items:
        for key, asset in item.assets.items():
            href = asset.href
            if "://" not in href and not os.path.isabs(href):
                raise CatalogError(f"item {item.id!r} asset {key!r}: href {href!r} must be absolute")
    with _locked(path):
        if path.exists():
            catalog = _read(path)
            catalog.make_all_asset_hrefs_absolute()
        else:
            catalog = pystac.Catalog(
                id="workbench-samples",
                description="Sample data of the ExtremeEarth Workbench (real metadata, simulated pixels)",
            )
        collection = catalog.get_child(collection_id)
        if collection is None:
            collection = pystac.Collection(
                id=collection_id,
                description=description or collection_id,
                extent=pystac.Extent(_SPATIAL_ANY, pystac.TemporalExtent([[None, None]])),
                license="other",
            )
            catalog.add_child(collection)
        assert isinstance(collection, pystac.Collection)
        for item in new_items:
            if collection.get_item(item.id) is not None:
                collection.remove_item(item.id)
            collection.add_item(item)
        all_items = list(collection.get_items())
        if all_items:
            collection.extent = pystac.Extent.from_items(all_items)
        tmp_dir = path.parent.with_name(f".{path.parent.name}-{uuid.uuid4().hex}-tmp")
        catalog.normalize_hrefs(str(tmp_dir))
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        old_dir = path.parent.with_name(f".{path.parent.name}-{uuid.uuid4().hex}-old")
        if path.parent.exists():
            os.replace(path.parent, old_dir)
        os.replace(tmp_dir, path.parent)
        shutil.rmtree(old_dir, ignore_errors=True)
        return len(all_items)


def collections(catalog_path: str | os.PathLike[str]) -> list[str]:
    """Ids of the collections in the local catalogue."""
    return sorted(c.id for c in _read(Path(catalog_path)).get_children())


def _in_time(item: pystac.Item, start: dt.datetime, end: dt.datetime) -> bool:
    t0 = item.common_metadata.start_datetime or item.datetime
    t1 = item.common_metadata.end_datetime or item.datetime
    if t0 is None or t1 is None:
        return False
    return t0 <= end and t1 >= start


def search_local(query: CatalogQuery, catalog_path: str | os.PathLike[str]) -> list[pystac.Item]:
    """Items of ``query.collection`` intersecting the bbox and time range, sorted by time."""
    catalog = _read(Path(catalog_path))
    collection = catalog.get_child(query.collection)
    if collection is None:
        known = sorted(c.id for c in catalog.get_children())
        raise CatalogError(f"unknown collection {query.collection!r}; the local catalogue has {known}")
    box = shapely.geometry.box(*query.bbox)
    max_cc = query.filters.get("max_cloud_cover")
    found = []
    for item in collection.get_items():
        if item.geometry is None or not shapely.geometry.shape(item.geometry).intersects(box):
            continue
        if not _in_time(item, query.start, query.end):
            continue
        if max_cc is not None and item.properties.get("eo:cloud_cover", 0.0) > max_cc:
            continue
        if "product_type" in query.filters and item.properties.get("product:type") != query.filters["product_type"]:
            continue
        if "orbit_direction" in query.filters and item.properties.get("sat:orbit_state") != query.filters["orbit_direction"]:
            continue
        item.make_asset_hrefs_absolute()
        found.append(normalize_item(item))
    found.sort(key=lambda i: (i.datetime or i.common_metadata.start_datetime, i.id))
    return found[: query.limit] if query.limit else found


def extent(catalog_path: str | os.PathLike[str], collection: str) -> tuple[list[float], dt.datetime, dt.datetime] | None:
    """Bounding box (west, south, east, north) and time span of a local collection's items, or None if empty."""
    catalog = _read(Path(catalog_path))
    child = catalog.get_child(collection)
    if child is None:
        return None
    boxes, times = [], []
    for item in child.get_items():
        if item.bbox:
            boxes.append(item.bbox[:4] if len(item.bbox) == 4 else [item.bbox[0], item.bbox[1], item.bbox[3], item.bbox[4]])
        for t in (item.common_metadata.start_datetime or item.datetime, item.common_metadata.end_datetime or item.datetime):
            if t is not None:
                times.append(t)
    if not boxes or not times:
        return None
    west, south = min(b[0] for b in boxes), min(b[1] for b in boxes)
    east, north = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return [west, south, east, north], min(times), max(times)
