"""Source metadata of a member, probed with SPARQL and cached on disk.

What one member holds, as the federator's source selection needs it:

* its predicates and classes, with triple / instance counts (cardinality estimates);
* per predicate, the *authorities* of its subjects and IRI objects (the IRI up to its
  second path segment, e.g. ``http://extremeearth.eu/synthetic/land``), as in
  HiBISCuS: a join variable shared by two patterns can only match at members whose
  authorities meet (``None``: too many to list, nothing is pruned);
* per geometry predicate (one whose objects are ``geo:wktLiteral``/``geo:gmlLiteral``),
  the bounding box of its geometries and a coarse occupancy grid over that box
  (``GRID`` x ``GRID`` cells), as Semagrow's ``svd:boundingWKT`` but finer;
* whether it evaluates the ``geof:`` functions (an ASK probe).

Probes are plain SPARQL 1.1 (aggregates, ``REPLACE``, ``datatype``), so any standard
endpoint can be described. :class:`MetadataCache` keeps the descriptions in memory
and, when given a folder, in one JSON file per member URL (written atomically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from workbench.linked.federation.client import MemberClient
from workbench.linked.federation.errors import MemberError
from workbench.linked.geometry import GeometryLiteralError, parse_literal
from workbench.linked.vocab import GEOF, GML_LITERAL, RDF, WKT_LITERAL

__all__ = ["GRID", "GeometryExtent", "MetadataCache", "SourceMetadata", "authority", "probe"]

log = logging.getLogger(__name__)

#: cells per side of a geometry predicate's occupancy grid
GRID = 16
#: most authorities kept per predicate and position; past it, ``None`` (unknown: no pruning)
MAX_AUTHORITIES = 64
#: geometry literals fetched per request while probing extents
PAGE = 20_000
_AUTHORITY_REGEX = r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/#?]*(/[^/#?]*){0,2}).*$"


def authority(iri: str) -> str:
    """The authority of an IRI as the probes compute it: scheme, host and up to two path segments."""
    import re

    match = re.match(_AUTHORITY_REGEX, iri)
    return match.group(1) if match else iri


@dataclass
class GeometryExtent:
    """Where a member's geometries of one predicate lie (CRS84 degrees)."""

    bbox: tuple[float, float, float, float]
    grid: list[list[int]]  # GRID x GRID occupancy over bbox, rows = y
    count: int

    def boxes(self) -> np.ndarray:
        """The occupied cells as an array of shapely boxes."""
        minx, miny, maxx, maxy = self.bbox
        w = (maxx - minx) / GRID or 1e-9
        h = (maxy - miny) / GRID or 1e-9
        cells = [(minx + i * w, miny + j * h, minx + (i + 1) * w, miny + (j + 1) * h)
                 for j, row in enumerate(self.grid) for i, used in enumerate(row) if used]
        if not cells:
            return np.array([], dtype=object)
        c = np.array(cells)
        return shapely.box(c[:, 0], c[:, 1], c[:, 2], c[:, 3])

    def may_meet(self, region: Any) -> bool:
        """Whether any occupied cell touches ``region`` (a shapely geometry, CRS84)."""
        minx, miny, maxx, maxy = region.bounds
        bx = self.bbox
        if minx > bx[2] or maxx < bx[0] or miny > bx[3] or maxy < bx[1]:
            return False
        cells = self.boxes()
        return bool(len(cells)) and bool(shapely.intersects(cells, region).any())

    def region(self) -> Any:
        """The union of the occupied cells (a shapely geometry; computed once)."""
        cached = self.__dict__.get("_region")
        if cached is None:
            cells = self.boxes()
            cached = shapely.union_all(cells) if len(cells) else shapely.Polygon()
            self.__dict__["_region"] = cached
        return cached


@dataclass
class SourceMetadata:
    """What the federator knows about one member (see the module docstring)."""

    url: str
    predicates: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    subject_authorities: dict[str, list[str] | None] = field(default_factory=dict)
    object_authorities: dict[str, list[str] | None] = field(default_factory=dict)
    extents: dict[str, GeometryExtent] = field(default_factory=dict)
    geosparql: bool = False
    triples: int = 0
    probed_at: float = 0.0
    complete: bool = True  # False: a probe failed, source selection must ASK

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SourceMetadata:
        """The inverse of :meth:`to_json`."""
        doc = dict(doc)
        doc["extents"] = {p: GeometryExtent(tuple(e["bbox"]), e["grid"], e["count"])  # type: ignore[arg-type]
                          for p, e in doc.get("extents", {}).items()}
        return cls(**doc)


def _count(value: Any) -> int:
    return int(str(value)) if value is not None else 0


def _grid(geoms: np.ndarray) -> GeometryExtent:
    bounds = shapely.bounds(geoms)
    minx, miny = float(np.nanmin(bounds[:, 0])), float(np.nanmin(bounds[:, 1]))
    maxx, maxy = float(np.nanmax(bounds[:, 2])), float(np.nanmax(bounds[:, 3]))
    w = (maxx - minx) / GRID or 1e-9
    h = (maxy - miny) / GRID or 1e-9
    grid = np.zeros((GRID, GRID), dtype=bool)
    i0 = np.clip(((bounds[:, 0] - minx) / w).astype(int), 0, GRID - 1)
    i1 = np.clip(((bounds[:, 2] - minx) / w).astype(int), 0, GRID - 1)
    j0 = np.clip(((bounds[:, 1] - miny) / h).astype(int), 0, GRID - 1)
    j1 = np.clip(((bounds[:, 3] - miny) / h).astype(int), 0, GRID - 1)
    for a, b, c, d in zip(i0, i1, j0, j1):  # cells of each geometry's box (boxes are small next to the grid)
        grid[c : d + 1, a : b + 1] = True
    return GeometryExtent((minx, miny, maxx, maxy), grid.astype(int).tolist(), len(geoms))


def _extent(client: MemberClient, predicate: str) -> GeometryExtent | None:
    geoms: list[Any] = []
    offset = 0
    while True:
        table = client.select(
            f"SELECT ?w WHERE {{ ?s <{predicate}> ?w FILTER(isLiteral(?w) && (datatype(?w) = <{WKT_LITERAL}> "
            f"|| datatype(?w) = <{GML_LITERAL}>)) }} LIMIT {PAGE} OFFSET {offset}"
        )
        for (w,) in table.rows:
            try:
                geoms.append(parse_literal(str(w), str(w.datatype)).geom)  # type: ignore[union-attr]
            except GeometryLiteralError:
                continue
        if len(table) < PAGE:
            break
        offset += PAGE
    geoms = [g for g in geoms if not g.is_empty]
    return _grid(np.array(geoms, dtype=object)) if geoms else None


def _authorities(client: MemberClient, position: str) -> dict[str, list[str] | None]:
    table = client.select(
        f"SELECT ?p ?a WHERE {{ {{ SELECT DISTINCT ?p ?a WHERE {{ ?s ?p ?o FILTER(isIRI(?{position})) "
        f"BIND(REPLACE(STR(?{position}), \"{_AUTHORITY_REGEX}\", \"$1\") AS ?a) }} }} }}"
    )
    found: dict[str, set[str]] = {}
    for p, a in table.rows:
        found.setdefault(str(p), set()).add(str(a))
    return {p: (sorted(a) if len(a) <= MAX_AUTHORITIES else None) for p, a in found.items()}


def probe(client: MemberClient) -> SourceMetadata:
    """Describe a member with SPARQL probes (predicates, classes, authorities, geometry extents, geof support).

    Raises
    ------
    MemberError
        If the member cannot be reached at all.
    """
    meta = SourceMetadata(url=client.url, probed_at=time.time())
    table = client.select("SELECT ?p (COUNT(*) AS ?n) WHERE { ?s ?p ?o } GROUP BY ?p")
    meta.predicates = {str(p): _count(n) for p, n in table.rows if p is not None}
    meta.triples = sum(meta.predicates.values())
    table = client.select(f"SELECT ?c (COUNT(*) AS ?n) WHERE {{ ?s <{RDF}type> ?c }} GROUP BY ?c")
    meta.classes = {str(c): _count(n) for c, n in table.rows if c is not None}
    try:
        meta.subject_authorities = _authorities(client, "s")
        meta.object_authorities = _authorities(client, "o")
    except MemberError as exc:  # e.g. a member without REPLACE: no authority pruning
        log.warning("no authorities for %s: %s", client.name, exc)
        meta.subject_authorities, meta.object_authorities = {}, {}
    table = client.select(
        f"SELECT DISTINCT ?p WHERE {{ ?s ?p ?o FILTER(isLiteral(?o) && (datatype(?o) = <{WKT_LITERAL}> "
        f"|| datatype(?o) = <{GML_LITERAL}>)) }}"
    )
    for (p,) in table.rows:
        extent = _extent(client, str(p))
        if extent is not None:
            meta.extents[str(p)] = extent
    point = f'"POINT(0 0)"^^<{WKT_LITERAL}>'
    try:
        meta.geosparql = client.ask(f"ASK {{ FILTER(<{GEOF}sfIntersects>({point}, {point})) }}")
    except MemberError:  # a store that refuses unknown functions (400): a plain SPARQL member
        meta.geosparql = False
    return meta


class MetadataCache:
    """Source metadata per member URL: in memory, and in ``folder`` (JSON, atomic writes) when given.

    Parameters
    ----------
    folder
        Where descriptions are kept between runs; ``None``: memory only.
    max_age
        Seconds after which a stored description is probed again.
    """

    def __init__(self, folder: str | Path | None = None, *, max_age: float = 24 * 3600.0) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.max_age = max_age
        self._memory: dict[str, SourceMetadata] = {}

    def _path(self, url: str) -> Path:
        assert self.folder is not None
        return self.folder / (hashlib.sha1(url.encode()).hexdigest()[:16] + ".json")

    def get(self, client: MemberClient, *, refresh: bool = False) -> SourceMetadata:
        """The description of ``client``'s member: cached, or probed (and stored) when missing, old or ``refresh``."""
        if not refresh and client.url in self._memory:
            return self._memory[client.url]
        if not refresh and self.folder is not None and self._path(client.url).is_file():
            try:
                meta = SourceMetadata.from_json(json.loads(self._path(client.url).read_text()))
                if meta.url == client.url and time.time() - meta.probed_at < self.max_age:
                    self._memory[client.url] = meta
                    return meta
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring unreadable metadata cache %s: %s", self._path(client.url), exc)
        meta = probe(client)
        self._memory[client.url] = meta
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(meta.to_json(), fh)
            os.replace(tmp, self._path(client.url))
        return meta

    def clear(self) -> None:
        """Forget the in-memory descriptions (the next :meth:`get` reads the folder or probes)."""
        self._memory.clear()
