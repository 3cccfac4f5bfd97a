"""Read and write item collections (GeoJSON FeatureCollections of STAC items) atomically."""

from __future__ import annotations

import json
import os
from typing import Iterable

import pystac

from workbench.errors import CatalogError
from workbench.storage import read_bytes, write_bytes

__all__ = ["write_item_collection", "read_item_collection"]


def write_item_collection(items: Iterable[pystac.Item], url: str | os.PathLike[str]) -> str:
    """Write items as one GeoJSON FeatureCollection to ``url`` (local or ``s3://``); returns ``url``."""
    collection = pystac.ItemCollection(list(items))
    write_bytes(url, json.dumps(collection.to_dict(transform_hrefs=False), indent=1).encode())
    return str(url)


def read_item_collection(url: str | os.PathLike[str]) -> list[pystac.Item]:
    """Read the items written by :func:`write_item_collection`."""
    data = read_bytes(url)
    try:
        return list(pystac.ItemCollection.from_dict(json.loads(data)))
    except (ValueError, KeyError, TypeError, pystac.STACError, pystac.errors.STACTypeError) as exc:
        raise CatalogError(f"{url} is not a STAC item collection: {exc}") from exc
