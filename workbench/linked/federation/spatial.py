"""Spatial FILTER conjuncts of the federator: recognise them, prune members by extent, evaluate them vectorised.

Pure functions over rdflib algebra expressions and shapely arrays.

A *spatial test* is a FILTER conjunct of one of the forms

* ``geof:REL(?w, CONST)`` / ``geof:REL(CONST, ?w)`` / ``geof:REL(?a, ?b)`` for the 24
  topological relations (``sf*``, ``eh*``, ``rcc8*``);
* ``geof:distance(X, Y, UNIT) < d`` or ``<= d`` (or ``d > ...``/``d >= ...``), X and Y
  variables or one a constant geometry.

Every relation except the disjointness ones (``sfDisjoint``, ``ehDisjoint``, ``rcc8dc``)
implies that the two geometries' boxes meet, so a member whose geometries lie away
from a constant's box (buffered by ``d`` for distances) cannot answer: it is pruned.
Distances in metres are turned into a margin in degrees that is never too small:
``d / 110 574 m`` of latitude (the shortest degree of latitude) and that divided by
``cos`` of the largest latitude reached for longitude, times a safety factor; past 85°
of latitude no longitude pruning is done. Degrees and radians are planar CRS84 units,
as :mod:`workbench.linked.geosparql` computes them.

Evaluation gives the same answers as the ``geof:`` functions themselves: relations call
the same shapely predicates on arrays (pairs from an STRtree for joins), and distances
in metres call :func:`workbench.linked.geosparql.distance` on the candidate pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from rdflib import Literal, URIRef, Variable

from workbench.linked import geosparql
from workbench.linked.geometry import GeometryLiteralError, GeoValue, parse_literal
from workbench.linked.vocab import CRS84, GEOF, GML_LITERAL, UOM, WKT_LITERAL

__all__ = [
    "SEMI_JOIN_BLOCK",
    "SEMI_JOIN_MAX_BLOCKS",
    "UNITS",
    "SpatialTest",
    "evaluate_constant",
    "evaluate_pairs",
    "join_pairs",
    "margin_degrees",
    "parse_geometries",
    "search_region",
    "semi_join_filters",
    "spatial_test",
]

#: unit IRI -> (kind, factor): metres per unit for ``"m"``, degrees per unit for ``"deg"``
UNITS: dict[str, tuple[str, float]] = {
    UOM + "metre": ("m", 1.0), UOM + "meter": ("m", 1.0),
    UOM + "kilometre": ("m", 1000.0), UOM + "kilometer": ("m", 1000.0),
    UOM + "degree": ("deg", 1.0), UOM + "radian": ("deg", 180.0 / math.pi),
}
_SAFETY = 1.25
_SHORTEST_DEGREE_M = 110_574.0
_GEO_TYPES = frozenset({WKT_LITERAL, GML_LITERAL})


@dataclass(frozen=True)
class SpatialTest:
    """One recognised spatial FILTER conjunct.

    ``left``/``right`` are the variables (``None`` where the argument is the constant);
    ``constant`` is the constant geometry (CRS84), ``limit``/``strict``/``unit`` describe a
    distance bound; ``expr`` is the conjunct itself.
    """

    kind: str  # "relation" or "distance"
    name: str  # relation local name, or "distance"
    left: Variable | None
    right: Variable | None
    constant: Any
    limit: float | None
    strict: bool
    unit: str | None
    expr: Any

    @property
    def variables(self) -> tuple[Variable, ...]:
        """The variables the test reads."""
        return tuple(v for v in (self.left, self.right) if v is not None)

    @property
    def prunes(self) -> bool:
        """Whether the test implies that the geometries (buffered by the distance) meet."""
        return self.kind == "distance" or self.name not in geosparql.DISJOINT_RELATIONS

    def describe(self) -> str:
        """Short text for plans."""
        args = [f"?{v}" if v is not None else "CONST" for v in (self.left, self.right)]
        if self.kind == "distance":
            unit = (self.unit or "").rsplit("/", 1)[-1]
            return f"distance({', '.join(args)}, {unit}) {'<' if self.strict else '<='} {self.limit:g}"
        return f"{self.name}({', '.join(args)})"


def _geometry_constant(term: Any) -> Any:
    if isinstance(term, Literal) and term.datatype is not None and str(term.datatype) in _GEO_TYPES:
        try:
            return parse_literal(str(term), str(term.datatype)).geom
        except GeometryLiteralError:
            return None
    return None


def _function(expr: Any, local: str | None = None) -> bool:
    name = getattr(expr, "name", None)
    if name != "Function" or not str(expr.iri).startswith(GEOF):
        return False
    return local is None or str(expr.iri)[len(GEOF):] == local


def _arguments(args: list[Any]) -> tuple[Variable | None, Variable | None, Any] | None:
    a, b = args[0], args[1]
    if isinstance(a, Variable) and isinstance(b, Variable):
        return a, b, None
    if isinstance(a, Variable):
        const = _geometry_constant(b)
        return (a, None, const) if const is not None else None
    if isinstance(b, Variable):
        const = _geometry_constant(a)
        return (None, b, const) if const is not None else None
    return None


def spatial_test(expr: Any) -> SpatialTest | None:
    """The :class:`SpatialTest` of a FILTER conjunct, or ``None`` when it is not one."""
    if _function(expr) and str(expr.iri)[len(GEOF):] in geosparql.RELATIONS and len(expr.expr) == 2:
        parsed = _arguments(list(expr.expr))
        if parsed is None:
            return None
        left, right, const = parsed
        return SpatialTest("relation", str(expr.iri)[len(GEOF):], left, right, const, None, False, None, expr)
    if getattr(expr, "name", None) != "RelationalExpression":
        return None
    op, lhs, rhs = expr.op, expr.expr, expr.other
    if _function(rhs, "distance") and op in (">", ">="):
        lhs, rhs, op = rhs, lhs, {">": "<", ">=": "<="}[op]
    if not (_function(lhs, "distance") and op in ("<", "<=") and len(lhs.expr) == 3):
        return None
    if not (isinstance(rhs, Literal) and isinstance(rhs.toPython(), (int, float)) or
            isinstance(rhs, Literal) and rhs.datatype is not None and str(rhs.datatype).endswith("#decimal")):
        return None
    unit = lhs.expr[2]
    if not isinstance(unit, URIRef) or str(unit) not in UNITS:
        return None
    parsed = _arguments(list(lhs.expr[:2]))
    if parsed is None:
        return None
    left, right, const = parsed
    return SpatialTest("distance", "distance", left, right, const, float(rhs.toPython()), op == "<", str(unit), expr)


def margin_degrees(test: SpatialTest, latitudes: tuple[float, float]) -> tuple[float, float]:
    """``(dx, dy)`` in degrees that a distance bound can reach from geometries within ``latitudes``."""
    if test.kind != "distance" or test.limit is None or test.unit is None:
        return 0.0, 0.0
    kind, factor = UNITS[test.unit]
    d = max(0.0, test.limit) * factor
    if kind == "deg":
        return d * 1.000001 + 1e-12, d * 1.000001 + 1e-12
    dy = d / _SHORTEST_DEGREE_M * _SAFETY
    top = max(abs(latitudes[0]), abs(latitudes[1])) + dy
    if top >= 85.0:
        return 360.0, dy
    return dy / math.cos(math.radians(top)), dy


def search_region(test: SpatialTest) -> Any:
    """The box a geometry must meet to satisfy a test with a constant (CRS84 shapely polygon)."""
    minx, miny, maxx, maxy = test.constant.bounds
    dx, dy = margin_degrees(test, (miny, maxy))
    return shapely.box(minx - dx, miny - dy, maxx + dx, maxy + dy)


def parse_geometries(terms: list[Any], cache: dict[Any, Any] | None = None) -> np.ndarray:
    """Shapely geometries (CRS84) of rdflib geometry literals; ``None`` where a term is not one."""
    cache = {} if cache is None else cache
    out = np.empty(len(terms), dtype=object)
    for i, term in enumerate(terms):
        if term in cache:
            out[i] = cache[term]
            continue
        geom = None
        if isinstance(term, Literal) and term.datatype is not None and str(term.datatype) in _GEO_TYPES:
            try:
                geom = parse_literal(str(term), str(term.datatype)).geom
            except GeometryLiteralError:
                geom = None
        cache[term] = geom
        out[i] = geom
    return out


def _value(geom: Any) -> GeoValue:
    return GeoValue(geom, CRS84, "wkt", False)


def _distance_holds(test: SpatialTest, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert test.limit is not None and test.unit is not None
    ok = np.zeros(len(a), dtype=bool)
    for k, (ga, gb) in enumerate(zip(a, b)):
        if ga is None or gb is None:
            continue
        try:
            d = geosparql.distance(_value(ga), _value(gb), unit=test.unit)
        except Exception:  # noqa: BLE001, S112 - a geometry the function cannot measure: an expression error
            continue
        ok[k] = d < test.limit if test.strict else d <= test.limit
    return ok


def _relation_holds(test: SpatialTest, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    valid = np.array([x is not None and y is not None for x, y in zip(a, b)], dtype=bool)
    out = np.zeros(len(a), dtype=bool)
    if valid.any():
        out[valid] = np.asarray(geosparql.RELATIONS[test.name](a[valid], b[valid]), dtype=bool)
    return out


def evaluate_constant(test: SpatialTest, geoms: np.ndarray) -> np.ndarray:
    """Boolean mask: which geometries satisfy a test with a constant (its variable's values)."""
    const = np.empty(len(geoms), dtype=object)
    const[:] = [test.constant] * len(geoms)
    a, b = (geoms, const) if test.left is not None else (const, geoms)
    if test.kind == "relation":
        return _relation_holds(test, a, b)
    region = search_region(test)
    near = np.array([g is not None for g in geoms], dtype=bool)
    if near.any():
        near[near] = shapely.intersects(shapely.envelope(geoms[near]), region)
    out = np.zeros(len(geoms), dtype=bool)
    if near.any():
        out[near] = _distance_holds(test, a[near], b[near])
    return out


def join_pairs(test: SpatialTest, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` for which ``test(left[i], right[j])`` holds (``test.left`` reads ``left``)."""
    lv = np.array([g is not None for g in left], dtype=bool)
    rv = np.array([g is not None for g in right], dtype=bool)
    li, ri = np.flatnonzero(lv), np.flatnonzero(rv)
    if not len(li) or not len(ri):
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    if not test.prunes:  # disjointness: every pair is a candidate
        a, b = np.repeat(li, len(ri)), np.tile(ri, len(li))
    else:
        tree = shapely.STRtree(right[ri])
        probes = left[li]
        if test.kind == "distance":
            bounds = shapely.bounds(probes)
            lat = (float(bounds[:, 1].min()), float(bounds[:, 3].max()))
            rb = shapely.bounds(right[ri])
            lat = (min(lat[0], float(rb[:, 1].min())), max(lat[1], float(rb[:, 3].max())))
            dx, dy = margin_degrees(test, lat)
            probes = shapely.box(bounds[:, 0] - dx, bounds[:, 1] - dy, bounds[:, 2] + dx, bounds[:, 3] + dy)
        pa, pb = tree.query(probes)
        a, b = li[pa], ri[pb]
    if test.kind == "relation":
        keep = _relation_holds(test, left[a], right[b])
    else:
        keep = _distance_holds(test, left[a], right[b])
    return a[keep], b[keep]


def evaluate_pairs(test: SpatialTest, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean mask of a two-variable test row by row (``a`` holds ``test.left``'s values, ``b`` ``test.right``'s)."""
    if test.kind == "relation":
        return _relation_holds(test, a, b)
    return _distance_holds(test, a, b)


#: most distinct geometries whose boxes are shipped in one semi-join constraint
SEMI_JOIN_BLOCK = 1000
#: most semi-join constraints (requests per member) for one join
SEMI_JOIN_MAX_BLOCKS = 64


def semi_join_filters(test: SpatialTest, variable: Variable, known: np.ndarray) -> list[str] | None:
    """FILTER expressions on ``variable``, one of which every partner of the ``known`` geometries satisfies.

    For a test implying that the two sides meet (buffered by a distance bound), a partner
    must intersect the union of the known geometries' boxes (expanded by the distance
    margin and a hair): a constant a GeoSPARQL member answers with its spatial index, so
    that it sends only the candidates (a spatial semi-join). The known geometries are
    sorted along a grid and cut into blocks of ``SEMI_JOIN_BLOCK``, one constraint each;
    ``None`` when the test cannot narrow anything or more than ``SEMI_JOIN_MAX_BLOCKS``
    blocks would be needed.
    """
    if not test.prunes:
        return None
    geoms = list(dict.fromkeys(g for g in known if g is not None))
    if not geoms or len(geoms) > SEMI_JOIN_BLOCK * SEMI_JOIN_MAX_BLOCKS:
        return None
    bounds = shapely.bounds(np.array(geoms, dtype=object))
    dx, dy = margin_degrees(test, (float(bounds[:, 1].min()), float(bounds[:, 3].max())))
    if dx >= 360:
        return None
    eps = 1e-9 * (1 + np.abs(bounds).max())
    cx, cy = (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2
    side = max(1, math.ceil(math.sqrt(len(geoms) / SEMI_JOIN_BLOCK)))
    span_x = max(float(cx.max() - cx.min()), 1e-12)
    span_y = max(float(cy.max() - cy.min()), 1e-12)
    col = np.minimum(((cx - cx.min()) / span_x * side).astype(int), side - 1)
    row = np.minimum(((cy - cy.min()) / span_y * side).astype(int), side - 1)
    order = np.lexsort((cx, np.where(row % 2 == 0, col, side - 1 - col), row))  # boustrophedon over the grid
    out = []
    for start in range(0, len(order), SEMI_JOIN_BLOCK):
        b = bounds[order[start : start + SEMI_JOIN_BLOCK]]
        boxes = shapely.box(b[:, 0] - dx - eps, b[:, 1] - dy - eps, b[:, 2] + dx + eps, b[:, 3] + dy + eps)
        wkt = shapely.to_wkt(shapely.union_all(boxes), rounding_precision=-1)
        out.append(f'<{GEOF}sfIntersects>(?{variable}, "{wkt}"^^<{WKT_LITERAL}>)')
    return out
