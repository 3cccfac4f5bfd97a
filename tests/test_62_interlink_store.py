"""Links into the GeoSPARQL store: N-Triples, Parquet, load_into, and the store's answers from the asserted triples."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyoxigraph as ox
import pytest
import shapely

from workbench.linked.interlink import StoreSelection, interlink
from workbench.linked.interlink.errors import InterlinkError
from workbench.linked.store import GeoStore
from workbench.linked.synthetic import interlink_cases
from workbench.linked.vocab import GEO

EX = "http://example.org/interlink/"
SELECT = """PREFIX geo: <http://www.opengis.net/ont/geosparql#>
SELECT ?feature ?wkt WHERE {{ ?feature a <{cls}> ; geo:hasDefaultGeometry/geo:asWKT ?wkt }}"""


def _features(frame, cls: str) -> str:
    lines = []
    for ident, geom in zip(frame["id"], frame.geometry):
        f = f"<{EX}{ident}>"
        lines += [f"{f} <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{EX}{cls}> .",
                  f"{f} <{GEO}hasDefaultGeometry> <{EX}{ident}/g> .",
                  f'<{EX}{ident}/g> <{GEO}asWKT> "{shapely.to_wkt(geom, rounding_precision=-1)}"^^<{GEO}wktLiteral> .']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def store() -> GeoStore:
    source, target = interlink_cases(seed=7, random_count=12)
    st = GeoStore()
    st.load_data(_features(source, "Src") + _features(target, "Tgt"), format="ntriples")
    return st


@pytest.fixture(scope="module")
def selected(store):
    return (StoreSelection(store, SELECT.format(cls=EX + "Src")), StoreSelection(store, SELECT.format(cls=EX + "Tgt")))


def _pairs(store: GeoStore, relation: str, *, rewrite: bool) -> set[tuple[str, str]]:
    rows = store.select(f"SELECT ?s ?t WHERE {{ ?s a <{EX}Src> . ?t a <{EX}Tgt> . ?s geo:{relation} ?t }}",
                        rewrite=rewrite)
    return {(r["s"], r["t"]) for r in rows}


def test_store_answers_topology_from_the_asserted_links(store, selected) -> None:
    result = interlink(*selected, relations=["sfContains", "sfTouches", "sfIntersects"])
    assert result.crs == "OGC:CRS84"
    assert all(i.startswith(EX) for i in result.links["source_id"])
    for relation in ("sfContains", "sfTouches"):
        assert _pairs(store, relation, rewrite=False) == set()  # nothing asserted yet
    loaded = result.load_into(store)
    assert loaded == len(result.links)
    for relation in ("sfContains", "sfTouches", "sfIntersects"):
        links = result.links[result.links.relation == relation]
        expected = set(zip(links.source_id, links.target_id))
        assert expected
        # asserted triples only (the topology vocabulary extension)
        assert _pairs(store, relation, rewrite=False) == expected
    # the query-rewrite extension (asserted + computed from geometries) agrees with the links
    assert _pairs(store, "sfContains", rewrite=True) == set(
        zip(*[result.links.loc[result.links.relation == "sfContains", c] for c in ("source_id", "target_id")]))


def test_ntriples_and_parquet_outputs(tmp_path: Path) -> None:
    source, target = interlink_cases(seed=8, random_count=5)
    result = interlink(source, target, relations=["sfIntersects", "sfEquals"])
    path = result.to_ntriples(tmp_path / "links.nt")
    triples = list(ox.parse(path=str(path), format=ox.RdfFormat.N_TRIPLES))
    assert len(triples) == len(result.links)
    preds = {t.predicate.value for t in triples}
    assert preds == {GEO + "sfIntersects", GEO + "sfEquals"}
    assert all(t.subject.value.startswith("http://extremeearth.eu/resource/interlink/source/s") for t in triples)
    custom = result.to_ntriples(source_iri="http://ex.org/a/{id}", target_iri="http://ex.org/b/{id}#it")
    assert "<http://ex.org/a/s0>" in custom and "#it>" in custom
    out = result.to_parquet(tmp_path / "sub" / "links.parquet")
    back = pd.read_parquet(out)
    assert list(back.columns) == ["source_id", "target_id", "relation"]
    assert len(back) == len(result.links) and set(back.relation) == {"sfIntersects", "sfEquals"}
    assert not list((tmp_path / "sub").glob("*.tmp"))
    with pytest.raises(InterlinkError, match="no \\{id\\} placeholder"):
        result.to_ntriples(source_iri="http://ex.org/a/")


def test_store_selection_errors(store) -> None:
    with pytest.raises(InterlinkError, match="expected \\?feature"):
        interlink(StoreSelection(store, "SELECT ?x WHERE { ?x ?p ?o } LIMIT 3"),
                  StoreSelection(store, SELECT.format(cls=EX + "Tgt")))
    with pytest.raises(InterlinkError, match="SELECT query"):
        interlink(StoreSelection(store, "ASK { ?x ?p ?o }"), StoreSelection(store, SELECT.format(cls=EX + "Tgt")))
    with pytest.raises(InterlinkError, match="source is empty"):
        interlink(StoreSelection(store, SELECT.format(cls=EX + "Nothing")),
                  StoreSelection(store, SELECT.format(cls=EX + "Tgt")))
    bad = StoreSelection(store, f"SELECT ?feature ?wkt WHERE {{ ?feature a <{EX}Src> . BIND(\"x\" AS ?wkt) }}")
    with pytest.raises(InterlinkError, match="not a geometry literal|geometry of"):
        interlink(bad, StoreSelection(store, SELECT.format(cls=EX + "Tgt")))
