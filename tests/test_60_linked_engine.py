"""Issue 14 item 4: the columnar spatial engine (DuckDB over the triples + the STRtree index) answers
exactly what the index path, the unindexed evaluation and pyoxigraph's own functions answer."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from workbench.linked import EndpointServer, GeoStore
from workbench.linked.rewrite import find_spatial_filters
from workbench.linked.spatial_engine import TableSolutions, compile_query
from workbench.linked.synthetic import generate, to_ntriples

P = ("PREFIX geo: <http://www.opengis.net/ont/geosparql#> PREFIX geof: <http://www.opengis.net/def/function/geosparql/> "
     "PREFIX syn: <http://extremeearth.eu/synthetic/> ")
BOX = '"POLYGON((10 10, 40 10, 40 45, 10 45, 10 10))"^^geo:wktLiteral'
LAYERS = generate(250, seed=5)

QUERIES = {
    "selection within": P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:sfWithin(?x, {BOX})) }}",
    "selection contains, constant first": P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:sfContains({BOX}, ?x)) }}",
    "selection intersects, features of a type": P + (
        f"SELECT ?f ?x WHERE {{ ?f a syn:Land ; geo:hasGeometry/geo:asWKT ?x FILTER(geof:sfIntersects(?x, {BOX})) }}"),
    "selection egenhofer contains": P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:ehContains({BOX}, ?x)) }}",
    "selection overlaps": P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:sfOverlaps(?x, {BOX})) }}",
    "selection with a constant literal": P + (
        f"SELECT ?f WHERE {{ ?f syn:tag 7 ; geo:hasGeometry/geo:asWKT ?x FILTER(geof:sfIntersects(?x, {BOX})) }}"),
    "join within": P + ("SELECT ?a ?b WHERE { ?a a syn:Poi ; geo:hasGeometry/geo:asWKT ?x . "
                        "?b a syn:Land ; geo:hasGeometry/geo:asWKT ?y . FILTER(geof:sfWithin(?x, ?y)) }"),
    "join count": P + ("SELECT (COUNT(*) AS ?n) WHERE { ?a a syn:Poi ; geo:hasGeometry/geo:asWKT ?x . "
                       "?b a syn:Land ; geo:hasGeometry/geo:asWKT ?y . FILTER(geof:sfWithin(?x, ?y)) }"),
    "join touches, distinct, variable predicate": P + (
        "SELECT DISTINCT ?a ?p WHERE { ?a ?p ?x . ?b a syn:State ; geo:hasGeometry/geo:asWKT ?y . "
        "FILTER(geof:sfTouches(?x, ?y)) }"),
    "join of roads and land, two patterns": P + (
        "SELECT ?r WHERE { ?r a syn:Road ; geo:hasGeometry ?h . ?h geo:asWKT ?x . ?l a syn:Land ; geo:hasGeometry/geo:asWKT ?y . "
        "FILTER(geof:sfCrosses(?x, ?y)) }"),
}


def rows(result) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    names = [v.value for v in result.variables]
    return sorted(tuple(str(row[n]) for n in names) for row in result)


@pytest.fixture(scope="module")
def store() -> GeoStore:
    store = GeoStore(entailment="none")  # the unindexed joins compare every pair: small data
    store.load_data(to_ntriples(LAYERS), format="ntriples")
    store.ENGINE_MIN_GEOMETRIES = 0  # this small store takes the engine path too
    store.ENGINE_MIN_ROWS = 1
    return store


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_engine_answers_equal_every_other_path(store: GeoStore, name: str) -> None:
    query = QUERIES[name]
    plan = store.plan(query)
    assert plan.engine is not None, f"{name}: expected the engine path"
    engine = store.query(query)
    assert isinstance(engine, TableSolutions)
    unindexed = rows(store.query(query, use_index=False))
    builtin = rows(store.pyoxigraph.query(query))
    assert rows(engine) == unindexed == builtin
    assert len(builtin) > 0 or name == "join touches, distinct, variable predicate"


def test_engine_touches_selection_with_a_stored_parcel(store: GeoStore) -> None:
    """A parcel's neighbours touch it: the constant is the stored literal itself."""
    (wkt,) = [str(row["w"]) for row in store.pyoxigraph.query(
        P + "SELECT ?w WHERE { ?f a syn:Land ; geo:hasGeometry/geo:asWKT ?w } LIMIT 1 OFFSET 120")]
    query = P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:sfTouches(?x, {wkt})) }}"
    assert store.plan(query).engine is not None
    found = rows(store.query(query))
    assert found == rows(store.pyoxigraph.query(query)) and len(found) >= 2


def test_engine_limit_and_select_helper(store: GeoStore) -> None:
    query = QUERIES["join within"] + " LIMIT 5"
    assert store.plan(query).engine is not None
    assert len(list(store.query(query))) == 5
    everything = set(rows(store.query(QUERIES["join within"])))
    assert set(rows(store.query(query))) <= everything
    assert store.select(QUERIES["join count"])[0]["n"] == str(len(everything))


@pytest.mark.parametrize("query", [
    P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x OPTIONAL {{ ?g syn:tag ?t }} FILTER(geof:sfWithin(?x, {BOX})) }}",
    P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:sfWithin(?x, {BOX}) && STRLEN(STR(?g)) > 3) }}",
    P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:sfWithin(?x, {BOX})) }} ORDER BY ?g",
    P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:sfWithin(?x, {BOX})) }} ORDER BY ?g OFFSET 3",
    P + f"SELECT ?g WHERE {{ ?g geo:hasGeometry+ ?h . ?h geo:asWKT ?x FILTER(geof:sfWithin(?x, {BOX})) }}",
    P + f"SELECT ?t (COUNT(*) AS ?n) WHERE {{ ?g syn:tag ?t ; geo:hasGeometry/geo:asWKT ?x FILTER(geof:sfWithin(?x, {BOX})) }} GROUP BY ?t",
])
def test_other_shapes_stay_on_the_index_path_and_agree(store: GeoStore, query: str) -> None:
    assert store.plan(query).engine is None
    assert rows(store.query(query)) == rows(store.pyoxigraph.query(query))


def test_compile_refuses_shapes_it_does_not_answer() -> None:
    query = P + f"SELECT ?g WHERE {{ ?g geo:asWKT ?x OPTIONAL {{ ?g syn:tag ?t }} FILTER(geof:sfWithin(?x, {BOX})) }}"
    (spatial,) = find_spatial_filters(query, indexable=frozenset({"sfWithin"}))
    with pytest.raises(ValueError, match="not a query shape for the spatial engine"):
        compile_query(query, spatial)


def test_engine_follows_updates(tmp_path: Path) -> None:
    store = GeoStore(tmp_path / "store", entailment="none")
    store.load_data(to_ntriples(generate(300, seed=6)), format="ntriples")
    store.ENGINE_MIN_GEOMETRIES = 0
    store.ENGINE_MIN_ROWS = 1
    query = QUERIES["selection within"]
    before = rows(store.query(query))
    store.update('PREFIX geo: <http://www.opengis.net/ont/geosparql#> INSERT DATA { <http://x/new> geo:asWKT '
                 '"POINT(20 20)"^^geo:wktLiteral }')
    after = rows(store.query(query))
    assert after == sorted(before + [("<http://x/new>",)])
    assert after == rows(store.pyoxigraph.query(query))
    # over HTTP with worker processes: the engine answers in the server, the same rows
    with EndpointServer(store, port=free_port(), isolation="process", workers=1) as server:
        answer = httpx.get(server.url, params={"query": query}, headers={"accept": "text/csv"}, timeout=60)
    assert answer.status_code == 200
    assert sorted(line.strip() for line in answer.text.splitlines()[1:]) == sorted(r[0][1:-1] for r in after)


def test_interlinking_reads_a_store_selection_the_engine_answers(store: GeoStore) -> None:
    """A spatially filtered selection for interlinking comes back as engine solutions: read alike."""
    from workbench.linked.interlink import interlink
    from workbench.linked.interlink.inputs import StoreSelection

    pois = P + f"SELECT ?feature ?wkt WHERE {{ ?feature a syn:Poi ; geo:hasGeometry/geo:asWKT ?wkt FILTER(geof:sfWithin(?wkt, {BOX})) }}"
    land = P + f"SELECT ?feature ?wkt WHERE {{ ?feature a syn:Land ; geo:hasGeometry/geo:asWKT ?wkt FILTER(geof:sfIntersects(?wkt, {BOX})) }}"
    assert store.plan(pois).engine is not None and store.plan(land).engine is not None
    links = interlink(StoreSelection(store, land), StoreSelection(store, pois), relations=["sfContains"]).links
    expected = {(str(r["b"])[1:-1], str(r["a"])[1:-1]) for r in store.pyoxigraph.query(
        P + f"SELECT ?a ?b WHERE {{ ?a a syn:Poi ; geo:hasGeometry/geo:asWKT ?x . ?b a syn:Land ; geo:hasGeometry/geo:asWKT ?y "
        f"FILTER(geof:sfWithin(?x, {BOX}) && geof:sfIntersects(?y, {BOX}) && geof:sfContains(?y, ?x)) }}")}
    assert set(zip(links["source_id"], links["target_id"])) == expected and expected
