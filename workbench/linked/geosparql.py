"""GeoSPARQL 1.0 and 1.1 functions: pure computation on parsed geometry literals, plus pyoxigraph adapters.

The ``geof:`` functions of GeoSPARQL 1.0 (the 24 topological relations, ``relate``,
``distance``, ``buffer``, ``envelope``, ``convexHull``, ``boundary``, ``intersection``,
``union``, ``difference``, ``symDifference``, ``getSRID``) and those GeoSPARQL 1.1 adds
(measures ``area``, ``length``, ``perimeter``, ``metricArea``, ``metricLength``,
``metricPerimeter``, ``metricDistance``, ``metricBuffer``; coordinates ``minX`` … ``maxZ``;
``numGeometries``, ``geometryN``, ``transform``, ``asWKT``, ``asGML``, ``asGeoJSON``,
``asKML``, ``isEmpty``, ``isSimple``, ``is3D``, ``isMeasured``, ``dimension``,
``coordinateDimension``, ``spatialDimension``, ``concaveHull``, ``centroid``,
``boundingCircle``) are defined here on :class:`~workbench.linked.geometry.GeoValue`
objects and wrapped as pyoxigraph custom functions by :func:`custom_functions`; the
spatial aggregates (``aggBoundingBox``, ``aggBoundingCircle``, ``aggCentroid``,
``aggConcaveHull``, ``aggConvexHull``, ``aggUnion``) as pyoxigraph custom aggregate
functions by :func:`custom_aggregate_functions`. Any argument may be a WKT, GML,
GeoJSON or KML literal (:func:`~workbench.linked.geometry.parse_literal`).

Units (:mod:`workbench.linked.units`: OGC ``uom:``, EPSG and QUDT ``unit:`` IRIs):
distances and buffers in length units are computed in an azimuthal equidistant
projection centred on the geometries (exact for distances from the centre, within
0.1 % over a few hundred kilometres); angle units are planar CRS84 degrees. Areas,
lengths and perimeters in metric units are geodesic on the WGS84 ellipsoid
(``pyproj.Geod``, ring by ring): exact whatever the extent, no projection to choose.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache, partial
from typing import Any, Callable, Iterator

import numpy as np
import pyoxigraph as ox
import shapely
from pyproj import Geod, Transformer
from shapely.geometry.base import BaseGeometry

from workbench.errors import DataError
from workbench.linked.geometry import (
    CRS84,
    GeoValue,
    GeometryLiteralError,
    crs_of,
    from_crs84,
    parse_literal,
    to_crs84,
    write_as,
    write_gml_envelope,
    write_literal,
)
from workbench.linked.geometry import _normalise_crs_iri
from workbench.linked.units import area_factor, unit_of
from workbench.linked.vocab import GEO, GEOF, GEOMETRY_LITERALS, GML_LITERAL, TOPOLOGY_RELATIONS, XSD

__all__ = [
    "RELATIONS",
    "SCALAR_RELATIONS",
    "DISJOINT_RELATIONS",
    "FUNCTION_NAMES",
    "AGGREGATE_NAMES",
    "relation",
    "distance",
    "buffer",
    "geodesic_area",
    "geodesic_length",
    "geodesic_perimeter",
    "area",
    "length",
    "perimeter",
    "coordinate_bound",
    "geometry_n",
    "transform",
    "concave_hull",
    "aggregate",
    "custom_functions",
    "custom_aggregate_functions",
    "materialise_measures",
    "MEASURE_PROPERTIES",
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


def _scalar_pattern(pattern: str) -> Callable[[BaseGeometry, BaseGeometry], bool]:
    return lambda a, b: a.relate_pattern(b, pattern)


#: the same predicates on two scalar geometries (shapely's scalar fast path: 4-6 µs less per call)
SCALAR_RELATIONS: dict[str, Callable[[BaseGeometry, BaseGeometry], bool]] = {
    "sfEquals": lambda a, b: a.equals(b),
    "sfDisjoint": lambda a, b: a.disjoint(b),
    "sfIntersects": lambda a, b: a.intersects(b),
    "sfTouches": lambda a, b: a.touches(b),
    "sfCrosses": lambda a, b: a.crosses(b),
    "sfWithin": lambda a, b: a.within(b),
    "sfContains": lambda a, b: a.contains(b),
    "sfOverlaps": lambda a, b: a.overlaps(b),
    "ehMeet": lambda a, b: a.touches(b),
    **{name: _scalar_pattern(predicate.keywords["pattern"]) for name, predicate in RELATIONS.items()
       if isinstance(predicate, partial)},
}
assert set(SCALAR_RELATIONS) == set(RELATIONS)

#: Relations that hold for far-apart geometries: a spatial index cannot narrow them.
DISJOINT_RELATIONS = frozenset({"sfDisjoint", "ehDisjoint", "rcc8dc"})



class QueryCancelled(DataError):
    """The query that called a function has passed its deadline."""


class _State(threading.local):
    deadline: float | None = None  # a class default: the look-up is fast in threads that never set one


_STATE = _State()


def set_deadline(deadline: float | None) -> None:
    """Set (or clear) a ``time.monotonic()`` deadline for the functions called in this thread.

    Past it, every function answers an error (unbound) at once, so that a timed-out
    query stops spending time in geometry computations.
    """
    _STATE.deadline = deadline


def _check_deadline() -> None:
    deadline = _STATE.deadline
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
    """CRS84 <-> azimuthal equidistant (WGS84, metres) centred at ``lon, lat``.

    Built from the PROJ pipelines that ``Transformer.from_crs("OGC:CRS84", <aeqd CRS>)`` resolves
    to (the same operations, bit-identical answers), without the CRS database look-ups that made
    each new centre cost about 1 ms: every pair of a metric ``geof:distance`` has its own centre.
    """
    aeqd = f"+proj=aeqd +lat_0={lat:.6f} +lon_0={lon:.6f} +ellps=WGS84"
    fwd = Transformer.from_pipeline(f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step {aeqd}")
    inv = Transformer.from_pipeline(f"+proj=pipeline +step +inv {aeqd} +step +proj=unitconvert +xy_in=rad +xy_out=deg")
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
    """Shortest distance between two geometries in ``unit`` (a length or angle unit IRI)."""
    u = unit_of(unit, allowed=("length", "angle"))
    if u.kind == "length":
        fwd, _ = _aeqd(*_centre(a.geom, b.geom))
        return float(shapely.distance(_project(a.geom, fwd), _project(b.geom, fwd))) / u.factor
    return float(shapely.distance(a.geom, b.geom)) / u.factor


def buffer(a: GeoValue, radius: float, *, unit: str) -> BaseGeometry:
    """``a`` buffered by ``radius`` ``unit`` (length units via a local equidistant projection)."""
    u = unit_of(unit, allowed=("length", "angle"))
    if u.kind == "length":
        fwd, inv = _aeqd(*_centre(a.geom))
        return _project(shapely.buffer(_project(a.geom, fwd), radius * u.factor), inv)
    return shapely.buffer(a.geom, radius * u.factor)


# ---------------------------------------------------------------- GeoSPARQL 1.1 measures

_GEOD = Geod(ellps="WGS84")


def _rings(geom: BaseGeometry) -> Iterator[tuple[BaseGeometry, bool]]:
    """(ring, is_exterior) of every polygon in ``geom``."""
    for part in shapely.get_parts(geom).tolist():
        if part.geom_type == "Polygon":
            if not part.is_empty:
                yield part.exterior, True
                for ring in part.interiors:
                    yield ring, False
        elif part.geom_type == "GeometryCollection":
            yield from _rings(part)


def _lines(geom: BaseGeometry) -> Iterator[BaseGeometry]:
    """Every linear part of ``geom``: lines themselves, and the rings of polygons."""
    for part in shapely.get_parts(geom).tolist():
        if part.geom_type in ("LineString", "LinearRing"):
            yield part
        elif part.geom_type == "Polygon":
            yield from (ring for ring, _ in _rings(part))
        elif part.geom_type == "GeometryCollection":
            yield from _lines(part)


def geodesic_area(geom: BaseGeometry) -> float:
    """Area in m² on the WGS84 ellipsoid of a CRS84 geometry (polygons: exterior minus holes; others 0)."""
    total = 0.0
    for ring, exterior in _rings(geom):
        xy = np.asarray(ring.coords)[:, :2]
        ring_area = abs(_GEOD.polygon_area_perimeter(xy[:, 0], xy[:, 1])[0])
        total += ring_area if exterior else -ring_area
    return total


def geodesic_length(geom: BaseGeometry) -> float:
    """Length in m on the WGS84 ellipsoid of a CRS84 geometry (as GEOS: polygons count their rings; points 0)."""
    total = 0.0
    for line in _lines(geom):
        xy = np.asarray(line.coords)[:, :2]
        if len(xy) > 1:
            total += float(_GEOD.line_length(xy[:, 0], xy[:, 1]))
    return total


def geodesic_perimeter(geom: BaseGeometry) -> float:
    """Perimeter in m on the WGS84 ellipsoid: the length of the polygons' rings (0 for points and lines)."""
    total = 0.0
    for ring, _ in _rings(geom):
        xy = np.asarray(ring.coords)[:, :2]
        total += float(_GEOD.line_length(xy[:, 0], xy[:, 1]))
    return total


def _native(a: GeoValue) -> BaseGeometry:
    return from_crs84(a.geom, a.crs)


def area(a: GeoValue, *, unit: str) -> float:
    """Area of ``a`` in ``unit``: geodesic for area and length units (length units squared), planar deg² for angles."""
    u = unit_of(unit)
    if u.kind == "angle":
        return float(shapely.area(a.geom)) / area_factor(u)
    return geodesic_area(a.geom) / area_factor(u)


def length(a: GeoValue, *, unit: str) -> float:
    """Length of ``a`` in ``unit`` (geodesic for length units, planar CRS84 for angle units)."""
    u = unit_of(unit, allowed=("length", "angle"))
    if u.kind == "angle":
        return float(shapely.length(a.geom)) / u.factor
    return geodesic_length(a.geom) / u.factor


def perimeter(a: GeoValue, *, unit: str) -> float:
    """Perimeter of ``a`` (its polygons' rings) in ``unit``."""
    u = unit_of(unit, allowed=("length", "angle"))
    if u.kind == "angle":
        return float(sum(shapely.length(r) for r, _ in _rings(a.geom))) / u.factor
    return geodesic_perimeter(a.geom) / u.factor


_AXES = {"X": 0, "Y": 1, "Z": 2}


def coordinate_bound(a: GeoValue, *, axis: str, maximum: bool) -> float:
    """Smallest or largest coordinate of ``a`` along ``axis`` (``"X"``, ``"Y"``, ``"Z"``) in the literal's own CRS.

    Raises
    ------
    DataError
        If ``a`` is empty, or has no Z coordinate when ``axis`` is ``"Z"``.
    """
    if a.geom.is_empty:
        raise DataError(f"the {'max' if maximum else 'min'}{axis} of an empty geometry is undefined")
    if axis == "Z" and not shapely.has_z(a.geom):
        raise DataError(f"geometry {a.geom.geom_type} has no Z coordinate")
    coords = shapely.get_coordinates(_native(a) if axis != "Z" else a.geom, include_z=axis == "Z")
    values = coords[:, _AXES[axis]]
    values = values[~np.isnan(values)]
    return float(values.max() if maximum else values.min())


def geometry_n(a: GeoValue, n: int) -> BaseGeometry:
    """The ``n``-th (1-based) member of a geometry collection; ``n = 1`` of a single geometry is itself.

    Raises
    ------
    DataError
        If ``n`` is out of range.
    """
    count = int(shapely.get_num_geometries(a.geom))
    if not 1 <= n <= count:
        raise DataError(f"geometryN index {n} is out of range 1..{count}")
    return shapely.get_geometry(a.geom, n - 1)


def transform(a: GeoValue, crs: str) -> tuple[str, str]:
    """``a`` written in the CRS ``crs`` (lexical form, datatype): same serialisation when it can carry a CRS.

    GeoJSON and KML are CRS84 only: a geometry of those kinds transformed to another
    CRS is written as WKT.
    """
    target = _normalise_crs_iri(crs)
    crs_of(target)  # unknown CRS: GeometryLiteralError
    kind = a.kind if a.kind in ("wkt", "gml") or target == CRS84 else "wkt"
    return write_as(a.geom, kind, target, explicit_crs=True)


#: default ``ratio`` of :func:`concave_hull` (GEOS: 0 is the most concave, 1 the convex hull)
CONCAVE_RATIO = 0.3


def concave_hull(geom: BaseGeometry, ratio: float = CONCAVE_RATIO) -> BaseGeometry:
    """Concave hull (GEOS) of ``geom``'s vertices; ``ratio`` in [0, 1].

    Raises
    ------
    DataError
        If ``ratio`` is outside [0, 1].
    """
    if not 0.0 <= ratio <= 1.0:
        raise DataError(f"concave hull ratio {ratio} is outside [0, 1]")
    return shapely.concave_hull(geom, ratio=ratio)


def aggregate(name: str, values: list[GeoValue]) -> tuple[str, str] | None:
    """The spatial aggregate ``name`` (e.g. ``"aggUnion"``) of geometries, written like the first one.

    Returns ``None`` for an empty set (the aggregate is then unbound).

    Raises
    ------
    DataError
        If ``name`` is not a GeoSPARQL 1.1 spatial aggregate.
    """
    if name not in _AGGREGATES:
        raise DataError(f"unknown spatial aggregate {name!r}: expected one of {', '.join(_AGGREGATES)}")
    if not values:
        return None
    first = values[0]
    if name == "aggBoundingBox":
        boxes = [shapely.box(*_native_in(v, first.crs).bounds) for v in values if not v.geom.is_empty]
        if not boxes:
            return write_literal(shapely.from_wkt("POLYGON EMPTY"), first)
        native_box = shapely.box(*shapely.total_bounds(boxes))
        if first.kind == "gml":
            return write_gml_envelope(to_crs84(native_box, first.crs), first.crs), GML_LITERAL
        return write_literal(to_crs84(native_box, first.crs), first)
    collection = shapely.GeometryCollection([v.geom for v in values])
    return write_literal(_AGGREGATES[name](collection), first)


def _native_in(value: GeoValue, crs: str) -> BaseGeometry:
    return from_crs84(value.geom, crs)


_AGGREGATES: dict[str, Callable[[BaseGeometry], BaseGeometry]] = {
    "aggBoundingBox": shapely.envelope,
    "aggBoundingCircle": shapely.minimum_bounding_circle,
    "aggCentroid": shapely.centroid,
    "aggConcaveHull": concave_hull,
    "aggConvexHull": shapely.convex_hull,
    "aggUnion": shapely.union_all,
}


# ---------------------------------------------------------------- pyoxigraph adapters

_BOOLEAN = ox.NamedNode(XSD + "boolean")
_DOUBLE = ox.NamedNode(XSD + "double")
_ANYURI = ox.NamedNode(XSD + "anyURI")
_INTEGER = ox.NamedNode(XSD + "integer")
_GEO_DATATYPES = frozenset(GEOMETRY_LITERALS)


def _geo(term: Any) -> GeoValue:
    _check_deadline()
    if not isinstance(term, ox.Literal) or not term.datatype.value.startswith(GEO):
        raise GeometryLiteralError(
            f"{term} is not a geometry literal (geo:wktLiteral, geo:gmlLiteral, geo:geoJSONLiteral, geo:kmlLiteral "
            "or geo:dggsLiteral)"
        )
    return parse_literal(term.value, term.datatype.value)  # unknown geo: types, other DGGSs: a clear error


def _number(term: Any) -> float:
    if not isinstance(term, ox.Literal):
        raise DataError(f"{term} is not a numeric literal")
    return float(term.value)


def _iri(term: Any) -> str:
    if isinstance(term, ox.Literal) and term.datatype.value == XSD + "anyURI":
        return term.value
    if not isinstance(term, ox.NamedNode):
        raise DataError(f"{term} is not an IRI")
    return term.value


def _integer(term: Any) -> int:
    value = _number(term)
    if value != int(value):
        raise DataError(f"{term} is not an integer")
    return int(value)


def _double(value: float) -> ox.Literal:
    return ox.Literal(repr(float(value)), datatype=_DOUBLE)


def _int_literal(value: int) -> ox.Literal:
    return ox.Literal(str(int(value)), datatype=_INTEGER)


def _written(pair: tuple[str, str]) -> ox.Literal:
    return ox.Literal(pair[0], datatype=ox.NamedNode(pair[1]))


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
    predicate = SCALAR_RELATIONS[name]

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


def _area(a: Any, unit: Any = None) -> ox.Literal:
    ga = _geo(a)
    return _double(geodesic_area(ga.geom) if unit is None else area(ga, unit=_iri(unit)))


def _length(a: Any, unit: Any = None) -> ox.Literal:
    ga = _geo(a)
    return _double(geodesic_length(ga.geom) if unit is None else length(ga, unit=_iri(unit)))


def _perimeter(a: Any, unit: Any = None) -> ox.Literal:
    ga = _geo(a)
    return _double(geodesic_perimeter(ga.geom) if unit is None else perimeter(ga, unit=_iri(unit)))


def _metric_distance(a: Any, b: Any) -> ox.Literal:
    return ox.Literal(distance(_geo(a), _geo(b), unit=_METRE))


def _metric_buffer(a: Any, radius: Any) -> ox.Literal:
    ga = _geo(a)
    return _geometry_literal(buffer(ga, _number(radius), unit=_METRE), ga)


def _bound(axis: str, maximum: bool) -> Callable[[Any], ox.Literal]:
    def evaluate(a: Any) -> ox.Literal:
        return _double(coordinate_bound(_geo(a), axis=axis, maximum=maximum))

    evaluate.__name__ = f"{'max' if maximum else 'min'}{axis}"
    return evaluate


def _geometry_n(a: Any, n: Any) -> ox.Literal:
    ga = _geo(a)
    return _geometry_literal(geometry_n(ga, _integer(n)), ga)


def _transform(a: Any, crs: Any) -> ox.Literal:
    return _written(transform(_geo(a), _iri(crs)))


def _as(kind: str) -> Callable[[Any], ox.Literal]:
    def evaluate(a: Any) -> ox.Literal:
        ga = _geo(a)
        return _written(write_as(ga.geom, kind, ga.crs if kind in ("wkt", "gml") else CRS84,
                                 explicit_crs=ga.explicit_crs or ga.crs != CRS84))

    return evaluate


def _concave_hull(a: Any, ratio: Any = None) -> ox.Literal:
    ga = _geo(a)
    return _geometry_literal(concave_hull(ga.geom, CONCAVE_RATIO if ratio is None else _number(ratio)), ga)


def _boolean_of(op: Callable[[BaseGeometry], Any]) -> Callable[[Any], ox.Literal]:
    def evaluate(a: Any) -> ox.Literal:
        return ox.Literal(bool(op(_geo(a).geom)))

    return evaluate


def _integer_of(op: Callable[[BaseGeometry], Any]) -> Callable[[Any], ox.Literal]:
    def evaluate(a: Any) -> ox.Literal:
        return _int_literal(int(op(_geo(a).geom)))

    return evaluate


_METRE = "http://www.opengis.net/def/uom/OGC/1.0/metre"


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
            # GeoSPARQL 1.1
            "area": _area,
            "length": _length,
            "perimeter": _perimeter,
            "metricArea": lambda a: _double(geodesic_area(_geo(a).geom)),
            "metricLength": lambda a: _double(geodesic_length(_geo(a).geom)),
            "metricPerimeter": lambda a: _double(geodesic_perimeter(_geo(a).geom)),
            "metricDistance": _metric_distance,
            "metricBuffer": _metric_buffer,
            **{f"{m}{axis}": _bound(axis, m == "max") for m in ("min", "max") for axis in "XYZ"},
            "numGeometries": _integer_of(shapely.get_num_geometries),
            "geometryN": _geometry_n,
            "transform": _transform,
            "asWKT": _as("wkt"),
            "asGML": _as("gml"),
            "asGeoJSON": _as("geojson"),
            "asKML": _as("kml"),
            "isEmpty": _boolean_of(lambda g: g.is_empty),  # scalar properties: faster than the ufuncs
            "isSimple": _boolean_of(lambda g: g.is_simple),
            "is3D": _boolean_of(lambda g: g.has_z),
            "isMeasured": _boolean_of(lambda g: g.has_m),
            "dimension": _integer_of(shapely.get_dimensions),
            "coordinateDimension": _integer_of(shapely.get_coordinate_dimension),
            "spatialDimension": _integer_of(lambda g: 3 if shapely.has_z(g) else 2),
            "concaveHull": _concave_hull,
            "centroid": _unary(shapely.centroid),
            "boundingCircle": _unary(shapely.minimum_bounding_circle),
        }
    )
    return functions


_FUNCTIONS = _build()

#: local names of the scalar ``geof:`` functions this store implements
FUNCTION_NAMES: frozenset[str] = frozenset(_FUNCTIONS)
#: local names of the ``geof:`` spatial aggregates this store implements
AGGREGATE_NAMES: frozenset[str] = frozenset(_AGGREGATES)


def custom_functions() -> dict[ox.NamedNode, Callable[..., Any]]:
    """The GeoSPARQL 1.0/1.1 scalar functions as a ``custom_functions`` mapping for ``pyoxigraph.Store.query``."""
    return {ox.NamedNode(GEOF + name): _safe(func) for name, func in _FUNCTIONS.items()}


class _Accumulator:
    """A pyoxigraph aggregate accumulator: collects parsed geometries, answers unbound on any bad term."""

    name = ""

    def __init__(self) -> None:
        self.values: list[GeoValue] = []
        self.failed = False

    def accumulate(self, term: Any) -> None:
        if self.failed:
            return
        try:
            self.values.append(_geo(term))
        except (DataError, ValueError, TypeError):
            self.failed = True  # an expression error in the group: the aggregate is unbound

    def finish(self) -> ox.Literal | None:
        if self.failed:
            return None
        try:
            written = aggregate(self.name, self.values)
        except (DataError, ValueError, TypeError, shapely.errors.GEOSException):
            return None
        return None if written is None else _written(written)


def custom_aggregate_functions() -> dict[ox.NamedNode, Callable[[], Any]]:
    """The GeoSPARQL 1.1 spatial aggregates as a ``custom_aggregate_functions`` mapping for pyoxigraph.

    Each value is a class: pyoxigraph makes one accumulator per group, calls
    ``accumulate(term)`` per row and ``finish()`` once. A group holding a term that is
    not a geometry literal aggregates to unbound; so does an empty group.
    """
    return {ox.NamedNode(GEOF + name): cls for name, cls in _ACCUMULATORS.items()}


def _accumulator_class(name: str) -> type[_Accumulator]:
    cls = type(f"_Agg_{name}", (_Accumulator,), {"name": name, "__module__": __name__})
    globals()[cls.__name__] = cls  # importable by name: the mapping pickles (e.g. to worker processes)
    return cls


_ACCUMULATORS: dict[str, type[_Accumulator]] = {name: _accumulator_class(name) for name in _AGGREGATES}


#: GeoSPARQL 1.1 measure properties -> (function, dimension of the geometries they are stated for)
MEASURE_PROPERTIES: dict[str, tuple[str, int]] = {
    "hasMetricArea": ("metricArea", 2),
    "hasMetricPerimeter": ("metricPerimeter", 2),
    "hasMetricLength": ("metricLength", 1),
    "hasMetricSize": ("metricArea", 2),
}


def materialise_measures(store: Any) -> int:
    """State ``geo:hasMetricArea``/``hasMetricPerimeter``/``hasMetricLength``/``hasMetricSize`` in ``store``.

    For every geometry with a serialisation (``geo:asWKT``, ``asGML``, ``asGeoJSON``,
    ``asKML``) and every feature through its ``geo:hasDefaultGeometry``, the measures
    GeoSPARQL 1.1 defines for its dimension (areas and perimeters for surfaces, lengths
    for curves; ``hasMetricSize`` is the area of a surface, the length of a curve), as
    ``xsd:double`` computed by the ``geof:metric*`` functions, unless already stated.
    Runs SPARQL updates through ``store.update`` (a :class:`~workbench.linked.store.GeoStore`).

    Returns
    -------
    int
        The number of triples added.
    """
    before = len(store)
    serialisation = f"<{GEO}asWKT>|<{GEO}asGML>|<{GEO}asGeoJSON>|<{GEO}asKML>|<{GEO}asDGGS>"
    rules = [(prop, func, dim) for prop, (func, dim) in MEASURE_PROPERTIES.items()]
    rules.append(("hasMetricSize", "metricLength", 1))
    for prop, func, dim in rules:
        for subject in ("?g", "?f"):
            path = f"?g {serialisation} ?w ." if subject == "?g" else \
                f"?f <{GEO}hasDefaultGeometry> ?g . ?g {serialisation} ?w ."
            store.update(
                f"INSERT {{ {subject} <{GEO}{prop}> ?m }} WHERE {{ {path} "
                f"FILTER(<{GEOF}dimension>(?w) = {dim}) "
                f"FILTER NOT EXISTS {{ {subject} <{GEO}{prop}> ?any }} "
                f"BIND(<{GEOF}{func}>(?w) AS ?m) FILTER(BOUND(?m)) }}"
            )
    return len(store) - before
