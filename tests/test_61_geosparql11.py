"""GeoSPARQL 1.1: the new functions against shapely/pyproj, GeoJSON/KML literals in every relation, aggregates,
units, bad literals (clear errors, 400 over HTTP), measure properties, and the compliance runner on the 1.1 layout."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import sys
from pathlib import Path

import httpx
import numpy as np
import pyoxigraph as ox
import pytest
import shapely
from pyproj import Geod, Transformer

from tests.conftest import free_port
from workbench.linked import EndpointServer, GeoStore
from workbench.linked.geometry import (
    GeometryLiteralError,
    UnsupportedSerialisationError,
    parse_literal,
    write_as,
)
from workbench.linked.geosparql import RELATIONS, aggregate, materialise_measures
from workbench.linked.units import UnitError, unit_of
from workbench.linked.vocab import DGGS_LITERAL, GEO, GEOJSON_LITERAL, GML_LITERAL, KML_LITERAL, WKT_LITERAL

ROOT = Path(__file__).resolve().parents[1]
GEOD = Geod(ellps="WGS84")
P = """PREFIX geo: <http://www.opengis.net/ont/geosparql#>
PREFIX geof: <http://www.opengis.net/def/function/geosparql/>
PREFIX uom: <http://www.opengis.net/def/uom/OGC/1.0/>
PREFIX unit: <http://qudt.org/vocab/unit/>
PREFIX ex: <http://example.org/>
"""
KINDS = {"wkt": WKT_LITERAL, "gml": GML_LITERAL, "geojson": GEOJSON_LITERAL, "kml": KML_LITERAL}

#: lon/lat shapes around Svalbard/Scandinavia (metric measures differ clearly from planar ones there)
SHAPES = [shapely.from_wkt(w) for w in (
    "POLYGON((10 60, 11 60, 11 61, 10 61, 10 60), (10.2 60.2, 10.4 60.2, 10.4 60.4, 10.2 60.4, 10.2 60.2))",
    "POLYGON((10 60, 10.5 60, 10.5 60.5, 10 60.5, 10 60))",
    "POLYGON((10.8 60.8, 11.5 60.8, 11.5 61.5, 10.8 61.5, 10.8 60.8))",
    "POLYGON((11 60, 12 60, 12 61, 11 61, 11 60))",
    "MULTIPOLYGON(((15 78, 16 78, 16 79, 15 79, 15 78)), ((17 78, 18 78, 18 78.5, 17 78)))",
    "LINESTRING(9 60.5, 12 60.5)",
    "LINESTRING(10.1 60.1, 10.15 60.15, 10.1 60.3)",
    "POINT(10.5 60.5)",
    "POINT(11 60.5)",
    "MULTIPOINT(10.1 60.1, 30 70)",
)]
SHAPES_3D = [shapely.from_wkt(w) for w in ("POINT Z(10 60 120)", "LINESTRING Z(10 60 5, 11 61 -7, 12 60 30)")]


def _literal(geom: shapely.Geometry, kind: str = "wkt") -> str:
    lexical, datatype = write_as(geom, kind)
    return str(ox.Literal(lexical, datatype=ox.NamedNode(datatype)))


@pytest.fixture(scope="module")
def store() -> GeoStore:
    return GeoStore(entailment="none")


def _values(store: GeoStore, expressions: dict[str, str], geoms: list[shapely.Geometry], kind: str = "wkt") -> list[dict]:
    """Evaluate ``name -> expression over ?g`` for each geometry (in serialisation ``kind``), in one query."""
    rows = " ".join(f"({i} {_literal(g, kind)})" for i, g in enumerate(geoms))
    binds = " ".join(f"BIND({expr} AS ?{name})" for name, expr in expressions.items())
    result = store.query(P + f"SELECT * WHERE {{ VALUES (?i ?g) {{ {rows} }} {binds} }} ORDER BY ?i")
    return [{n: result_row[n] for n in ["i", *expressions]} for result_row in result]


def _geodesic_area(geom: shapely.Geometry) -> float:
    """Area in m² by pyproj's own geometry routine (orients rings first, as it needs)."""
    return sum(abs(GEOD.geometry_area_perimeter(shapely.geometry.polygon.orient(p))[0])
               for p in shapely.get_parts(geom) if p.geom_type == "Polygon")


def _laea_area(geom: shapely.Geometry) -> float:
    """Area in m² in a Lambert azimuthal equal-area projection centred on the geometry (an independent method)."""
    c = geom.centroid
    to_laea = Transformer.from_crs("OGC:CRS84", f"+proj=laea +lat_0={c.y} +lon_0={c.x} +datum=WGS84", always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(to_laea.transform(xy[:, 0], xy[:, 1]))).area


def _float(term: ox.Literal | None) -> float:
    assert term is not None
    return float(term.value)


def test_measures_against_pyproj(store: GeoStore) -> None:
    rows = _values(store, {
        "area": "geof:metricArea(?g)", "km2": "geof:area(?g, unit:KiloM2)", "ha": "geof:area(?g, unit:HA)",
        "m2": "geof:area(?g, uom:metre)", "deg2": "geof:area(?g, uom:degree)", "plain": "geof:area(?g)",
        "len": "geof:metricLength(?g)", "km": "geof:length(?g, unit:KiloM)", "ft": "geof:length(?g, unit:FT)",
        "per": "geof:metricPerimeter(?g)", "perkm": "geof:perimeter(?g, uom:kilometre)",
        "lendeg": "geof:length(?g, uom:degree)",
    }, SHAPES)
    for geom, row in zip(SHAPES, rows):
        expected_area = _geodesic_area(geom)
        assert _float(row["area"]) == pytest.approx(expected_area, rel=1e-9, abs=1e-6)
        if expected_area:
            assert _float(row["area"]) == pytest.approx(_laea_area(geom), rel=1e-3)
        assert _float(row["km2"]) == pytest.approx(expected_area / 1e6, rel=1e-9, abs=1e-9)
        assert _float(row["ha"]) == pytest.approx(expected_area / 1e4, rel=1e-9, abs=1e-9)
        assert _float(row["m2"]) == pytest.approx(expected_area, rel=1e-9, abs=1e-6)
        assert _float(row["plain"]) == pytest.approx(expected_area, rel=1e-9, abs=1e-6)
        assert _float(row["deg2"]) == pytest.approx(geom.area, rel=1e-12, abs=1e-12)
        # length as GEOS defines it (polygons: all rings); pyproj sums segments independently
        lines = [p for p in shapely.get_parts(shapely.boundary(geom) if geom.geom_type.endswith("Polygon") else geom)]
        expected_length = sum(GEOD.geometry_length(line) for line in lines if line.geom_type != "Point")
        assert _float(row["len"]) == pytest.approx(expected_length, rel=1e-9, abs=1e-6)
        assert _float(row["km"]) == pytest.approx(expected_length / 1000, rel=1e-9, abs=1e-9)
        assert _float(row["ft"]) == pytest.approx(expected_length / 0.3048, rel=1e-9, abs=1e-6)
        assert _float(row["lendeg"]) == pytest.approx(geom.length, rel=1e-12, abs=1e-12)
        perimeter = expected_length if geom.geom_type.endswith("Polygon") else 0.0
        assert _float(row["per"]) == pytest.approx(perimeter, rel=1e-9, abs=1e-6)
        assert _float(row["perkm"]) == pytest.approx(perimeter / 1000, rel=1e-9, abs=1e-9)
    # metric measures are not planar ones: at 60° N a degree of longitude is half a degree of latitude
    square = _values(store, {"a": "geof:metricArea(?g)"}, [shapely.box(10, 60, 11, 61)])[0]["a"]
    assert 5.5e9 < _float(square) < 6.5e9


def test_metric_distance_and_buffer(store: GeoStore) -> None:
    pairs = [((10, 60), (10.3, 60.2)), ((15, 78), (16, 78.5)), ((-70, -33), (-70.5, -33.4))]
    for (x1, y1), (x2, y2) in pairs:
        a, b = _literal(shapely.Point(x1, y1)), _literal(shapely.Point(x2, y2))
        (row,) = store.query(P + f"SELECT ?m ?d ?km WHERE {{ BIND(geof:metricDistance({a}, {b}) AS ?m) "
                                 f"BIND(geof:distance({a}, {b}, uom:metre) AS ?d) "
                                 f"BIND(geof:distance({a}, {b}, unit:KiloM) AS ?km) }}")
        expected = GEOD.inv(x1, y1, x2, y2)[2]
        assert _float(row["m"]) == pytest.approx(expected, rel=2e-3)
        assert _float(row["m"]) == pytest.approx(_float(row["d"]), rel=1e-12)
        assert _float(row["km"]) == pytest.approx(_float(row["d"]) / 1000, rel=1e-12)
    (row,) = store.query(P + 'SELECT ?b ?b2 WHERE { BIND(geof:metricBuffer("POINT(10 60)"^^geo:wktLiteral, 1000) AS ?b) '
                             'BIND(geof:buffer("POINT(10 60)"^^geo:wktLiteral, 1, unit:KiloM) AS ?b2) }')
    circle = parse_literal(row["b"].value, WKT_LITERAL).geom
    assert _geodesic_area(circle) == pytest.approx(math.pi * 1000**2, rel=0.01)
    assert row["b"] == row["b2"]
    for x, y in np.asarray(circle.exterior.coords)[::8]:
        assert GEOD.inv(10, 60, x, y)[2] == pytest.approx(1000, rel=5e-3)


def test_coordinates_counts_and_predicates(store: GeoStore) -> None:
    exprs = {f"{m}{a}": f"geof:{m}{a}(?g)" for m in ("min", "max") for a in "XYZ"}
    exprs.update({
        "n": "geof:numGeometries(?g)", "first": "geof:geometryN(?g, 1)", "empty": "geof:isEmpty(?g)",
        "simple": "geof:isSimple(?g)", "dim": "geof:dimension(?g)", "cdim": "geof:coordinateDimension(?g)",
        "sdim": "geof:spatialDimension(?g)", "is3d": "geof:is3D(?g)", "m": "geof:isMeasured(?g)",
    })
    shapes = [*SHAPES, *SHAPES_3D, shapely.from_wkt("LINESTRING(0 0, 2 2, 0 2, 2 0)")]
    measured = _values(store, {"m": "geof:isMeasured(?g)", "c": "geof:coordinateDimension(?g)"},
                       [shapely.from_wkt("POINT M (1 2 3)")])[0]
    assert (measured["m"].value, measured["c"].value) == ("true", "3")
    for geom, row in zip(shapes, _values(store, exprs, shapes)):
        minx, miny, maxx, maxy = geom.bounds
        assert [_float(row[k]) for k in ("minX", "minY", "maxX", "maxY")] == pytest.approx([minx, miny, maxx, maxy])
        if geom.has_z:
            z = shapely.get_coordinates(geom, include_z=True)[:, 2]
            assert (_float(row["minZ"]), _float(row["maxZ"])) == (z.min(), z.max())
        else:
            assert row["minZ"] is None and row["maxZ"] is None  # no Z: an expression error, unbound
        assert int(row["n"].value) == shapely.get_num_geometries(geom)
        assert row["n"].datatype.value.endswith("#integer")
        assert parse_literal(row["first"].value, WKT_LITERAL).geom.equals(shapely.get_geometry(geom, 0))
        assert row["empty"].value == "false" and row["simple"].value == str(bool(geom.is_simple)).lower()
        assert int(row["dim"].value) == shapely.get_dimensions(geom)
        assert int(row["cdim"].value) == shapely.get_coordinate_dimension(geom)
        assert int(row["sdim"].value) == (3 if geom.has_z else 2) and row["is3d"].value == str(geom.has_z).lower()
        assert row["m"].value == "false"
    multi = shapely.from_wkt("MULTIPOINT(1 2, 3 4, 5 6)")
    row = _values(store, {"second": "geof:geometryN(?g, 2)", "fourth": "geof:geometryN(?g, 4)",
                          "zero": "geof:geometryN(?g, 0)"}, [multi])[0]
    assert parse_literal(row["second"].value, WKT_LITERAL).geom.equals(shapely.Point(3, 4))
    assert row["fourth"] is None and row["zero"] is None  # out of range (1-based)
    empties = [shapely.from_wkt("POLYGON EMPTY"), shapely.from_wkt("GEOMETRYCOLLECTION EMPTY")]
    rows = _values(store, {"e": "geof:isEmpty(?g)", "x": "geof:minX(?g)", "n": "geof:numGeometries(?g)"}, empties)
    for geom, row in zip(empties, rows):  # GEOS: an empty polygon is one (empty) geometry, an empty collection none
        assert row["e"].value == "true" and row["x"] is None and row["n"].value == str(shapely.get_num_geometries(geom))


def test_native_crs_coordinates_and_transform(store: GeoStore) -> None:
    epsg4326 = '"<http://www.opengis.net/def/crs/EPSG/0/4326> POINT(60 10)"^^geo:wktLiteral'  # lat, lon
    (row,) = store.query(P + f"SELECT ?x ?y ?t ?m ?j WHERE {{ BIND(geof:minX({epsg4326}) AS ?x) "
                             f"BIND(geof:maxY({epsg4326}) AS ?y) "
                             f"BIND(geof:transform({epsg4326}, <http://www.opengis.net/def/crs/EPSG/0/32632>) AS ?t) "
                             f"BIND(geof:transform({epsg4326}, <http://www.opengis.net/def/crs/EPSG/0/3857>) AS ?m) "
                             f"BIND(geof:transform({epsg4326}, <http://www.opengis.net/def/crs/OGC/1.3/CRS84>) AS ?j) }}")
    assert (_float(row["x"]), _float(row["y"])) == (60.0, 10.0)  # the literal's own axes
    for name, code in (("t", 32632), ("m", 3857)):
        crs, wkt = row[name].value.split("> ", 1)
        assert crs == f"<http://www.opengis.net/def/crs/EPSG/0/{code}"
        ex, ey = Transformer.from_crs("OGC:CRS84", f"EPSG:{code}", always_xy=True).transform(10, 60)
        got = shapely.from_wkt(wkt)
        assert (got.x, got.y) == pytest.approx((ex, ey), abs=1e-3)
    assert parse_literal(row["j"].value, WKT_LITERAL).geom.equals(shapely.Point(10, 60))
    # a GeoJSON/KML literal cannot name another CRS: transformed, it is written as WKT
    gj = _literal(shapely.Point(10, 60), "geojson")
    (row,) = store.query(P + f"SELECT ?t ?u WHERE {{ BIND(geof:transform({gj}, <http://www.opengis.net/def/crs/EPSG/0/3857>) AS ?t) "
                             f"BIND(geof:transform({gj}, <http://www.opengis.net/def/crs/EPSG/0/999999>) AS ?u) }}")
    assert row["t"].datatype.value == WKT_LITERAL and row["u"] is None


def test_serialisation_functions_round_trip(store: GeoStore) -> None:
    shapes = [*SHAPES, *SHAPES_3D]
    rows = _values(store, {"wkt": "geof:asWKT(?g)", "gml": "geof:asGML(?g)", "json": "geof:asGeoJSON(?g)",
                           "kml": "geof:asKML(?g)"}, shapes, kind="gml")
    for geom, row in zip(shapes, rows):
        assert row["json"].datatype.value == GEOJSON_LITERAL and row["kml"].datatype.value == KML_LITERAL
        assert json.loads(row["json"].value) == json.loads(shapely.to_geojson(geom))
        for name in ("wkt", "gml", "kml"):
            back = parse_literal(row[name].value, row[name].datatype.value).geom
            assert shapely.equals_exact(back, geom, tolerance=1e-9), (name, back.wkt, geom.wkt)
        assert row["kml"].value.startswith("<") and "http://www.opengis.net/kml/2.2" in row["kml"].value


def test_hulls_centroid_and_bounding_circle(store: GeoStore) -> None:
    points = shapely.MultiPoint(np.round(np.random.default_rng(5).uniform([10, 60], [11, 61], (40, 2)), 4))
    row = _values(store, {"c": "geof:concaveHull(?g)", "c1": "geof:concaveHull(?g, 1.0)", "c0": "geof:concaveHull(?g, 0.1)",
                          "bad": "geof:concaveHull(?g, 3)", "cent": "geof:centroid(?g)",
                          "circle": "geof:boundingCircle(?g)"}, [points])[0]
    def geom(name: str) -> shapely.Geometry:
        return parse_literal(row[name].value, WKT_LITERAL).geom
    assert geom("c").equals(shapely.concave_hull(points, ratio=0.3))
    assert geom("c1").equals(shapely.concave_hull(points, ratio=1.0)) and geom("c1").equals(points.convex_hull)
    assert geom("c0").equals(shapely.concave_hull(points, ratio=0.1)) and geom("c0").area < geom("c1").area
    assert row["bad"] is None
    assert shapely.equals_exact(geom("cent"), points.centroid, tolerance=1e-9)  # results are written to 12 digits
    assert shapely.equals_exact(geom("circle"), shapely.minimum_bounding_circle(points), tolerance=1e-9)


@pytest.mark.parametrize("pair", [("wkt", "geojson"), ("geojson", "kml"), ("kml", "gml"), ("gml", "geojson"),
                                  ("kml", "wkt"), ("geojson", "geojson")])
def test_every_relation_between_serialisations(store: GeoStore, pair: tuple[str, str]) -> None:
    """All 24 relations between literals of two serialisations answer as shapely on the geometries."""
    shapes = SHAPES[:9]
    pairs = list(itertools.product(range(len(shapes)), repeat=2))
    rows = " ".join(f"({i} {j} {_literal(shapes[i], pair[0])} {_literal(shapes[j], pair[1])})" for i, j in pairs)
    binds = " ".join(f"BIND(geof:{name}(?a, ?b) AS ?{name})" for name in RELATIONS)
    result = list(store.query(P + f"SELECT * WHERE {{ VALUES (?i ?j ?a ?b) {{ {rows} }} {binds} }}"))
    assert len(result) == len(pairs)
    for row in result:
        a, b = shapes[int(row["i"].value)], shapes[int(row["j"].value)]
        for name, predicate in RELATIONS.items():
            assert row[name] is not None, (name, pair)
            assert row[name].value == str(bool(predicate(a, b))).lower(), (name, pair, a.wkt, b.wkt)


def _mixed_store() -> GeoStore:
    """Features whose geometries are in all four serialisations (and one WKT in EPSG:4326 axis order)."""
    s = GeoStore(entailment="none")
    lines = []
    for n, geom in enumerate(SHAPES):
        kind = list(KINDS)[n % 4]
        lexical, datatype = write_as(geom, kind)
        prop = {"wkt": "asWKT", "gml": "asGML", "geojson": "asGeoJSON", "kml": "asKML"}[kind]
        lines.append(f"<http://example.org/f{n}> <{GEO}hasDefaultGeometry> <http://example.org/g{n}> .")
        lines.append(f"<http://example.org/g{n}> <{GEO}{prop}> {ox.Literal(lexical, datatype=ox.NamedNode(datatype))} .")
    s.load_data("\n".join(lines), format="ntriples")
    return s


def test_property_forms_index_path_and_aggregates_over_mixed_data() -> None:
    s = _mixed_store()
    assert len(s.index) == len(SHAPES)  # GeoJSON/KML literals are indexed too
    q = P + "SELECT ?f WHERE { ex:f0 geo:sfContains ?f FILTER(STRSTARTS(STR(?f), 'http://example.org/f')) }"
    expected = {f"http://example.org/f{n}" for n, g in enumerate(SHAPES) if SHAPES[0].contains(g)}
    assert {r["f"] for r in s.select(q)} == expected and len(expected) >= 2
    box = _literal(shapely.box(9.9, 59.9, 11.2, 61.2), "geojson")
    q = P + ("SELECT ?g WHERE { ?g geo:asWKT|geo:asGML|geo:asGeoJSON|geo:asKML ?w "
             f"FILTER(geof:sfIntersects(?w, {box})) }}")
    indexed, scanned = ({r["g"] for r in s.select(q, use_index=u)} for u in (True, False))
    assert s.prepare(q)[1] and indexed == scanned
    assert indexed == {f"http://example.org/g{n}" for n, g in enumerate(SHAPES) if g.intersects(shapely.box(9.9, 59.9, 11.2, 61.2))}
    # aggregates: per group and over everything, written like the group's first geometry
    q = P + ("SELECT (geof:aggUnion(?w) AS ?u) (geof:aggConvexHull(?w) AS ?h) (geof:aggBoundingBox(?w) AS ?b) "
             "(geof:aggCentroid(?w) AS ?c) (geof:aggBoundingCircle(?w) AS ?r) (geof:aggConcaveHull(?w) AS ?k) "
             "(COUNT(?w) AS ?n) WHERE { ?g geo:asWKT|geo:asGML|geo:asGeoJSON|geo:asKML ?w }")
    (row,) = list(s.query(q))
    assert int(row["n"].value) == len(SHAPES)
    collection = shapely.GeometryCollection(SHAPES)
    checks = {"u": shapely.union_all(collection), "h": collection.convex_hull, "c": collection.centroid,
              "b": shapely.box(*collection.bounds), "r": shapely.minimum_bounding_circle(collection),
              "k": shapely.concave_hull(collection, ratio=0.3)}
    for name, want in checks.items():
        got = parse_literal(row[name].value, row[name].datatype.value).geom
        assert got.equals(want) or shapely.equals_exact(shapely.normalize(got), shapely.normalize(want), 1e-9), name
    # grouped: one union per serialisation kind, in that kind
    q = P + ("SELECT ?p (geof:aggUnion(?w) AS ?u) WHERE { ?g ?p ?w FILTER(isLiteral(?w) && STRSTARTS(STR(?p), STR(geo:as))) } "
             "GROUP BY ?p")
    groups = {r["p"].value: r["u"] for r in s.query(q)}
    assert len(groups) == 4
    for n, prop in enumerate(("asWKT", "asGML", "asGeoJSON", "asKML")):
        members = [g for m, g in enumerate(SHAPES) if m % 4 == n]
        term = groups[GEO + prop]
        assert term.datatype.value == list(KINDS.values())[n]
        assert parse_literal(term.value, term.datatype.value).geom.equals(shapely.union_all(members))
    # an empty group and a group with a non-geometry term aggregate to unbound
    (row,) = list(s.query(P + "SELECT (geof:aggUnion(?w) AS ?u) WHERE { ?g ex:nothing ?w }"))
    assert row["u"] is None
    (row,) = list(s.query(P + 'SELECT (geof:aggConvexHull(?w) AS ?u) WHERE { VALUES ?w { "POINT(1 1)"^^geo:wktLiteral "x" } }'))
    assert row["u"] is None
    assert aggregate("aggUnion", []) is None
    with pytest.raises(Exception, match="unknown spatial aggregate"):
        aggregate("aggMedian", [])


def test_measure_properties_materialised() -> None:
    s = _mixed_store()
    added = materialise_measures(s)
    q = P + "SELECT ?x ?a WHERE { ?x geo:hasMetricArea ?a }"
    areas = {r["x"]: float(r["a"]) for r in s.select(q)}
    polygons = [n for n, g in enumerate(SHAPES) if g.geom_type.endswith("Polygon")]
    assert set(areas) == {f"http://example.org/{p}{n}" for n in polygons for p in "fg"}
    for n in polygons:
        assert areas[f"http://example.org/g{n}"] == pytest.approx(_geodesic_area(SHAPES[n]), rel=1e-9)
    lengths = {r["x"] for r in s.select(P + "SELECT ?x WHERE { ?x geo:hasMetricLength ?l }")}
    assert lengths == {f"http://example.org/{p}{n}" for n, g in enumerate(SHAPES) if g.geom_type == "LineString" for p in "fg"}
    assert added > 0 and materialise_measures(s) == 0  # idempotent


def test_units_classification_and_errors(store: GeoStore) -> None:
    assert unit_of("http://qudt.org/vocab/unit/KiloM").factor == 1000.0
    assert unit_of("http://www.opengis.net/def/uom/EPSG/0/9001").kind == "length"
    assert unit_of("http://qudt.org/vocab/unit/RAD").factor == pytest.approx(180 / math.pi)
    assert unit_of("http://qudt.org/vocab/unit/HA").kind == "area"
    with pytest.raises(UnitError, match="unsupported unit of measure <http://x/furlong>"):
        unit_of("http://x/furlong")
    with pytest.raises(UnitError, match="is an area unit: expected a unit of length or angle"):
        unit_of("http://qudt.org/vocab/unit/M2", allowed=("length", "angle"))
    (row,) = store.query(P + 'SELECT ?a ?b ?c ?r WHERE { BIND(geof:distance("POINT(0 0)"^^geo:wktLiteral, '
                             '"POINT(0 1)"^^geo:wktLiteral, <http://x/furlong>) AS ?a) '
                             'BIND(geof:length("LINESTRING(0 0, 0 1)"^^geo:wktLiteral, unit:M2) AS ?b) '
                             'BIND(geof:area("POLYGON((0 0,1 0,1 1,0 0))"^^geo:wktLiteral, "metre") AS ?c) '
                             'BIND(geof:distance("POINT(0 0)"^^geo:wktLiteral, "POINT(0 1)"^^geo:wktLiteral, unit:RAD) AS ?r) }')
    assert row["a"] is None and row["b"] is None and row["c"] is None  # expression errors: unbound
    assert _float(row["r"]) == pytest.approx(math.pi / 180)


def test_bad_literals_are_clear_errors() -> None:
    cases = [
        ('{"type":"Pointy","coordinates":[1,2]}', GEOJSON_LITERAL, "malformed GeoJSON literal"),
        ("{not json", GEOJSON_LITERAL, "malformed GeoJSON literal"),
        ("<Point><coordinates>1,x</coordinates></Point>", KML_LITERAL, "not lon,lat"),
        ("<Point><coordinates>1,2</coordinates>", KML_LITERAL, "malformed KML literal"),
        ("<Circle><coordinates>1,2</coordinates></Circle>", KML_LITERAL, "unsupported KML element kml:Circle"),
        ("<LineString><coordinates>1,1</coordinates></LineString>", KML_LITERAL, "invalid KML geometry"),
        ("<https://w3id.org/dggs/h3> CELL (8928308280fffff)", DGGS_LITERAL, "DGGS <https://w3id.org/dggs/h3>"),
        ("CELLLIST R1 R2", DGGS_LITERAL, "malformed DGGS literal"),
        ("CELL (R1 R2)", DGGS_LITERAL, "exactly one cell"),
        ("CELL (X12)", DGGS_LITERAL, "invalid AusPIX cell 'X12'"),
        ("CELL (R9)", DGGS_LITERAL, "invalid AusPIX cell 'R9'"),
        ("CELL (S0)", DGGS_LITERAL, "crosses the antimeridian"),
        ("AAEC", GEO + "wkbLiteral", "unsupported serialisation geo:wkbLiteral"),
        ("POINT(1 1)", "http://example.org/pointLiteral", "is not a geometry literal"),
    ]
    for lexical, datatype, message in cases:
        with pytest.raises(GeometryLiteralError, match=message):
            parse_literal(lexical, datatype)
    for lexical, datatype in (("<https://w3id.org/dggs/h3> CELL (89)", DGGS_LITERAL), ("x", GEO + "wkbLiteral")):
        with pytest.raises(UnsupportedSerialisationError):
            parse_literal(lexical, datatype)
    # KML with a namespace, a Placemark around the geometry, altitude; GeoJSON Feature; empty literals
    kml = ('<kml:Placemark xmlns:kml="http://www.opengis.net/kml/2.2"><kml:name>x</kml:name><kml:Point>'
           "<kml:coordinates>10,60,5</kml:coordinates></kml:Point></kml:Placemark>")
    assert parse_literal(kml, KML_LITERAL).geom.equals(shapely.Point(10, 60, 5))
    feature = '{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[10,60]}}'
    assert parse_literal(feature, GEOJSON_LITERAL).geom.equals(shapely.Point(10, 60))
    assert parse_literal("", GEOJSON_LITERAL).geom.is_empty and parse_literal(" ", KML_LITERAL).geom.is_empty


@pytest.fixture(scope="module")
def server():
    s = GeoStore()
    s.load_data(f'<http://example.org/g> <{GEO}asGeoJSON> "{{\\"type\\":\\"Point\\",\\"coordinates\\":[1,2]}}"'
                f"^^<{GEOJSON_LITERAL}> .", format="ntriples")
    with EndpointServer(s, port=free_port(), timeout=5) as srv:
        yield srv


def test_http_bad_literals_and_unknown_functions_are_400(server: EndpointServer) -> None:
    bad = {
        'geof:sfIntersects(?w, "{\\"type\\":\\"Pt\\"}"^^geo:geoJSONLiteral)': ("geo:geoJSONLiteral", "malformed GeoJSON"),
        'geof:sfIntersects(?w, "<Point><coordinates>a</coordinates></Point>"^^geo:kmlLiteral)': ("geo:kmlLiteral", "KML"),
        'geof:sfWithin(?w, "<https://w3id.org/dggs/h3> CELL (89)"^^geo:dggsLiteral)': ("geo:dggsLiteral",
                                                                                  "unsupported serialisation"),
        'geof:sfWithin(?w, "CELL (R1234567812345678)"^^geo:dggsLiteral)': ("geo:dggsLiteral", "finer than"),
        "geof:asDGGS(?w)": ("geof:asDGGS", "not implemented"),
        "geof:aggMedian(?w)": ("geof:aggMedian", "not implemented"),
    }
    for expression, words in bad.items():
        q = P + f"SELECT ?g WHERE {{ ?g geo:asGeoJSON ?w FILTER(COALESCE({expression}, true)) }}"
        response = httpx.get(server.url, params={"query": q}, timeout=30)
        assert response.status_code == 400, (expression, response.text)
        assert all(w in response.text for w in words), response.text
        assert "Traceback" not in response.text
    good = P + ('SELECT (SAMPLE(geof:metricArea(geof:metricBuffer(?w, 100))) AS ?a) (geof:aggUnion(?w) AS ?u) '
                'WHERE { ?g geo:asGeoJSON ?w FILTER(geof:sfWithin(?w, "<Polygon><outerBoundaryIs><LinearRing><coordinates>'
                '0,0 3,0 3,3 0,3 0,0</coordinates></LinearRing></outerBoundaryIs></Polygon>"^^geo:kmlLiteral)) }')
    response = httpx.get(server.url, params={"query": good}, headers={"Accept": "application/sparql-results+json"},
                         timeout=30)
    assert response.status_code == 200, response.text
    (binding,) = response.json()["results"]["bindings"]
    assert float(binding["a"]["value"]) == pytest.approx(math.pi * 100**2, rel=0.02)
    assert binding["u"]["datatype"] == GEOJSON_LITERAL


def test_auspix_dggs_literals_against_rhealpixdggs(store: GeoStore) -> None:
    """AusPIX cells (rHEALPix WGS84, N_side 3) as geometries: areas, containment, adjacency, unions, relations."""
    from rhealpixdggs.dggs import WGS84_003

    def cell(name: str):  # type: ignore[no-untyped-def]
        return WGS84_003.cell((name[0], *(int(d) for d in name[1:])))

    names = ["R", "N", "P", "Q4", "R12", "R123", "N12", "S56", "O0"]
    rows = _values_dggs(store, {"a": "geof:metricArea(?g)", "d": "geof:dimension(?g)"}, names)
    for name, row in zip(names, rows):
        assert _float(row["a"]) == pytest.approx(cell(name).area(plane=False), rel=1e-4), name
        assert row["d"].value == "2"
    # a cell contains its centroid, its children, and its children together are the cell
    for name in ("R12", "Q4", "N12"):
        x, y = cell(name).centroid(plane=False)
        children = " ".join(name + str(k) for k in range(9))
        (row,) = store.query(P + f'SELECT ?in ?child ?eq ?dist WHERE {{ BIND("CELL ({name})"^^geo:dggsLiteral AS ?c) '
                                 f'BIND(geof:sfContains(?c, "POINT({x} {y})"^^geo:wktLiteral) AS ?in) '
                                 f'BIND(geof:ehCovers(?c, "CELL ({name}4)"^^geo:dggsLiteral) AS ?child) '
                                 f'BIND(geof:symDifference(?c, "CELLLIST (({children}))"^^geo:dggsLiteral) AS ?eq) }}')
        assert row["in"].value == "true" and row["child"].value == "false"  # the centre child does not reach the edge
        residue = parse_literal(row["eq"].value, row["eq"].datatype.value).geom
        assert row["eq"].datatype.value == WKT_LITERAL and residue.area < 1e-9 * cell(name).area(plane=True)
    neighbour = str(cell("R12").neighbor("left"))  # R11, by the library's own adjacency
    (row,) = store.query(P + 'SELECT ?t ?o ?w WHERE { BIND(geof:sfTouches("CELL (R12)"^^geo:dggsLiteral, '
                             f'"CELL ({neighbour})"^^geo:dggsLiteral) AS ?t) BIND(geof:sfOverlaps("CELL (R12)"^^geo:dggsLiteral, '
                             '"CELLLIST ((R121 R13))"^^geo:dggsLiteral) AS ?o) '
                             'BIND(geof:sfWithin("CELL (R123)"^^geo:dggsLiteral, '
                             '"POLYGON((130 30, 150 30, 150 45, 130 45, 130 30))"^^geo:wktLiteral) AS ?w) }')
    assert (row["t"].value, row["o"].value) == ("true", "true")
    assert row["w"].value == str(bool(parse_literal("CELL (R123)", DGGS_LITERAL).geom.within(
        shapely.box(130, 30, 150, 45)))).lower() == "true"


def test_dggs_data_is_indexed_and_rewritten() -> None:
    s = GeoStore(entailment="none")
    s.load_data("\n".join(
        f'<http://example.org/c{n}> <{GEO}hasDefaultGeometry> <http://example.org/c{n}g> .\n'
        f'<http://example.org/c{n}g> <{GEO}asDGGS> "CELL ({n})"^^<{DGGS_LITERAL}> .'
        for n in ("R12", "R123", "R5", "Q4")), format="ntriples")
    assert len(s.index) == 4
    q = P + ('SELECT ?g WHERE { ?g geo:asDGGS ?d FILTER(geof:sfIntersects(?d, '
             '"POLYGON((140 35, 141 35, 141 36, 140 36, 140 35))"^^geo:wktLiteral)) }')
    assert s.prepare(q)[1]
    indexed, scanned = ({r["g"] for r in s.select(q, use_index=u)} for u in (True, False))
    assert indexed == scanned == {"http://example.org/c" + n + "g" for n in ("R12", "R123")}
    rows = s.select(P + "SELECT ?f WHERE { ex:cR12 geo:sfContains ?f FILTER(STRSTARTS(STR(?f), STR(ex:c))) }")
    assert {r["f"] for r in rows} == {f"http://example.org/{n}" for n in ("cR12", "cR12g", "cR123", "cR123g")}


def test_property_forms_follow_has_serialization() -> None:
    """GeoSPARQL 1.1's super-property of the serialisations is followed by the query rewrite too."""
    s = GeoStore(entailment="none")
    s.load_data(f"""@prefix geo: <{GEO}> . @prefix ex: <http://example.org/> .
        ex:a geo:hasDefaultGeometry ex:ga . ex:ga geo:hasSerialization "POLYGON((0 0,10 0,10 10,0 10,0 0))"^^geo:wktLiteral .
        ex:b geo:hasDefaultGeometry ex:gb . ex:gb geo:hasSerialization "{{\\"type\\":\\"Point\\",\\"coordinates\\":[5,5]}}"^^geo:geoJSONLiteral .
        ex:c geo:hasDefaultGeometry ex:gc . ex:gc geo:asWKT "POINT(50 50)"^^geo:wktLiteral .""")
    rows = s.select(P + "SELECT ?f WHERE { ex:a geo:sfContains ?f }")
    assert {r["f"].rsplit("/", 1)[-1] for r in rows} == {"a", "ga", "b", "gb"}


def _values_dggs(store: GeoStore, expressions: dict[str, str], cells: list[str]) -> list[dict]:
    rows = " ".join(f'({i} "<https://w3id.org/dggs/auspix> CELL ({c})"^^geo:dggsLiteral)' for i, c in enumerate(cells))
    binds = " ".join(f"BIND({expr} AS ?{name})" for name, expr in expressions.items())
    result = store.query(P + f"SELECT * WHERE {{ VALUES (?i ?g) {{ {rows} }} {binds} }} ORDER BY ?i")
    return [{n: r[n] for n in ["i", *expressions]} for r in result]


def test_issue_14_user_queries_over_sparqlwrapper(server: EndpointServer) -> None:
    """Issue 14, tried as a user: sfIntersects WKT/GeoJSON/KML, area, length, metricArea, minX..maxZ, numGeometries."""
    from SPARQLWrapper import JSON, SPARQLWrapper

    client = SPARQLWrapper(server.url)
    client.setReturnFormat(JSON)
    square = "POLYGON((0 0, 3 0, 3 3, 0 3, 0 0))"
    client.setQuery(P + f"""SELECT ?i ?k ?a ?l ?m ?x ?X ?z ?n WHERE {{
        ?g geo:asGeoJSON ?w .
        BIND(geof:sfIntersects("{square}"^^geo:wktLiteral, ?w) AS ?i)
        BIND(geof:sfIntersects(?w, "<Point><coordinates>1,2</coordinates></Point>"^^geo:kmlLiteral) AS ?k)
        BIND(geof:area("{square}"^^geo:wktLiteral, unit:M2) AS ?a)
        BIND(geof:length("LINESTRING(0 0, 0 1)"^^geo:wktLiteral, uom:metre) AS ?l)
        BIND(geof:metricArea("{square}"^^geo:wktLiteral) AS ?m)
        BIND(geof:minX(?w) AS ?x) BIND(geof:maxX("{square}"^^geo:wktLiteral) AS ?X)
        BIND(geof:maxZ("POINT Z(1 2 30)"^^geo:wktLiteral) AS ?z)
        BIND(geof:numGeometries("MULTIPOINT(1 1, 2 2)"^^geo:wktLiteral) AS ?n) }}""")
    (row,) = client.query().convert()["results"]["bindings"]
    assert row["i"]["value"] == "true" and row["k"]["value"] == "true"
    assert float(row["a"]["value"]) == pytest.approx(_geodesic_area(shapely.box(0, 0, 3, 3)), rel=1e-9)
    assert float(row["m"]["value"]) == float(row["a"]["value"])
    assert float(row["l"]["value"]) == pytest.approx(GEOD.inv(0, 0, 0, 1)[2], rel=1e-9)
    assert (float(row["x"]["value"]), float(row["X"]["value"]), float(row["z"]["value"])) == (1.0, 3.0, 30.0)
    assert row["n"] == {"type": "literal", "datatype": "http://www.w3.org/2001/XMLSchema#integer", "value": "2"}


# ---------------------------------------------------------------- compliance runner on the 1.1 layout

def _runner():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("geosparql_compliance", ROOT / "benchmarks" / "geosparql_compliance.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["geosparql_compliance"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_DATASET = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:rdfs="http://www.w3.org/2000/01/rdf-schema#"
         xmlns:geo="http://www.opengis.net/ont/geosparql#" xmlns:ex="http://example.org/">
  <rdf:Description rdf:about="http://example.org/A">
    <geo:hasDefaultGeometry rdf:resource="http://example.org/AG"/>
    <geo:sfContains rdf:resource="http://example.org/B"/>
    <rdf:type rdf:resource="http://example.org/Lake"/>
  </rdf:Description>
  <rdf:Description rdf:about="http://example.org/Lake">
    <rdfs:subClassOf rdf:resource="http://www.opengis.net/ont/geosparql#Feature"/>
  </rdf:Description>
  <rdf:Description rdf:about="http://example.org/AG">
    <geo:asWKT rdf:datatype="http://www.opengis.net/ont/geosparql#wktLiteral">POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))</geo:asWKT>
  </rdf:Description>
  <rdf:Description rdf:about="http://example.org/B">
    <geo:hasDefaultGeometry rdf:resource="http://example.org/BG"/>
  </rdf:Description>
  <rdf:Description rdf:about="http://example.org/BG">
    <geo:asGeoJSON rdf:datatype="http://www.opengis.net/ont/geosparql#geoJSONLiteral">{"type":"Point","coordinates":[5,5]}</geo:asGeoJSON>
  </rdf:Description>
</rdf:RDF>
"""
_PFX = "PREFIX geo: <http://www.opengis.net/ont/geosparql#> PREFIX geof: <http://www.opengis.net/def/function/geosparql/> "
_PFX += "PREFIX ex: <http://example.org/> "


def _srx(variable: str, values: list[tuple[str, str]]) -> str:
    results = "".join(f'<result><binding name="{variable}"><{kind}{extra}>{value}</{kind}></binding></result>'
                      for kind, value, extra in ((k, v, "") if k == "uri" else ("literal", v, f' datatype="{k}"')
                                                 for k, v in values))
    return ('<?xml version="1.0"?><sparql xmlns="http://www.w3.org/2005/sparql-results#">'
            f'<head><variable name="{variable}"/></head><results>{results}</results></sparql>')


def _write_suite(folder: Path, tests: dict[str, tuple[str, str]]) -> None:
    (folder / "gsb_dataset").mkdir(parents=True)
    (folder / "gsb_queries").mkdir()
    (folder / "gsb_answers").mkdir()
    (folder / "gsb_dataset" / "dataset.rdf").write_text(_DATASET)
    for name, (query, answer) in tests.items():
        (folder / "gsb_queries" / f"{name}.rq").write_text(_PFX + query)
        (folder / "gsb_answers" / f"{name}.srx").write_text(answer)


def test_compliance_runner_reads_both_suite_layouts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkout holding a 1.0 and a 1.1 suite: each is detected, routed by its own numbering, run for real."""
    runner = _runner()
    asserted_only = _srx("f", [("uri", "http://example.org/B")])  # the topology vocabulary: asserted triples only
    lake_is_feature = _srx("f", [("uri", "http://example.org/A")])
    xsd_double = "http://www.w3.org/2001/XMLSchema#double"
    contains = "SELECT ?f WHERE { ex:A geo:sfContains ?f }"
    features = "SELECT ?f WHERE { ?f a geo:Feature }"
    area = ("SELECT ?a WHERE { ex:AG geo:asWKT ?w BIND(ROUND(geof:area(?w, <http://www.opengis.net/def/uom/OGC/1.0/degree>)) AS ?a) }")
    mixed = "SELECT ?f WHERE { ?f geo:asGeoJSON ?p . ex:AG geo:asWKT ?w FILTER(geof:sfWithin(?p, ?w)) }"
    resources = tmp_path / "checkout" / "src" / "main" / "resources"
    _write_suite(resources / "geosparql10_compliance", {
        "query-r04-1": (contains, asserted_only),    # 1.0 topology vocabulary
        "query-r25-1": (features, lake_is_feature),  # 1.0 RDFS entailment
    })
    _write_suite(resources / "geosparql11_compliance", {
        "query-r08-1": (contains, asserted_only),    # 1.1 topology vocabulary
        "query-r25-1": (mixed, _srx("f", [("uri", "http://example.org/BG")])),  # 1.1: GeoJSON literal (not RDFS)
        "query-r42-1": (area, _srx("a", [(xsd_double, "100")])),
        "query-r47-1": (features, lake_is_feature),  # 1.1 RDFS entailment
        "query-r47-2": (features, _srx("f", [("uri", "http://example.org/Nothing")])),  # a wrong answer: must fail
    })
    suites = runner.find_suites(tmp_path / "checkout")
    assert [(s.version, s.root.name) for s in suites] == [("1.0", "geosparql10_compliance"),
                                                          ("1.1", "geosparql11_compliance")]
    assert runner.configuration_for("query-r47-1", "benchmark", "1.1") == "rdfs"
    assert runner.configuration_for("query-r25-1", "benchmark", "1.1") == "plain"
    assert runner.configuration_for("query-r25-1", "benchmark", "1.0") == "rdfs"
    assert runner.configuration_for("query-r09-3", "conformance-class", "1.1") == "vocabulary"
    assert runner.configuration_for("query-r09-3", "conformance-class", "1.0") == "plain"
    assert runner.main(["--suite", str(tmp_path / "checkout"), "--profile", "conformance-class", "-v"]) == 0
    out = capsys.readouterr().out
    assert "GeoSPARQL 1.0 compliance suite" in out and "GeoSPARQL 1.1 compliance suite" in out
    failed = [line.split()[1:] for line in out.splitlines() if line.startswith("failed:")]
    assert failed == [[], ["query-r47-2"]], out
    assert "workbench endpoint, GeoSPARQL 1.1: 4/5 tests" in out and "GeoSPARQL 1.0: workbench 2/2" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("geosparql_compliance_vs_pyoxigraph_builtin: 6/7 vs ") and "(GeoSPARQL 1.0+1.1)" in last
    # the benchmark's own profile routes the vocabulary tests to the rewriting store: they then fail
    assert runner.main(["--suite", str(resources / "geosparql11_compliance"), "--no-baseline", "-v"]) == 0
    out = capsys.readouterr().out
    assert "failed: query-r08-1 query-r47-2" in out and out.strip().endswith("geosparql_compliance_score: 60.0%")
    # a folder that is no suite: a clear usage error
    with pytest.raises(SystemExit):
        runner.main(["--suite", str(tmp_path)])
    assert "is not a GeoSPARQL compliance benchmark suite" in capsys.readouterr().err
