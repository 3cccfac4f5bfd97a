"""GeoSPARQL store: functions, CRS handling, property rewriting, spatial index (= unindexed), mapping."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest

from workbench.errors import DataError
from workbench.linked import GeoStore, QuerySyntaxError, load_mapping, map_to_file, map_to_store
from workbench.linked.geometry import GeometryLiteralError, parse_gml, parse_literal, write_gml
from workbench.linked.mapping import MappingError
from workbench.linked.synthetic import generate, to_ntriples, write_sample_products
from workbench.linked.vocab import WKT_LITERAL

P = """PREFIX geo: <http://www.opengis.net/ont/geosparql#>
PREFIX geof: <http://www.opengis.net/def/function/geosparql/>
PREFIX uom: <http://www.opengis.net/def/uom/OGC/1.0/>
PREFIX ex: <http://example.org/>
"""

DATA = """@prefix geo: <http://www.opengis.net/ont/geosparql#> . @prefix ex: <http://example.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:Park rdfs:subClassOf geo:Feature .
ex:a a ex:Park ; geo:hasDefaultGeometry ex:ga ; geo:hasGeometry ex:ga .
ex:ga geo:asWKT "POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))"^^geo:wktLiteral .
ex:b a geo:Feature ; geo:hasDefaultGeometry ex:gb . ex:gb geo:asWKT "POLYGON((2 2, 4 2, 4 4, 2 4, 2 2))"^^geo:wktLiteral .
ex:c a geo:Feature ; geo:hasDefaultGeometry ex:gc . ex:gc geo:asWKT "<http://www.opengis.net/def/crs/EPSG/0/4326> POINT(5 20)"^^geo:wktLiteral .
ex:d a geo:Feature ; geo:hasDefaultGeometry ex:gd .
ex:gd geo:asGML "<gml:Polygon xmlns:gml='http://www.opengis.net/ont/gml' srsName='http://www.opengis.net/def/crs/OGC/1.3/CRS84'><gml:exterior><gml:LinearRing><gml:posList>10 0 12 0 12 2 10 2 10 0</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"^^geo:gmlLiteral .
"""


@pytest.fixture()
def store() -> GeoStore:
    s = GeoStore()
    s.load_data(DATA)
    return s


def _col(rows: list[dict], name: str) -> list[str]:
    return sorted(r[name].rsplit("/", 1)[-1] for r in rows)


def test_crs_axis_order_wkt_and_gml() -> None:
    v = parse_literal("<http://www.opengis.net/def/crs/EPSG/0/4326> POINT(34.3 -83.4)", WKT_LITERAL)
    assert (v.geom.x, v.geom.y) == (-83.4, 34.3)  # EPSG:4326 is lat/lon; held as CRS84 lon/lat
    assert parse_literal("POINT(1 2)", WKT_LITERAL).geom.x == 1
    g = parse_gml(write_gml(v.geom))
    assert g.geom.equals(v.geom)
    with pytest.raises(GeometryLiteralError, match="malformed WKT"):
        parse_literal("POLYGON((0 0, 1", WKT_LITERAL)
    with pytest.raises(GeometryLiteralError, match="unknown CRS"):
        parse_literal("<http://example.org/crs> POINT(1 2)", WKT_LITERAL)


def test_functions_and_units(store: GeoStore) -> None:
    rows = store.select(P + """SELECT ?i ?d ?m ?srid ?b WHERE {
      ex:ga geo:asWKT ?a . ex:gb geo:asWKT ?b0 . ex:gc geo:asWKT ?c .
      BIND(geof:intersection(?a, ?b0) AS ?i) BIND(geof:distance(?a, ?c, uom:degree) AS ?d)
      BIND(geof:distance(ex:nothing, ?c, uom:metre) AS ?x)
      BIND(geof:distance("POINT(0 0)"^^geo:wktLiteral, "POINT(0 1)"^^geo:wktLiteral, uom:metre) AS ?m)
      BIND(geof:getSRID(?c) AS ?srid) BIND(geof:relate(?a, ?b0, "T*****FF*") AS ?b) }""")
    (row,) = rows
    assert "POLYGON" in row["i"] and float(row["d"]) == pytest.approx(10.0)
    assert float(row["m"]) == pytest.approx(110574, rel=2e-3)  # one degree of latitude at the equator
    assert row["srid"] == "http://www.opengis.net/def/crs/EPSG/0/4326" and row["b"] == "true"
    # GML and WKT mix; GML in, GML out
    (row,) = store.select(P + "SELECT ?t ?u WHERE { ex:gd geo:asGML ?g . ex:ga geo:asWKT ?a "
                          "BIND(geof:sfTouches(?g, ?a) AS ?t) BIND(geof:union(?g, ?a) AS ?u) }")
    assert row["t"] == "true" and row["u"].startswith("<gml:Polygon")


def test_default_prefixes(store: GeoStore) -> None:
    rows = store.select('SELECT ?g WHERE { ?g geo:asWKT ?w FILTER(geof:sfWithin(?w, "POLYGON((1 1,5 1,5 5,1 5,1 1))"^^geo:wktLiteral)) }')
    assert _col(rows, "g") == ["gb"]


def test_buffer_in_metres_reprojects(store: GeoStore) -> None:
    (row,) = store.select(P + 'SELECT ?buf WHERE { BIND(geof:buffer("POINT(10 60)"^^geo:wktLiteral, 1000, uom:metre) AS ?buf) }')
    geom = parse_literal(row["buf"], WKT_LITERAL).geom
    width, height = geom.bounds[2] - geom.bounds[0], geom.bounds[3] - geom.bounds[1]
    assert height == pytest.approx(2000 / 111_400, rel=0.01)
    assert width == pytest.approx(2 * height, rel=0.02)  # at 60°N a degree of longitude is half as long


def test_property_form_rewrite_and_entailment(store: GeoStore) -> None:
    rows = store.select(P + "SELECT ?f WHERE { ?f geo:sfWithin ex:a }")
    assert _col(rows, "f") == ["a", "b", "ga", "gb"]  # features and geometries, each once
    rows = store.select(P + "SELECT ?f WHERE { ?f a geo:Feature }")
    assert "a" in _col(rows, "f")  # ex:Park rdfs:subClassOf geo:Feature
    assert store.select(P + "SELECT ?f WHERE { ex:d geo:sfTouches ?f }")
    # inside predicate-object lists, with the index on the rewritten FILTERs
    q = P + "SELECT ?f WHERE { ?f a geo:Feature ; geo:sfContains ex:b ; geo:hasDefaultGeometry ?g }"
    assert _col(store.select(q), "f") == ["a", "b"] and store.prepare(q)[1]  # b contains itself
    assert _col(store.select(P + "SELECT ?f WHERE { ?f a geo:Feature ; geo:sfContains ex:b . }"), "f") == ["a", "b"]


def test_index_equals_unindexed_on_synthetic_data() -> None:
    s = GeoStore()
    s.load_data(to_ntriples(generate(200, seed=1)), format="ntriples")
    queries = [
        P + "PREFIX syn: <http://extremeearth.eu/synthetic/> SELECT ?a ?b WHERE { ?a a syn:Land ; geo:hasGeometry/geo:asWKT ?x . "
        "?b a syn:State ; geo:hasGeometry ?g . ?g geo:asWKT ?y . FILTER(geof:sfIntersects(?x, ?y)) }",
        P + "PREFIX syn: <http://extremeearth.eu/synthetic/> SELECT ?a ?b WHERE { ?a a syn:Poi ; syn:tag ?t ; geo:hasGeometry/geo:asWKT ?x . "
        "?b a syn:Land ; geo:hasGeometry/geo:asWKT ?y . FILTER(?t < 50 && geof:sfWithin(?x, ?y)) }",
        P + "PREFIX syn: <http://extremeearth.eu/synthetic/> SELECT ?a ?b WHERE { ?a a syn:Land ; geo:hasGeometry/geo:asWKT ?x . "
        "?b a syn:Land ; geo:hasGeometry/geo:asWKT ?y . FILTER(geof:sfTouches(?x, ?y)) }",
        P + 'SELECT ?g WHERE { ?g geo:asWKT ?x FILTER(geof:sfIntersects(?x, "POLYGON((10 10, 30 10, 30 25, 10 25, 10 10))"^^geo:wktLiteral)) }',
        P + 'SELECT ?g WHERE { ?g geo:asWKT ?x FILTER(geof:ehInside(?x, "POLYGON((10 10, 30 10, 30 25, 10 25, 10 10))"^^geo:wktLiteral)) }',
        P + "SELECT ?g ?h WHERE { ?g geo:asWKT ?x . ?h geo:asWKT ?y FILTER(geof:rcc8ec(?x, ?y)) }",  # whole-index domains
    ]
    for q in queries:
        text, uses_index = s.prepare(q)
        assert uses_index and "VALUES" in text
        indexed = sorted(map(str, s.select(q)))
        assert indexed and indexed == sorted(map(str, s.select(q, use_index=False)))


def test_persistence_update_and_malformed(tmp_path: Path) -> None:
    s = GeoStore(tmp_path / "db")
    s.load_data(DATA)
    s.update(P + 'INSERT DATA { ex:ge geo:asWKT "POINT(3 3)"^^geo:wktLiteral }')
    n = len(s.index)
    del s
    s = GeoStore(tmp_path / "db")  # reopened: data and index are back
    assert len(s.index) == n == 5
    rows = s.select(P + 'SELECT ?g WHERE { ?g geo:asWKT ?x FILTER(geof:sfWithin(?x, "POLYGON((2.5 2.5,3.5 2.5,3.5 3.5,2.5 3.5,2.5 2.5))"^^geo:wktLiteral)) }')
    assert _col(rows, "g") == ["ge"]
    s.update(P + "DELETE WHERE { ex:ge geo:asWKT ?x }")
    assert len(s.index) == 4
    with pytest.raises(QuerySyntaxError, match="error"):
        s.query("SELECT ?x WHERE { ?x ")
    with pytest.raises(QuerySyntaxError):
        s.update("INSERT DATA { nonsense")
    with pytest.raises(DataError, match="malformed RDF"):
        s.load_data("<a> <b> .", format="turtle")
    before = len(s)
    with pytest.raises(DataError, match="line 2"):
        s.load_data('<http://a> <http://b> "1" .\n<http://a> <http://b> .\n', format="ntriples")
    assert len(s) == before  # nothing of the malformed chunk was loaded
    with pytest.raises(DataError, match="does not exist"):
        s.load(tmp_path / "missing.ttl")
    (tmp_path / "x.nt").write_text('<http://a> <http://b> "1" .\n')
    assert s.load(tmp_path / "x.nt", progress=False) == 1
    s.dump(tmp_path / "out.nt")
    assert "urn:x-wb" not in (tmp_path / "out.nt").read_text()


def test_mapping_shipped_and_errors(tmp_path: Path) -> None:
    paths = write_sample_products(tmp_path / "in")
    s = GeoStore()
    for name, path in paths.items():
        report = map_to_store(name, s, source=path)
        assert report.triples > report.features > 0
    within = """PREFIX geo: <http://www.opengis.net/ont/geosparql#> PREFIX foodsec: <http://extremeearth.eu/ontology/foodsec#>
        SELECT ?obs ?parcel WHERE { ?obs a foodsec:Observation ; geo:sfWithin ?parcel . ?parcel a foodsec:Parcel }"""
    assert len(s.select(within)) == 12  # every in-situ point lies in the parcel it was taken from
    rows = s.select("""PREFIX polar: <http://extremeearth.eu/ontology/polar#> PREFIX geo: <http://www.opengis.net/ont/geosparql#>
        PREFIX geof: <http://www.opengis.net/def/function/geosparql/>
        SELECT DISTINCT ?img WHERE { ?o polar:hasIceClass polar:DeformedIce ; polar:hasImageID ?img ;
        geo:hasGeometry/geo:asWKT ?w FILTER(geof:sfIntersects(?w, "POLYGON((14 77,18 77,18 79,14 79,14 77))"^^geo:wktLiteral)) }""")
    assert rows and all(r["img"].startswith("S1") for r in rows)
    out = tmp_path / "parcels.nt"
    report = map_to_file("crop_parcels", out, source=paths["crop_parcels"], partition_rows=7, dask=True)
    assert sum(1 for _ in out.open()) == report.triples
    assert len(list(ox.parse(path=str(out), format=ox.RdfFormat.N_TRIPLES))) == report.triples
    # a missing column names the mapping line
    bad = tmp_path / "bad.rml.ttl"
    bad.write_text(Path(load_mapping("crop_parcels").path).read_text().replace('"confidence"', '"nope"'))
    with pytest.raises(MappingError, match=r"bad\.rml\.ttl:\d+: .*'nope'"):
        map_to_file(bad, tmp_path / "x.nt", source=paths["crop_parcels"])
    assert not (tmp_path / "x.nt").exists()
    # invalid geometry: error naming the feature, or repaired / skipped and counted
    import geopandas as gpd
    import shapely

    frame = gpd.read_parquet(paths["crop_parcels"])
    frame.loc[3, "geometry"] = shapely.from_wkt("POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))")
    frame.to_parquet(tmp_path / "broken.parquet")
    with pytest.raises(MappingError, match="P00003"):
        map_to_file("crop_parcels", tmp_path / "y.nt", source=tmp_path / "broken.parquet")
    assert map_to_file("crop_parcels", tmp_path / "y.nt", source=tmp_path / "broken.parquet", invalid="repair").repaired == 1
    assert map_to_file("crop_parcels", tmp_path / "y.nt", source=tmp_path / "broken.parquet", invalid="skip").skipped == 1
    with pytest.raises(MappingError, match="does not exist"):
        load_mapping(tmp_path / "none.ttl")


def test_product_adapters(tmp_path: Path) -> None:
    import geopandas as gpd
    import shapely

    from workbench.linked.products import prepare_product

    chart = tmp_path / "chart.parquet"
    gpd.GeoDataFrame({"class_id": [1, 4]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)],
                     crs=4326).to_parquet(chart)  # no class names: the five Polar classes by id
    labels = tmp_path / "labels.parquet"
    gpd.GeoDataFrame({"parcel_id": [7, 8], "predicted_name": ["winter wheat", None], "agreement": [0.75, None]},
                     geometry=[shapely.box(0, 0, 1, 1)] * 2, crs=4326).to_parquet(labels)
    s = GeoStore()
    s.load(Path(__file__).resolve().parents[1] / "workbench" / "linked" / "ontology" / "foodsec.ttl", progress=False)
    map_to_store("sea_ice_chart", s, source=prepare_product(chart, kind="sea_ice_chart", out_dir=tmp_path / "o"))
    map_to_store("crop_parcels", s, source=prepare_product(labels, kind="crop_parcels", out_dir=tmp_path / "o"))
    rows = s.select("PREFIX polar: <http://extremeearth.eu/ontology/polar#> SELECT ?c ?img WHERE "
                    "{ ?o polar:hasIceClass ?c ; polar:hasImageID ?img }")
    assert sorted(r["c"].split("#")[1] for r in rows) == ["BrashPancakeIce", "DeformedIce"]
    assert {r["img"] for r in rows} == {"chart"}
    rows = s.select("PREFIX foodsec: <http://extremeearth.eu/ontology/foodsec#> SELECT ?p ?code WHERE "
                    "{ ?p foodsec:hasCropType ?c . ?c foodsec:classCode ?code }")
    assert [(r["p"].rsplit("/", 1)[1], r["code"]) for r in rows] == [("7", "4")]  # winter wheat, class 4
    gpd.GeoDataFrame({"class_id": [0], "class_name": ["icebergs"]}, geometry=[shapely.box(0, 0, 1, 1)],
                     crs=4326).to_parquet(chart)
    with pytest.raises(DataError, match="icebergs"):
        prepare_product(chart, kind="sea_ice_chart", out_dir=tmp_path / "o")
    with pytest.raises(DataError, match="unknown product kind"):
        prepare_product(chart, kind="roads", out_dir=tmp_path / "o")


CUSTOM_MAPPING = """@prefix rr: <http://www.w3.org/ns/r2rml#> . @prefix rml: <http://semweb.mmlab.be/ns/rml#> .
@prefix geo: <http://www.opengis.net/ont/geosparql#> . @prefix ex: <http://example.org/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
<#Map> rml:logicalSource [ rml:source "parcels.shp" ] ;
    rr:subjectMap [ rr:template "http://example.org/p/{id}" ; rr:class ex:Thing, geo:Feature ] ;
    rr:predicateObjectMap [ rr:predicate ex:label ; rr:objectMap [ rml:reference "crop" ; rr:language "en" ] ] ;
    rr:predicateObjectMap [ rr:predicate ex:source ; rr:objectMap [ rr:constant "simulated \\"sample\\"" ] ] ;
    rr:predicateObjectMap [ rr:predicate ex:kind ; rr:object ex:Parcel ] ;
    rr:predicateObjectMap [ rr:predicate ex:page ; rr:objectMap [ rr:template "http://example.org/page/{crop}" ] ] ;
    rr:predicateObjectMap [ rr:predicate ex:note ; rr:objectMap [ rr:template "crop {crop} of {id}" ; rr:termType rr:Literal ] ] ;
    rr:predicateObjectMap [ rr:predicate geo:isSimple ; rr:objectMap [ rml:reference "geometry.isSimple" ] ] ;
    rr:predicateObjectMap [ rr:predicate geo:asGML ; rr:objectMap [ rml:reference "geometry.gml" ] ] .
"""


def test_custom_mapping_shapefile(tmp_path: Path) -> None:
    import geopandas as gpd

    paths = write_sample_products(tmp_path, parcels=5)
    gpd.read_parquet(paths["crop_parcels"]).to_file(tmp_path / "parcels.shp")
    (tmp_path / "m.rml.ttl").write_text(CUSTOM_MAPPING)
    out = tmp_path / "out.ttl"
    report = map_to_file(tmp_path / "m.rml.ttl", out)
    s = GeoStore()
    assert s.load(out, format="ntriples", progress=False) == report.triples == 5 * 9
    (row,) = s.select('SELECT ?l ?src ?kind ?page ?note ?simple ?gml WHERE { <http://example.org/p/P00000> '
                      '<http://example.org/label> ?l ; <http://example.org/source> ?src ; <http://example.org/kind> ?kind ; '
                      '<http://example.org/page> ?page ; <http://example.org/note> ?note ; geo:isSimple ?simple ; '
                      'geo:asGML ?gml FILTER(lang(?l) = "en") }')
    assert row["src"] == 'simulated "sample"' and row["kind"] == "http://example.org/Parcel"
    assert row["page"].startswith("http://example.org/page/") and row["note"].startswith("crop ")
    assert row["simple"] == "true" and row["gml"].startswith("<gml:Polygon")
    bad = tmp_path / "bad.rml.ttl"
    bad.write_text(CUSTOM_MAPPING.replace('rml:reference "crop" ;', 'rml:nonsense "crop" ;'))
    with pytest.raises(MappingError, match="needs rml:reference"):
        load_mapping(bad)
    bad.write_text("this is not turtle")
    with pytest.raises(MappingError, match="not valid Turtle"):
        load_mapping(bad)


def test_malformed_file_loads_nothing(tmp_path: Path) -> None:
    lines = [f'<http://a/{i}> <http://p> "{i}" .' for i in range(1000)] + ["<http://a> <http://p> ."]
    (tmp_path / "bad.nt").write_text("\n".join(lines) + "\n")
    s = GeoStore(tmp_path / "db")
    with pytest.raises(DataError, match="line 1001"):
        s.load(tmp_path / "bad.nt", progress=False)
    assert len(s) == 0
