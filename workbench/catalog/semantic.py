"""Semantic catalogue: "which source images show class C inside this area (and time)?", answered in GeoSPARQL.

Every product a processor publishes puts its polygons in the GeoSPARQL store
(:mod:`workbench.processors.products`), each observation — a sea-ice polygon
(``polar:SeaIceObservation``) or a labelled parcel (``foodsec:Parcel``) — with its class
and the catalogue id of the image it was classified from (``hasImageID``).
:func:`semantic_search` asks the store::

    PREFIX geo:  <http://www.opengis.net/ont/geosparql#>
    PREFIX geof: <http://www.opengis.net/def/function/geosparql/>
    SELECT ?image (COUNT(DISTINCT ?obs) AS ?observations) WHERE {
      ?obs <CLASS_PROPERTY> <CLASS_IRI> ;          # polar:hasIceClass polar:DeformedIce
           <IMAGE_PROPERTY> ?image ;                # polar:hasImageID
           geo:hasGeometry ?g .
      ?g geo:asWKT ?wkt .
      FILTER(geof:sfIntersects(?wkt, "<http://www.opengis.net/def/crs/OGC/1.3/CRS84> POLYGON ((...))"^^geo:wktLiteral))
    } GROUP BY ?image ORDER BY ?image

and resolves the image ids to items of the local catalogue; ``start``/``end`` keep the
images acquired in that time range (the items' datetimes).
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pystac

    from workbench.linked.store import GeoStore

__all__ = ["CLASS_TERMS", "SemanticHit", "class_iri", "resolve_items", "semantic_query", "semantic_search"]

POLAR = "http://extremeearth.eu/ontology/polar#"
FOODSEC = "http://extremeearth.eu/ontology/foodsec#"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def _terms() -> dict[str, tuple[str, str, str]]:
    """Accepted class names → (class IRI, class property, image property)."""
    from workbench.linked.products import ICE_CLASSES, local_name
    from workbench.samples.sentinel2 import CROP_CLASSES

    terms: dict[str, tuple[str, str, str]] = {}
    polar = (f"{POLAR}hasIceClass", f"{POLAR}hasImageID")
    food = (f"{FOODSEC}hasCropType", f"{FOODSEC}hasImageID")
    for label, local in ICE_CLASSES.items():
        for key in (label, local, local_name(label)):
            terms[key.lower()] = (f"{POLAR}{local}", *polar)
    for label in CROP_CLASSES:
        local = local_name(label)
        for key in (label, local, label.replace(" ", "_")):
            terms[key.lower()] = (f"{FOODSEC}{local}", *food)
    return terms


CLASS_TERMS: dict[str, tuple[str, str, str]] = {}


def class_iri(class_name: str) -> tuple[str, str, str]:
    """(class IRI, class property, image property) of an ice or crop class name.

    Accepts the labels of the processors (``deformed_ice``, ``winter wheat``), the ontology
    local names (``DeformedIce``, ``WinterWheat``) or a full ontology IRI.
    """
    from workbench.processors.base import InputError

    if not CLASS_TERMS:
        CLASS_TERMS.update(_terms())
    if not isinstance(class_name, str) or not class_name.strip():
        raise InputError("class_name", f"expected an ice or crop class name, got {class_name!r}")
    name = class_name.strip()
    for ns, prop, image in ((POLAR, "hasIceClass", "hasImageID"), (FOODSEC, "hasCropType", "hasImageID")):
        if name.startswith(ns):
            if any(t[0] == name for t in CLASS_TERMS.values()):
                return name, f"{ns}{prop}", f"{ns}{image}"
            raise InputError("class_name", f"{name} is not a class of the ontology")
    found = CLASS_TERMS.get(name.lower())
    if found is None:
        close = difflib.get_close_matches(name.lower(), list(CLASS_TERMS), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError("class_name", f"unknown class {name!r}{hint} (ice classes such as 'deformed_ice', "
                                       "crop classes such as 'winter wheat')")
    return found


def semantic_query(class_name: str, region: Any) -> str:
    """The GeoSPARQL query of :func:`semantic_search` (``region``: any form the processors accept)."""
    from workbench.processors.base import _region

    iri, class_prop, image_prop = class_iri(class_name)
    geom = _region(region)
    wkt = geom.wkt
    return (
        "PREFIX geo: <http://www.opengis.net/ont/geosparql#>\n"
        "PREFIX geof: <http://www.opengis.net/def/function/geosparql/>\n"
        "SELECT ?image (COUNT(DISTINCT ?obs) AS ?observations) WHERE {\n"
        f"  ?obs <{class_prop}> <{iri}> ;\n"
        f"       <{image_prop}> ?image ;\n"
        "       geo:hasGeometry ?g .\n"
        "  ?g geo:asWKT ?wkt .\n"
        f'  FILTER(geof:sfIntersects(?wkt, "<{CRS84}> {wkt}"^^geo:wktLiteral))\n'
        "} GROUP BY ?image ORDER BY ?image"
    )


@dataclass(frozen=True)
class SemanticHit:
    """One source image showing the class in the area."""

    image_id: str
    observations: int
    item: pystac.Item | None

    @property
    def collection(self) -> str | None:
        """Catalogue collection of the image (None when it is not in the catalogue)."""
        return self.item.collection_id if self.item is not None else None

    @property
    def datetime(self) -> dt.datetime | None:
        """Acquisition time of the image."""
        if self.item is None:
            return None
        return self.item.datetime or self.item.common_metadata.start_datetime


def resolve_items(ids: list[str], catalog_path: str | os.PathLike[str]) -> dict[str, pystac.Item]:
    """Items of the local catalogue with these ids (in any collection)."""
    import pystac

    wanted = set(ids)
    out: dict[str, pystac.Item] = {}
    try:
        catalog = pystac.Catalog.from_file(str(catalog_path))
    except FileNotFoundError:
        return out
    for collection in catalog.get_children():
        for item in collection.get_items():
            if item.id in wanted and item.id not in out:
                item.make_asset_hrefs_absolute()
                out[item.id] = item
    return out


def _value(term: Any) -> Any:
    return getattr(term, "value", term)


def semantic_search(
    class_name: str,
    *,
    region: Any,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    store: GeoStore | str | os.PathLike[str] | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
) -> list[SemanticHit]:
    """Source images showing ``class_name`` inside ``region`` (and acquired between ``start`` and ``end``).

    Parameters
    ----------
    class_name
        Ice class (``deformed_ice``, ``DeformedIce``, ``water``...) or crop class (``winter wheat``...).
    region
        Area in EPSG:4326: ``{"bbox": [w, s, e, n]}``, a GeoJSON Polygon/MultiPolygon or a shapely geometry.
    start, end
        Keep images acquired in this time range (inclusive dates); ``None``: any time.
    store
        The GeoSPARQL store (a :class:`~workbench.linked.store.GeoStore` or its directory); default
        the products' store of the project (:func:`workbench.processors.products.product_store_path`).
    catalog_path
        ``catalog.json`` resolving the image ids (default: the project's local catalogue).

    Returns
    -------
    list of SemanticHit
        One per image, sorted by acquisition time then id; ``item`` is ``None`` for an id
        the catalogue does not hold (such images are kept only when no time range is given).

    Raises
    ------
    workbench.processors.base.InputError
        Unknown class, bad region or dates (``.input`` names it).
    """
    from workbench.config import load_settings
    from workbench.linked.store import GeoStore
    from workbench.processors.base import InputError, _date
    from workbench.processors.products import with_product_store

    query = semantic_query(class_name, region)
    t0 = _date(start, "start") if start is not None else None
    t1 = _date(end, "end") if end is not None else None
    if t0 is not None and t1 is not None and t1 < t0:
        raise InputError("end", f"the time range is empty: end {t1} is before start {t0}")
    if isinstance(store, GeoStore):
        rows = store.select(query)
    else:
        rows = with_product_store(lambda opened: opened.select(query), Path(store) if store is not None else None)
    counts = {str(_value(r["image"])): int(_value(r["observations"])) for r in rows}
    items = resolve_items(list(counts), catalog_path or load_settings().local_catalog_path)
    hits = []
    for image_id, n in counts.items():
        item = items.get(image_id)
        hit = SemanticHit(image_id=image_id, observations=n, item=item)
        if t0 is not None or t1 is not None:
            when = hit.datetime
            if when is None:
                continue
            day = when.date()
            if (t0 is not None and day < t0) or (t1 is not None and day > t1):
                continue
        hits.append(hit)
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    hits.sort(key=lambda h: (h.datetime or far, h.image_id))
    return hits
