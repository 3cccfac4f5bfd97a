"""Federated GeoSPARQL (issue 12): three member endpoints on loopback against one union store.

Members: ``admin`` (states, GeoSPARQL endpoint in a thread), ``parcels`` (land parcels,
GeoSPARQL endpoint in a thread) and ``obs`` (points of interest in the south-west
quarter, a *plain* endpoint: ``workbench sparql serve --no-geosparql`` in a subprocess),
so that the federator has to evaluate the ``geof:`` functions for ``obs`` itself.
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely
from rdflib import Literal

from tests.conftest import free_port
from workbench.linked import EndpointServer, GeoStore
from workbench.linked.federation import (
    Federation,
    FederationServer,
    MemberError,
    UnsupportedQueryError,
)
from workbench.linked.federation.terms import from_oxigraph
from workbench.linked.store import QuerySyntaxError
from workbench.linked.synthetic import generate, to_ntriples

ROOT = Path(__file__).resolve().parents[1]
P = ("PREFIX syn: <http://extremeearth.eu/synthetic/> PREFIX geo: <http://www.opengis.net/ont/geosparql#> "
     "PREFIX geof: <http://www.opengis.net/def/function/geosparql/> PREFIX uom: <http://www.opengis.net/def/uom/OGC/1.0/> ")
BOX = '"POLYGON((8 8, 30 8, 30 30, 8 30, 8 8))"^^geo:wktLiteral'
SMALL_BOX = '"POLYGON((8 8, 20 8, 20 20, 8 20, 8 8))"^^geo:wktLiteral'  # a few observations
FAR = '"POLYGON((60 60, 80 60, 80 80, 60 80, 60 60))"^^geo:wktLiteral'  # away from every observation
GEOM = "geo:hasGeometry/geo:asWKT"


def _layers() -> dict[str, Any]:
    layers = generate(300, seed=11)
    del layers["roads"]
    pois = layers["pois"]
    inside = shapely.within(pois.geometry.to_numpy(), shapely.box(0, 0, 40, 40))
    layers["pois"] = pois[inside].reset_index(drop=True)
    return layers


def _wait(url: str, proc: subprocess.Popen[bytes], seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"the member endpoint {url} did not start")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    layers = _layers()
    union = GeoStore(entailment="none")
    union.load_data(to_ntriples(layers), format="ntriples")
    servers = []
    members = {}
    for name, layer in (("admin", "states"), ("parcels", "land")):
        store = GeoStore(entailment="none")
        store.load_data(to_ntriples({layer: layers[layer]}), format="ntriples")
        server = EndpointServer(store, port=free_port(), timeout=20).start()
        servers.append(server)
        members[name] = server.url
    folder = tmp_path_factory.mktemp("obs") / "store"
    GeoStore(folder, entailment="none").load_data(to_ntriples({"pois": layers["pois"]}), format="ntriples")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", ("import sys, argparse; from workbench.linked import cli; p = argparse.ArgumentParser(); "
                                "cli.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"),
         "sparql", "serve", "--store", str(folder), "--entailment", "none", "--port", str(port), "--no-geosparql"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    members["obs"] = f"http://127.0.0.1:{port}/sparql"
    try:
        _wait(members["obs"], proc)
        federation = Federation(members, timeout=20)
        yield {"union": union, "members": members, "federation": federation, "layers": layers}
        federation.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for server in servers:
            server.stop()


def _norm(term: Any) -> str:
    value = from_oxigraph(term) if term is not None else None
    if isinstance(value, Literal) and isinstance(value.toPython(), float):
        return f"{value.toPython():.6g}"
    if isinstance(value, Literal) and value.datatype is not None and str(value.datatype).endswith("#decimal"):
        return f"{float(value):.6g}"
    return "" if value is None else value.n3()


def _union_rows(store: GeoStore, query: str) -> list[tuple[str, ...]]:
    result = store.query(query)
    names = [v.value for v in result.variables]
    return [tuple(_norm(row[n]) for n in names) for row in result]


def _fed_rows(result: Any) -> list[tuple[str, ...]]:
    return [tuple(_norm(row[n]) for n in result.variables) for row in result]


QUERIES: dict[str, tuple[str, bool]] = {  # name -> (query, ordered)
    "bgp": (P + "SELECT ?s ?t WHERE { ?s a syn:State ; syn:tag ?t }", False),
    "filter": (P + "SELECT ?l ?t WHERE { ?l a syn:Land ; syn:tag ?t FILTER(?t <= 10 && ?t != 3) }", False),
    "box_parcels": (P + f"SELECT ?l WHERE {{ ?l a syn:Land ; {GEOM} ?w FILTER(geof:sfIntersects(?w, {BOX})) }}", False),
    "box_plain_member": (P + f"SELECT ?p ?t WHERE {{ ?p a syn:Poi ; syn:tag ?t ; {GEOM} ?w "
                         f"FILTER(geof:sfWithin(?w, {BOX})) }}", False),
    "spatial_join": (P + f"SELECT ?l ?p WHERE {{ ?l a syn:Land ; {GEOM} ?lw . ?p a syn:Poi ; {GEOM} ?pw "
                     f"FILTER(geof:sfIntersects(?pw, {BOX}) && geof:sfContains(?lw, ?pw)) }}", False),
    "distance_join": (P + f"SELECT ?l ?p WHERE {{ ?l a syn:Land ; {GEOM} ?lw . ?p a syn:Poi ; {GEOM} ?pw "
                      f"FILTER(geof:sfWithin(?pw, {SMALL_BOX}) && geof:distance(?lw, ?pw, uom:metre) < 60000) }}", False),
    "distance_degrees": (P + f"SELECT ?p WHERE {{ ?p a syn:Poi ; {GEOM} ?pw "
                         'FILTER(geof:distance(?pw, "POINT(20 20)"^^geo:wktLiteral, uom:degree) <= 6) }', False),
    "three_way": (P + f"SELECT ?s ?l ?p WHERE {{ ?s a syn:State ; {GEOM} ?sw . ?l a syn:Land ; {GEOM} ?lw . "
                  f"?p a syn:Poi ; {GEOM} ?pw FILTER(geof:sfWithin(?pw, {BOX}) && geof:sfContains(?lw, ?pw) "
                  "&& geof:sfIntersects(?sw, ?pw)) }", False),
    "optional": (P + "SELECT ?s ?l WHERE { ?s a syn:State ; syn:tag ?t OPTIONAL { ?l a syn:Land ; syn:tag ?t } }",
                 False),
    "optional_filter": (P + "SELECT ?p ?l WHERE { ?p a syn:Poi ; syn:tag ?t FILTER(?t < 20) "
                        "OPTIONAL { ?l a syn:Land ; syn:tag ?u FILTER(?u = ?t + 1) } }", False),
    "optional_spatial": (P + f"SELECT ?p ?l WHERE {{ ?p a syn:Poi ; syn:tag ?t ; {GEOM} ?pw FILTER(?t < 40) "
                         f"OPTIONAL {{ ?l a syn:Land ; syn:tag ?u ; {GEOM} ?lw "
                         "FILTER(geof:sfWithin(?pw, ?lw) && ?u > 20) } }", False),
    "union": (P + "SELECT ?x WHERE { { ?x a syn:State } UNION { ?x a syn:Poi ; syn:tag 5 } UNION "
              "{ ?x a syn:Land ; syn:tag 7 } }", False),
    "aggregate": (P + "SELECT ?t (COUNT(?p) AS ?n) (MAX(?p) AS ?last) WHERE { ?p a syn:Poi ; syn:tag ?t } "
                  "GROUP BY ?t HAVING (COUNT(?p) > 1)", False),
    "aggregate_spatial": (P + f"SELECT ?s (COUNT(?l) AS ?n) WHERE {{ ?s a syn:State ; {GEOM} ?sw . "
                          f"?l a syn:Land ; syn:tag ?t ; {GEOM} ?lw FILTER(?t <= 20 && geof:sfIntersects(?sw, ?lw)) }} "
                          "GROUP BY ?s", False),
    "order_limit": (P + "SELECT ?l ?t WHERE { ?l a syn:Land ; syn:tag ?t } ORDER BY DESC(?t) ?l LIMIT 7 OFFSET 2",
                    True),
    "distinct": (P + "SELECT DISTINCT ?t WHERE { ?s a syn:State ; syn:tag ?t }", False),
    "bind_geof_at_federator": (P + f"SELECT ?p ?d WHERE {{ ?p a syn:Poi ; syn:tag ?t ; {GEOM} ?w FILTER(?t < 15) "
                               'BIND(geof:distance(?w, "POINT(10 10)"^^geo:wktLiteral, uom:metre) AS ?d) }', False),
    "not_exists": (P + "SELECT ?s ?t WHERE { ?s a syn:State ; syn:tag ?t FILTER NOT EXISTS { ?p a syn:Poi ; syn:tag ?t } }",
                   False),
    "minus": (P + "SELECT ?s WHERE { ?s a syn:State ; syn:tag ?t MINUS { ?p a syn:Poi ; syn:tag ?t } }", False),
    "values": (P + "SELECT ?x ?t WHERE { VALUES ?t { 1 2 3 } ?x syn:tag ?t }", False),
    "topology_property": (P + "SELECT ?lg ?pg WHERE { ?l a syn:Land ; geo:hasGeometry ?lg . "
                          "?p a syn:Poi ; syn:tag ?t ; geo:hasGeometry ?pg FILTER(?t <= 10) "
                          "?lg geo:sfContains ?pg }", False),
    "variable_predicate": (P + "SELECT ?p ?o WHERE { <http://extremeearth.eu/synthetic/states/1> ?p ?o }", False),
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_answers_equal_the_union_store(world: dict[str, Any], name: str) -> None:
    query, ordered = QUERIES[name]
    expected = _union_rows(world["union"], query)
    got = _fed_rows(world["federation"].select(query))
    if not ordered:
        expected, got = sorted(expected), sorted(got)
    assert got == expected
    assert expected or name in ("minus",), f"{name}: the query set should have answers"


def test_ask(world: dict[str, Any]) -> None:
    fed = world["federation"]
    assert fed.ask(P + f"ASK {{ ?p a syn:Poi ; {GEOM} ?w FILTER(geof:sfWithin(?w, {BOX})) }}") is True
    assert fed.ask(P + f"ASK {{ ?p a syn:Poi ; {GEOM} ?w FILTER(geof:sfWithin(?w, {FAR})) }}") is False


def _requests(fed: Federation, query: str) -> dict[str, int]:
    fed.select(query)  # warm the metadata / probe caches
    fed.reset_stats()
    fed.select(query)
    return {n: s.requests for n, s in fed.stats().items()}


def test_source_selection_prunes(world: dict[str, Any]) -> None:
    fed = world["federation"]
    # classes: only the member holding states is asked; the three patterns go as one exclusive group
    assert _requests(fed, P + f"SELECT ?s ?w WHERE {{ ?s a syn:State ; {GEOM} ?w }}") == \
        {"admin": 1, "parcels": 0, "obs": 0}
    # spatial pruning: no observation lies near FAR, so obs is not asked for geometries at all
    counts = _requests(fed, P + f"SELECT ?x WHERE {{ ?x {GEOM} ?w FILTER(geof:sfIntersects(?w, {FAR})) }}")
    assert counts["obs"] == 0 and counts["admin"] >= 1 and counts["parcels"] >= 1
    plan = str(fed.explain(P + f"SELECT ?x WHERE {{ ?x {GEOM} ?w FILTER(geof:sfIntersects(?w, {FAR})) }}"))
    assert "pruned: obs (no geometry meets sfIntersects(?w, CONST))" in plan
    # a distance in metres reaches 1 degree past the observations' extent only with the right unit handling
    near = '"POINT(40.9 20)"^^geo:wktLiteral'  # 0.9 deg east of the obs area (about 100 km at 20 N)
    q_m = P + f"SELECT ?p WHERE {{ ?p a syn:Poi ; {GEOM} ?w FILTER(geof:distance(?w, {near}, uom:metre) < 150000) }}"
    q_far = q_m.replace("150000", "50000")
    assert _requests(fed, q_m)["obs"] == 1
    assert _requests(fed, q_far)["obs"] == 0
    assert _fed_rows(fed.select(q_m)) and sorted(_fed_rows(fed.select(q_m))) == sorted(_union_rows(world["union"], q_m))
    # a variable predicate with a constant subject: metadata cannot tell, one ASK per member does
    fed.reset_stats()
    q = P + "SELECT ?p ?o WHERE { <http://extremeearth.eu/synthetic/land/7> ?p ?o }"
    assert sorted(_fed_rows(fed.select(q))) == sorted(_union_rows(world["union"], q))
    stats = fed.stats()
    assert all(s.asks == 1 for s in stats.values())
    assert (stats["parcels"].selects, stats["admin"].selects, stats["obs"].selects) == (1, 0, 0)
    # the naive baseline sends every pattern to every member
    naive = Federation(world["members"], naive=True)
    try:
        q = P + f"SELECT ?s ?w WHERE {{ ?s a syn:State ; {GEOM} ?w }}"
        counts = _requests(naive, q)
        assert counts == {"admin": 3, "parcels": 3, "obs": 3}  # 3 patterns (the path is 2) x 3 members
        assert sorted(_fed_rows(naive.select(q))) == sorted(_union_rows(world["union"], q))
    finally:
        naive.close()


def test_bind_join_blocks(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.linked.federation import executor

    states = len(world["layers"]["states"])
    land = len(world["layers"]["land"])
    q = P + "SELECT ?s ?l WHERE { ?s a syn:State ; syn:tag ?t . ?l a syn:Land ; syn:tag ?t }"
    expected = sorted(_union_rows(world["union"], q))

    def run(fed: Federation) -> Any:
        fed.select(q)
        fed.reset_stats()
        got = fed.select(q)
        assert sorted(_fed_rows(got)) == expected
        return fed.stats()["parcels"]

    with Federation(world["members"]) as fed:  # a few join values: one VALUES block instead of every parcel
        stats = run(fed)
        assert stats.selects == 1 and stats.rows == len(expected) < land / 10
    with Federation(world["members"], bind_join_block=1) as fed:  # one block per value would cost more: fetch
        stats = run(fed)
        assert stats.selects == 1 and stats.rows == land
        monkeypatch.setattr(executor, "LATENCY_S", 1e-9)  # requests free: always bind join, one per block
        stats = run(fed)
        assert stats.selects == states and stats.rows == len(expected)


def test_spatial_semi_join_in_blocks(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.linked.federation import executor, spatial

    q = P + (f"SELECT ?l ?p WHERE {{ ?p a syn:Poi ; {GEOM} ?pw . ?l a syn:Land ; {GEOM} ?lw "
             f"FILTER(geof:sfWithin(?pw, {SMALL_BOX}) && geof:distance(?lw, ?pw, uom:metre) < 100000) }}")
    expected = sorted(_union_rows(world["union"], q))
    n_obs = len(_union_rows(world["union"], P + f"SELECT ?p WHERE {{ ?p a syn:Poi ; {GEOM} ?pw "
                                                 f"FILTER(geof:sfWithin(?pw, {SMALL_BOX})) }}"))
    with Federation(world["members"]) as fed:
        fed.select(q)
        fed.reset_stats()
        assert sorted(_fed_rows(fed.select(q))) == expected
        one = fed.stats()["parcels"]
        assert one.selects == 1 and one.rows < len(world["layers"]["land"]) / 2  # only the candidates came back
        monkeypatch.setattr(spatial, "SEMI_JOIN_BLOCK", 2)
        monkeypatch.setattr(executor, "LATENCY_S", 1e-9)
        fed.reset_stats()
        assert sorted(_fed_rows(fed.select(q))) == expected  # parcels near two blocks are counted once
        assert n_obs >= 3 and fed.stats()["parcels"].selects == math.ceil(n_obs / 2)


def test_plain_member_refuses_geof_and_the_federator_fills_in(world: dict[str, Any]) -> None:
    obs = world["members"]["obs"]
    direct = httpx.get(obs, params={"query": QUERIES["box_plain_member"][0]}, timeout=20)
    assert direct.status_code == 400 and "not implemented by this store" in direct.text
    fed = world["federation"]
    meta, _ = fed.metadata()
    assert meta["obs"].geosparql is False and meta["parcels"].geosparql is True
    plan = str(fed.explain(QUERIES["box_plain_member"][0]))
    assert "FILTER at federator where not pushed: sfWithin(?w, CONST)" in plan
    plan = str(fed.explain(QUERIES["box_parcels"][0]))
    assert "FILTER at parcels: <http://www.opengis.net/def/function/geosparql/sfIntersects>(?w" in plan


def test_explain_lists_sources_groups_and_order(world: dict[str, Any]) -> None:
    plan = world["federation"].explain(QUERIES["three_way"][0])
    text = str(plan)
    assert len(plan.bgps) == 1 and len(plan.bgps[0].units) == 3
    assert all(u.exclusive for u in plan.bgps[0].units)
    assert {u.sources[0] for u in plan.bgps[0].units} == {"admin", "parcels", "obs"}
    assert "COUNT probe" in text and "spatial join" in text and "Project" in text
    # the smallest group (by COUNT) goes first
    estimates = [u.estimate for u in plan.bgps[0].units]
    assert estimates[0] == min(estimates)


def test_unsupported_and_malformed_queries(world: dict[str, Any]) -> None:
    fed = world["federation"]
    with pytest.raises(QuerySyntaxError):
        fed.select("SELECT ?x WHERE { ?x")
    with pytest.raises(QuerySyntaxError):
        fed.select("")
    with pytest.raises(UnsupportedQueryError, match="only SELECT and ASK"):
        fed.select("CONSTRUCT WHERE { ?s ?p ?o }")
    with pytest.raises(UnsupportedQueryError, match="GRAPH"):
        fed.select("SELECT * WHERE { GRAPH ?g { ?s ?p ?o } }")
    with pytest.raises(UnsupportedQueryError, match="property path"):
        fed.select(P + "SELECT * WHERE { ?s syn:tag+ ?o }")
    with pytest.raises(UnsupportedQueryError, match="FROM"):
        fed.select("SELECT * FROM <http://x/g> WHERE { ?s ?p ?o }")
    with pytest.raises(UnsupportedQueryError, match="spatial aggregate geof:aggBoundingBox"):
        fed.select(P + "SELECT (geof:aggBoundingBox(?w) AS ?b) WHERE { ?g geo:asWKT ?w }")
    with pytest.raises(QuerySyntaxError, match="geof:sfNoSuch .* not implemented by the federator"):
        fed.select(P + "SELECT ?g WHERE { ?g geo:asWKT ?w FILTER(geof:sfNoSuch(?w, ?w)) }")
    with pytest.raises(UnsupportedQueryError, match="rdflib"):  # rdflib cannot sort expression errors
        fed.select(P + "SELECT ?s WHERE { ?s a syn:State } ORDER BY geof:distance(?s, ?s, uom:metre)")
    with pytest.raises(QuerySyntaxError, match="invalid geo:wktLiteral"):
        fed.select(P + 'SELECT * WHERE { ?s geo:asWKT ?w FILTER(geof:sfWithin(?w, "POLYGON((0 0"^^geo:wktLiteral)) }')


def _silent_server() -> tuple[socket.socket, int]:
    """A TCP server that accepts connections and never answers (a member that hangs)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return sock, sock.getsockname()[1]


def test_member_down_and_timeout(world: dict[str, Any]) -> None:
    q = QUERIES["spatial_join"][0]
    down = {**world["members"], "gone": f"http://127.0.0.1:{free_port()}/sparql"}
    with Federation(down) as fed, pytest.raises(MemberError, match="member 'gone': cannot reach") as info:
        fed.select(q)
    assert info.value.status == 502 and info.value.member == "gone"
    with Federation(down, partial=True) as fed:
        result = fed.select(q)
        assert result.partial and "gone" in result.warnings[0]
        assert sorted(_fed_rows(result)) == sorted(_union_rows(world["union"], q))
    sock, port = _silent_server()
    try:
        hung = {**world["members"], "slow": f"http://127.0.0.1:{port}/sparql"}
        with Federation(hung, timeout=0.5) as fed, pytest.raises(MemberError, match="within 0.5 s") as info:
            fed.select(q)
        assert info.value.status == 504
        with Federation(hung, timeout=0.5, partial=True) as fed, FederationServer(fed, port=free_port()) as srv:
            response = httpx.get(srv.url, params={"query": q}, timeout=30)
            assert response.status_code == 200 and response.headers["X-Federation-Partial"] == "true"
            assert "member 'slow'" in response.headers["Warning"]
        with Federation(hung, timeout=0.5) as fed, FederationServer(fed, port=free_port()) as srv:
            response = httpx.get(srv.url, params={"query": q}, timeout=30)
            assert response.status_code == 504 and "member 'slow'" in response.text
    finally:
        sock.close()
    with Federation(down) as fed, FederationServer(fed, port=free_port()) as srv:
        response = httpx.get(srv.url, params={"query": q}, timeout=30)
        assert response.status_code == 502 and "member 'gone'" in response.text


@pytest.fixture(scope="module")
def endpoint(world: dict[str, Any]) -> Iterator[FederationServer]:
    with FederationServer(world["federation"], port=free_port(), timeout=30, result_limit=40,
                          max_body_bytes=4096) as server:
        yield server


def test_http_endpoint_negotiation_limits_and_errors(world: dict[str, Any], endpoint: FederationServer) -> None:
    url = endpoint.url
    q = QUERIES["box_plain_member"][0]
    got = httpx.get(url, params={"query": q}, timeout=30)
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/sparql-results+json")
    rows = got.json()["results"]["bindings"]
    assert len(rows) == min(40, len(_union_rows(world["union"], q)))
    big = httpx.get(url, params={"query": P + "SELECT ?l WHERE { ?l a syn:Land }"}, timeout=30)
    assert len(big.json()["results"]["bindings"]) == 40 and "40" in big.headers["X-SPARQL-Result-Limit"]
    csv = httpx.post(url, content=q, headers={"Content-Type": "application/sparql-query", "Accept": "text/csv"})
    assert csv.status_code == 200 and csv.text.splitlines()[0] == "p,t"
    xml = httpx.post(url, data={"query": q}, headers={"Accept": "application/sparql-results+xml"})
    assert xml.status_code == 200 and "<sparql" in xml.text
    ask = httpx.get(url, params={"query": P + "ASK { ?s a syn:State }", "format": "tsv"}, timeout=30)
    assert ask.text.splitlines() == ["?_askResult", "true"]
    assert httpx.get(url, params={"query": "SELECT ?x WHERE { ?x"}).status_code == 400
    assert "malformed query" in httpx.get(url, params={"query": "SELECT ?x WHERE { ?x"}).text
    assert httpx.get(url, params={"query": "DESCRIBE <http://x>"}).status_code == 400
    assert httpx.get(url).status_code == 400
    assert httpx.post(url, content="INSERT DATA { <a:a> <a:b> <a:c> }",
                      headers={"Content-Type": "application/sparql-update"}).status_code == 403
    assert httpx.post(url, content=b"x", headers={"Content-Type": "image/png"}).status_code == 415
    assert httpx.get(url, params={"query": q}, headers={"Accept": "image/png"}).status_code == 406
    assert httpx.post(url, content="#" * 5000, headers={"Content-Type": "application/sparql-query"}).status_code == 413
    assert httpx.post(url, content=b"\xff\xfe", headers={"Content-Type": "application/sparql-query"}).status_code == 400


def test_schemathesis_no_5xx(endpoint: FederationServer) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(endpoint.url.replace("/sparql", "/openapi.json"))
    failures: list[str] = []
    seen = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  derandomize=True)
        @given(operation.as_strategy())
        def check(case: Any) -> None:
            nonlocal seen
            resp = case.call(timeout=60)
            seen += 1
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {resp.status_code} {resp.text[:300]}")

        check()
    assert seen >= 30 and not failures, failures[:5]


def test_metadata_cache_on_disk_and_refresh(world: dict[str, Any], tmp_path: Path) -> None:
    members = world["members"]
    with Federation(members, metadata_dir=tmp_path) as fed:
        meta, _ = fed.metadata()
        assert len(list(tmp_path.glob("*.json"))) == 3
        states = len(world["layers"]["states"])
        assert meta["parcels"].extents and meta["admin"].classes == {"http://extremeearth.eu/synthetic/State": states}
        box = meta["obs"].extents["http://www.opengis.net/ont/geosparql#asWKT"].bbox
        assert box[2] <= 40 and box[3] <= 40
    with Federation(members, metadata_dir=tmp_path) as fed:
        fed.metadata()
        assert all(s.requests == 0 for s in fed.stats().values())  # read from disk
        fed.refresh_metadata()
        assert all(s.requests >= 4 for s in fed.stats().values())


def test_configuration_errors() -> None:
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="at least one member"):
        Federation({})
    with pytest.raises(ConfigError, match="not an http"):
        Federation({"a": "ftp://x"})
    with pytest.raises(ConfigError, match="member name"):
        Federation({"1 bad": "http://x/sparql"})
    with pytest.raises(ConfigError, match="bind_join_block"):
        Federation({"a": "http://x/sparql"}, bind_join_block=0)


def test_cli_explain_query_and_bad_members(world: dict[str, Any], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import main

    args = ["sparql", "federate", "--metadata-dir", str(tmp_path)]
    for name, url in world["members"].items():
        args += ["--member", f"{name}={url}"]
    assert main([*args, "--explain", QUERIES["spatial_join"][0]]) == 0
    out = capsys.readouterr().out
    assert "exclusive group @ parcels" in out and "exclusive group @ obs" in out and "spatial join" in out
    query_file = tmp_path / "q.rq"
    query_file.write_text(QUERIES["bgp"][0])
    assert main([*args, "--query", f"@{query_file}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "s,t" and len(lines) == 1 + len(_union_rows(world["union"], QUERIES["bgp"][0]))
    assert main(["sparql", "federate", "--member", "nourl", "--explain", "ASK {}"]) != 0
    assert "expected NAME=URL" in capsys.readouterr().err
    assert main([*args, "--explain", "SELECT ?x WHERE {"]) != 0
    assert "SELECT ?x WHERE {" not in capsys.readouterr().out
    assert main([*args, "--query", "@/no/such/file.rq"]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_spatial_margins_and_tests_are_recognised() -> None:
    """Pure parts: which conjuncts are spatial tests, and the degree margins of distance bounds."""
    from rdflib.plugins.sparql.algebra import translateQuery
    from rdflib.plugins.sparql.parser import parseQuery

    from workbench.linked.federation.expressions import conjuncts, to_sparql_expression
    from workbench.linked.federation.spatial import margin_degrees, spatial_test
    from workbench.linked.store import with_default_prefixes

    text = with_default_prefixes(
        'SELECT * WHERE { ?a geo:asWKT ?w . ?b geo:asWKT ?v FILTER(geof:sfWithin("POINT(1 1)"^^geo:wktLiteral, ?w) '
        '&& 5000 >= geof:distance(?w, ?v, uom:metre) && geof:distance(?w, ?v, uom:degree) > 1 '
        '&& geof:sfDisjoint(?w, ?v) && regex(str(?a), "x", "i") && ?a IN (<http://x/a>, <http://x/b>)) }')
    expr = translateQuery(parseQuery(text)).algebra.p.p.expr
    tests = [spatial_test(c) for c in conjuncts(expr)]
    assert [t.describe() if t else None for t in tests] == [
        "sfWithin(CONST, ?w)", "distance(?w, ?v, metre) <= 5000", None, "sfDisjoint(?w, ?v)", None, None]
    assert tests[0].prunes and not tests[3].prunes  # disjointness holds far away: no pruning
    dx, dy = margin_degrees(tests[1], (59.0, 60.0))
    assert dy >= 5000 / 110_574 and dx >= dy / math.cos(math.radians(60.0))  # a degree of longitude is shorter
    assert margin_degrees(tests[1], (89.0, 89.5))[0] == 360.0  # near the pole: no longitude pruning
    # every conjunct written back parses again, as a FILTER a member receives
    for c in conjuncts(expr):
        written = to_sparql_expression(c)
        assert written is not None
        parseQuery(with_default_prefixes(f"SELECT * WHERE {{ ?a ?b ?w FILTER({written}) }}"))
