"""GeoSPARQL 1.1 functions: the workbench's (shapely/pyproj, Python callbacks) vs pyoxigraph's built-in ones.

    python benchmarks/geosparql11_functions.py [--small]

pyoxigraph 0.5.13 ships part of Oxigraph's ``spargeo`` in its wheel: the topological
relations, ``relate``, ``envelope``, ``convexHull``, ``union``, ``intersection``,
``difference``, ``symDifference``, ``getSRID``, ``asGeoJSON``, ``isEmpty``, ``isSimple``,
``dimension``, ``coordinateDimension``, ``spatialDimension`` (and ``area``, ``length``,
``distance`` that answer nothing). For each function both implement, this benchmark

1. checks the answers on literals of every kind (CRS84 WKT, WKT in EPSG:4326 axis order,
   WKT in a projected CRS, GML, GeoJSON) against shapely on the CRS84 geometries, and
2. times a full scan (every literal of the store through the function, no index) on the
   same store with the built-ins (the named baseline) and with the workbench functions,
   after checking that both give the same answers on CRS84 WKT data.

The last line is the speed ratio of the built-ins over ours (> 1: ours faster) and how
many check cases each side gets right.
"""

from __future__ import annotations

import argparse
import json

import pyoxigraph as ox
import shapely

from _timing import best_of  # benchmarks/ is on sys.path when a benchmark runs as a script
from workbench.linked.geometry import parse_literal
from workbench.linked.store import GeoStore
from workbench.linked.synthetic import generate, to_ntriples

P = ("PREFIX geo: <http://www.opengis.net/ont/geosparql#> PREFIX geof: <http://www.opengis.net/def/function/geosparql/> ")
GEO = "http://www.opengis.net/ont/geosparql#"

#: function -> (SPARQL expression over ?x and ?c, shapely truth on CRS84 geometries a (=?x) and c)
CHECKS = {
    "sfIntersects": ("geof:sfIntersects(?x, ?c)", lambda a, c: str(bool(a.intersects(c))).lower()),
    "sfWithin": ("geof:sfWithin(?x, ?c)", lambda a, c: str(bool(a.within(c))).lower()),
    "ehCovers": ("geof:ehCovers(?c, ?x)", lambda a, c: str(bool(shapely.relate_pattern(c, a, "T*TFT*FF*"))).lower()),
    "dimension": ("geof:dimension(?x)", lambda a, c: str(shapely.get_dimensions(a))),
    "isEmpty": ("geof:isEmpty(?x)", lambda a, c: str(bool(a.is_empty)).lower()),
    "envelope": ("geof:envelope(?x)", lambda a, c: tuple(round(v, 9) for v in a.bounds)),  # a box, by its corners
    "asGeoJSON": ("geof:asGeoJSON(?x)", lambda a, c: json.loads(shapely.to_geojson(a))),
}

_CONSTANT = shapely.box(10.0, 60.0, 11.0, 61.0)


def _cases() -> list[tuple[str, ox.Literal, shapely.Geometry]]:
    """(kind, literal, CRS84 geometry) check cases: one geometry inside, one outside the constant box."""
    cases = []
    for geom in (shapely.box(10.2, 60.2, 10.4, 60.4), shapely.Point(12.5, 60.5)):
        x0, y0, x1, y1 = geom.bounds
        lat_lon = shapely.transform(geom, lambda xy: xy[:, ::-1])
        forms = {
            "wkt-crs84": (geom.wkt, "wktLiteral"),
            "wkt-epsg4326": (f"<http://www.opengis.net/def/crs/EPSG/0/4326> {lat_lon.wkt}", "wktLiteral"),
            "gml": (_gml(geom), "gmlLiteral"),
            "geojson": (shapely.to_geojson(geom), "geoJSONLiteral"),
        }
        for kind, (lexical, datatype) in forms.items():
            cases.append((kind, ox.Literal(lexical, datatype=ox.NamedNode(GEO + datatype)), geom))
    return cases


def _gml(geom: shapely.Geometry) -> str:
    from workbench.linked.geometry import write_gml

    return write_gml(geom)


def _same(value: ox.Literal | None, truth: object) -> bool:
    if value is None:
        return False
    if isinstance(truth, shapely.Geometry):
        try:
            return parse_literal(value.value, value.datatype.value).geom.equals(truth)
        except Exception:  # noqa: BLE001 - an unreadable answer is a wrong one
            return False
    if isinstance(truth, tuple):
        try:
            bounds = parse_literal(value.value, value.datatype.value).geom.bounds
        except Exception:  # noqa: BLE001
            return False
        return tuple(round(v, 9) for v in bounds) == truth
    if isinstance(truth, dict):
        try:
            return shapely.from_geojson(value.value).equals(shapely.from_geojson(json.dumps(truth)))
        except Exception:  # noqa: BLE001
            return False
    return value.value == truth


def check(store: GeoStore) -> tuple[int, int, int, list[str]]:
    """Check cases: (built-ins right, ours right, cases, what the built-ins got wrong)."""
    constant = ox.Literal(_CONSTANT.wkt, datatype=ox.NamedNode(GEO + "wktLiteral"))
    right_native = right_ours = total = 0
    wrong: list[str] = []
    for kind, literal, geom in _cases():
        for name, (expr, truth) in CHECKS.items():
            q = P + f"SELECT ?v WHERE {{ BIND({literal} AS ?x) BIND({constant} AS ?c) BIND({expr} AS ?v) }}"
            want = truth(geom, _CONSTANT)
            native = next(iter(store.pyoxigraph.query(q)))["v"]
            ours = next(iter(store.query(q, use_index=False)))["v"]
            total += 1
            right_native += _same(native, want)
            right_ours += _same(ours, want)
            if not _same(native, want):
                wrong.append(f"{name}/{kind}")
    return right_native, right_ours, total, wrong


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    """Best of ``repeat`` runs (the machine is shared and noisy)."""
    return best_of(fn, repeat=repeat)


def scans(store: GeoStore) -> tuple[float, float]:
    """Full scans through each shared function: total seconds (built-ins, ours), answers compared."""
    constant = f'"{_CONSTANT.wkt}"^^geo:wktLiteral'
    native_total = ours_total = 0.0
    for name, (expr, _) in CHECKS.items():
        expr = expr.replace("?c", constant)
        q = P + f"SELECT ?g ?v WHERE {{ ?g geo:asWKT ?x BIND({expr} AS ?v) }}"
        native_t, native = timed(lambda: sorted((str(r["g"]), _key(r["v"])) for r in store.pyoxigraph.query(q)))
        ours_t, ours = timed(lambda: sorted((str(r["g"]), _key(r["v"])) for r in store.query(q, use_index=False)))
        assert native == ours, f"{name}: the built-in and the workbench answers differ on CRS84 WKT data"
        native_total += native_t
        ours_total += ours_t
        print(f"scan geof:{name} over {len(ours)} literals: built-in {native_t:.3f}s, ours {ours_t:.3f}s, "
              f"{native_t / ours_t:.2f}x")
    return native_total, ours_total


def _key(term: ox.Literal | None) -> str:
    """A comparable answer: geometries by their normalised shape (the two sides write WKT differently)."""
    if term is None:
        return "unbound"
    if term.datatype.value.startswith(GEO):
        geom = parse_literal(term.value, term.datatype.value).geom
        return shapely.to_wkt(shapely.normalize(geom), rounding_precision=6)
    return term.value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run (2k geometries instead of 20k)")
    args = parser.parse_args(argv)
    n = 2_000 if args.small else 20_000
    store = GeoStore(entailment="none")
    store.load_data(to_ntriples({"land": generate(n, seed=2)["land"]}), format="ntriples")
    right_native, right_ours, total, wrong = check(store)
    print(f"check cases right: built-in {right_native}/{total}, ours {right_ours}/{total}")
    if wrong:
        print("built-in wrong or unbound on: " + ", ".join(wrong))
    native_t, ours_t = scans(store)
    print(f"geosparql11_functions_vs_pyoxigraph_builtin: scans {native_t:.2f}s vs ours {ours_t:.2f}s = "
          f"{native_t / ours_t:.2f}x; correct {right_ours}/{total} vs built-in {right_native}/{total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
