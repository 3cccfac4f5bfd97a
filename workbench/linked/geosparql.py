"""GeoSPARQL 1.0 functions: pure computation on parsed geometry literals, plus pyoxigraph adapters.

The ``geof:`` functions of GeoSPARQL 1.0 (the 24 topological relations, ``relate``,
``distance``, ``buffer``, ``envelope``, ``convexHull``, ``boundary``, ``intersection``,
``union``, ``difference``, ``symDifference``, ``getSRID``) are defined here on
:class:`~workbench.linked.geometry.GeoValue` objects, and wrapped as pyoxigraph
custom functions by :func:`custom_functions`.

Units (``uom:metre``, ``uom:degree``, ``uom:radian``, also ``metre``'s multiples
``kilometre``): distances and buffers in metres are computed in an azimuthal
equidistant projection centred on the geometries (exact for distances from the
centre, within 0.1 % over a few hundred kilometres); degrees are planar CRS84
units.
"""

from __future__ import annotations

import math
import threading
import time
from functools import lru_cache, partial
from typing import Any, Callable

import numpy as np
import pyoxigraph as ox
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from workbench.errors import DataError
from workbench.linked.geometry import (
    GeoValue,
    GeometryLiteralError,
    from_crs84,
    parse_literal,
    to_crs84,
    write_gml_envelope,
    write_literal,
)
from workbench.linked.vocab import GEOF, GML_LITERAL, TOPOLOGY_RELATIONS, UOM, WKT_LITERAL, XSD

__all__ = [
    "RELATIONS",
    "DISJOINT_RELATIONS",
    "relation",
    "distance",
    "buffer",
    "custom_functions",
    "set_deadline",
    "QueryCancelled",
]

Predicate = Callable[[Any, Any], Any]


def _pattern(pattern: str) -> Predicate:
    return partial(_relate_pattern, pattern=pattern)


def _relate_pattern(a: Any, b: Any, *, pattern: str) -> Any:
    return shapely.relate_pattern(a, b, pattern)


#: relation local name -> vectorised shapely predicate ``f(a, b)`` (arrays or scalars).
RELATIONS: dict[str, Predicate] = {
    "sfEquals": shapely.equals,
    "sfDisjoint": shapely.disjoint,
    "sfIntersects": shapely.intersects,
    "sfTouches": shapely.touches,
    "sfCrosses": shapely.crosses,
    "sfWithin": shapely.within,
    "sfContains": shapely.contains,
    "sfOverlaps": shapely.overlaps,
    "ehEquals": _pattern("TFFFTFFFT"),
    "ehDisjoint": _pattern("FF*FF****"),
    "ehMeet": lambda a, b: shapely.touches(a, b),
    "ehOverlap": _pattern("T*T***T**"),
    "ehCovers": _pattern("T*TFT*FF*"),
    "ehCoveredBy": _pattern("TFF*TFT**"),
    "ehInside": _pattern("TFF*FFT**"),
    "ehContains": _pattern("T*TFF*FF*"),
    "rcc8eq": _pattern("TFFFTFFFT"),
    "rcc8dc": _pattern("FFTFFTTTT"),
    "rcc8ec": _pattern("FFTFTTTTT"),
    "rcc8po": _pattern("TTTTTTTTT"),
    "rcc8tppi": _pattern("TTTFTTFFT"),
    "rcc8tpp": _pattern("TFFTTFTTT"),
    "rcc8ntpp": _pattern("TFFTFFTTT"),
    "rcc8ntppi": _pattern("TTTFFTFFT"),
}
assert set(RELATIONS) == set(TOPOLOGY_RELATIONS)

#: Relations that hold for far-apart geometries: a spatial index cannot narrow them.
DISJOINT_RELATIONS = frozenset({"sfDisjoint", "ehDisjoint", "rcc8dc"})

_METRE = {UOM + "metre": 1.0, UOM + "meter": 1.0, UOM + "kilometre": 1000.0, UOM + "kilometer": 1000.0}
_ANGLE = {UOM + "degree": 1.0, UOM + "radian": 180.0 / math.pi}


class QueryCancelled(DataError):
    """The query that called a function has passed its deadline."""


_STATE = threading.local()


def set_deadline(deadline: float | None) -> None:
    """Set (or clear) a ``time.monotonic()`` deadline for the functions called in this thread.

    Past it, every function answers an error (unbound) at once, so that a timed-out
    query stops spending time in geometry computations.
    """
    _STATE.deadline = deadline


def _check_deadline() -> None:
    deadline = getattr(_STATE, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise QueryCancelled("query deadline passed")


def relation(a: GeoValue, b: GeoValue, *, name: str) -> bool:
    """Evaluate the topological relation ``name`` (e.g. ``"sfIntersects"``) between two geometries."""
    try:
        return bool(RELATIONS[name](a.geom, b.geom))
    except KeyError as exc:
        raise DataError(f"unknown GeoSPARQL relation {name!r}: expected one of {', '.join(RELATIONS)}") from exc


@lru_cache(maxsize=4096)
def _aeqd(lon: float, lat: float) -> tuple[Transformer, Transformer]:
    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs")
    fwd = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
    return fwd, inv


def _project(geom: BaseGeometry, transformer: Transformer) -> BaseGeometry:
    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, apply)


def _centre(*geoms: BaseGeometry) -> tuple[float, float]:
    minx, miny, maxx, maxy = shapely.total_bounds(list(geoms))
    return round((minx + maxx) / 2, 6), round((miny + maxy) / 2, 6)


def distance(a: GeoValue, b: GeoValue, *, unit: str) -> float:
    """Shortest distance between two geometries in ``unit`` (an OGC uom IRI)."""
    if unit in _METRE:
        fwd, _ = _aeqd(*_centre(a.geom, b.geom))
        return float(shapely.distance(_project(a.geom, fwd), _project(b.geom, fwd))) / _METRE[unit]
    if unit in _ANGLE:
        return float(shapely.distance(a.geom, b.geom)) / _ANGLE[unit]
    raise DataError(f"unsupported unit of measure <{unit}>: expected uom:metre, uom:degree or uom:radian")


def buffer(a: GeoValue, radius: float, *, unit: str) -> BaseGeometry:
    """``a`` buffered by ``radius`` ``unit`` (metres via a local equidistant projection)."""
    if unit in _METRE:
        fwd, inv = _aeqd(*_centre(a.geom))
        return _project(shapely.buffer(_project(a.geom, fwd), radius * _METRE[unit]), inv)
    if unit in _ANGLE:
        return shapely.buffer(a.geom, radius * _ANGLE[unit])
    raise DataError(f"unsupported unit of measure <{unit}>: expected uom:metre, uom:degree or uom:radian")


# ---------------------------------------------------------------- pyoxigraph adapters

_BOOLEAN = ox.NamedNode(XSD + "boolean")
_DOUBLE = ox.NamedNode(XSD + "double")
_ANYURI = ox.NamedNode(XSD + "anyURI")
_GEO_DATATYPES = frozenset({WKT_LITERAL, GML_LITERAL})


def _geo(term: Any) -> GeoValue:
    _check_deadline()
    if not isinstance(term, ox.Literal) or term.datatype.value not in _GEO_DATATYPES:
        raise GeometryLiteralError(f"{term} is not a geo:wktLiteral or geo:gmlLiteral")
    return parse_literal(term.value, term.datatype.value)


def _number(term: Any) -> float:
    if not isinstance(term, ox.Literal):
        raise DataError(f"{term} is not a numeric literal")
    return float(term.value)


def _iri(term: Any) -> str:
    if not isinstance(term, ox.NamedNode):
        raise DataError(f"{term} is not a unit IRI")
    return term.value


def _geometry_literal(geom: BaseGeometry, like: GeoValue) -> ox.Literal:
    lexical, datatype = write_literal(geom, like)
    return ox.Literal(lexical, datatype=ox.NamedNode(datatype))


def _safe(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        try:
            return func(*args)
        except (DataError, ValueError, TypeError, shapely.errors.GEOSException):
            return None  # a SPARQL expression error: the binding stays unbound

    wrapper.__name__ = getattr(func, "__name__", "geof")
    return wrapper


def _relation_function(name: str) -> Callable[[Any, Any], ox.Literal]:
    predicate = RELATIONS[name]

    def evaluate(a: Any, b: Any) -> ox.Literal:
        return ox.Literal(bool(predicate(_geo(a).geom, _geo(b).geom)))

    evaluate.__name__ = name
    return evaluate


def _binary(op: Callable[[Any, Any], BaseGeometry]) -> Callable[[Any, Any], ox.Literal]:
    def evaluate(a: Any, b: Any) -> ox.Literal:
        ga, gb = _geo(a), _geo(b)
        return _geometry_literal(op(ga.geom, gb.geom), ga)

    return evaluate


def _unary(op: Callable[[Any], BaseGeometry]) -> Callable[[Any], ox.Literal]:
    def evaluate(a: Any) -> ox.Literal:
        ga = _geo(a)
        return _geometry_literal(op(ga.geom), ga)

    return evaluate


def _relate(a: Any, b: Any, pattern: Any) -> ox.Literal:
    if not isinstance(pattern, ox.Literal) or len(pattern.value) != 9:
        raise DataError(f"{pattern} is not a 9-character DE-9IM pattern")
    return ox.Literal(bool(shapely.relate_pattern(_geo(a).geom, _geo(b).geom, pattern.value)))


def _distance(a: Any, b: Any, unit: Any) -> ox.Literal:
    return ox.Literal(distance(_geo(a), _geo(b), unit=_iri(unit)))


def _buffer(a: Any, radius: Any, unit: Any) -> ox.Literal:
    ga = _geo(a)
    return _geometry_literal(buffer(ga, _number(radius), unit=_iri(unit)), ga)


def _envelope(a: Any) -> ox.Literal:
    """Minimum bounding box: a ``gml:Envelope`` for GML input, a ``POLYGON`` for WKT (which has no box type)."""
    ga = _geo(a)
    if ga.kind == "gml":
        return ox.Literal(write_gml_envelope(ga.geom, ga.crs), datatype=ox.NamedNode(GML_LITERAL))
    native = from_crs84(ga.geom, ga.crs)  # the box is taken in the literal's own CRS, as GeoSPARQL asks
    return _geometry_literal(to_crs84(shapely.envelope(native), ga.crs), ga)


def _get_srid(a: Any) -> ox.Literal:
    return ox.Literal(_geo(a).crs, datatype=_ANYURI)


def _build() -> dict[str, Callable[..., Any]]:
    functions: dict[str, Callable[..., Any]] = {name: _relation_function(name) for name in RELATIONS}
    functions.update(
        {
            "relate": _relate,
            "distance": _distance,
            "buffer": _buffer,
            "convexHull": _unary(shapely.convex_hull),
            "envelope": _envelope,
            "boundary": _unary(shapely.boundary),
            "intersection": _binary(shapely.intersection),
            "union": _binary(shapely.union),
            "difference": _binary(shapely.difference),
            "symDifference": _binary(shapely.symmetric_difference),
            "getSRID": _get_srid,
        }
    )
    return functions


_FUNCTIONS = _build()


def custom_functions() -> dict[ox.NamedNode, Callable[..., Any]]:
    """The GeoSPARQL 1.0 functions as a ``custom_functions`` mapping for ``pyoxigraph.Store.query``."""
    return {ox.NamedNode(GEOF + name): _safe(func) for name, func in _FUNCTIONS.items()}
