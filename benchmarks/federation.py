"""Federated GeoSPARQL: the federator over three member endpoints vs one union store, and vs a naive federator.

    python benchmarks/federation.py [--small]

GeoFedBench-like shapes over split synthetic data (workbench.linked.synthetic): the
states ("admin areas") in one member, the land parcels in a second, the points
("observations") in a third that is a plain SPARQL endpoint without the geof:
functions (the federator fills them in). Members are real HTTP endpoints on loopback.
Queries: parcels intersecting a box; parcels intersecting observations in a box; the
same by distance < d (metres); a three-way join (states x parcels x observations).

For each query: the federated time (member metadata cached, as in a running
federator), the same query on one GeoStore holding the union of the data (the
baseline, target: federated <= 3x), and the naive federator (every pattern to every
member, nothing pushed or pruned, no bind joins), each checked to give the same
answers, with the number of remote requests. Times are the best of 3 runs (1 for the
naive federator, and for any first run over 5 s). Full mode: 10k parcels and 10k
observations (the union store evaluates the spatial join FILTERs pair by pair once its
index has taken the constant one, so larger sizes take minutes there); ``--small``: 2k.
The last line is the ratio.
"""

from __future__ import annotations

import argparse
import socket
import time

import numpy as np

from _timing import best_of  # benchmarks/ is on sys.path when a benchmark runs as a script
from workbench.linked.endpoint import EndpointServer
from workbench.linked.federation import Federation
from workbench.linked.federation.terms import from_oxigraph
from workbench.linked.store import GeoStore
from workbench.linked.synthetic import generate, to_ntriples

P = ("PREFIX geo: <http://www.opengis.net/ont/geosparql#> PREFIX geof: <http://www.opengis.net/def/function/geosparql/> "
     "PREFIX uom: <http://www.opengis.net/def/uom/OGC/1.0/> PREFIX syn: <http://extremeearth.eu/synthetic/> ")
G = "geo:hasGeometry/geo:asWKT"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def box(x: float, y: float, side: float) -> str:
    return (f'"POLYGON(({x} {y}, {x + side} {y}, {x + side} {y + side}, {x} {y + side}, {x} {y}))"'
            "^^geo:wktLiteral")


def queries() -> dict[str, str]:
    return {
        "areas_in_box": P + f"SELECT ?l WHERE {{ ?l a syn:Land ; {G} ?w FILTER(geof:sfIntersects(?w, {box(20, 20, 10)})) }}",
        "parcels_x_obs_in_box": P + (f"SELECT ?l ?p WHERE {{ ?l a syn:Land ; {G} ?lw . ?p a syn:Poi ; {G} ?pw "
                                     f"FILTER(geof:sfIntersects(?pw, {box(40, 40, 5)}) && geof:sfIntersects(?lw, ?pw)) }}"),
        "parcels_near_obs": P + (f"SELECT ?l ?p WHERE {{ ?l a syn:Land ; syn:tag ?t ; {G} ?lw . ?p a syn:Poi ; {G} ?pw "
                                 f"FILTER(?t <= 10 && geof:sfIntersects(?pw, {box(50, 30, 3)}) && "
                                 "geof:distance(?lw, ?pw, uom:metre) < 20000) }"),
        "three_way": P + (f"SELECT ?s ?l ?p WHERE {{ ?s a syn:State ; {G} ?sw . ?l a syn:Land ; {G} ?lw . "
                          f"?p a syn:Poi ; {G} ?pw FILTER(geof:sfWithin(?pw, {box(10, 60, 5)}) && "
                          "geof:sfContains(?lw, ?pw) && geof:sfContains(?sw, ?pw)) }"),
    }


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    """Best of ``repeat`` runs; a first run over 5 s is not repeated (the union store's slow join shapes)."""
    return best_of(fn, repeat=repeat, stop_after=5.0)


def norm(term) -> str:  # type: ignore[no-untyped-def]
    return "" if term is None else from_oxigraph(term).n3()


def union_answers(store: GeoStore, query: str) -> list[tuple[str, ...]]:
    result = store.query(query)
    names = [v.value for v in result.variables]
    return sorted(tuple(norm(row[n]) for n in names) for row in result)


def fed_answers(fed: Federation, query: str) -> list[tuple[str, ...]]:
    result = fed.select(query)
    return sorted(tuple(norm(row[n]) for n in result.variables) for row in result)


def requests(fed: Federation) -> int:
    return sum(s.requests for s in fed.stats().values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick mode: smaller data")
    args = parser.parse_args()
    n = 2_000 if args.small else 10_000
    layers = generate(n, seed=7)
    union = GeoStore(entailment="none")
    union.load_data(to_ntriples({k: layers[k] for k in ("states", "land", "pois")}), format="ntriples")
    servers, members = [], {}
    for name, layer, geo in (("admin", "states", True), ("parcels", "land", True), ("obs", "pois", False)):
        store = GeoStore(entailment="none", geosparql=geo)
        store.load_data(to_ntriples({layer: layers[layer]}), format="ntriples")
        servers.append(EndpointServer(store, port=free_port(), timeout=600, result_limit=10_000_000).start())
        members[name] = servers[-1].url
    print(f"{len(layers['states'])} states @ admin, {len(layers['land'])} parcels @ parcels, "
          f"{len(layers['pois'])} observations @ obs (plain SPARQL, no geof:)")
    fed = Federation(members, timeout=600)
    naive = Federation(members, timeout=600, naive=True)
    started = time.perf_counter()
    fed.metadata()
    naive.metadata()
    print(f"member metadata probed in {time.perf_counter() - started:.2f}s (cached afterwards)")
    ratios, naive_ratios = [], []
    total_fed_requests = total_naive_requests = 0
    try:
        for name, q in queries().items():
            union_t, expected = timed(lambda q=q: union_answers(union, q))
            fed_answers(fed, q)  # warm the ASK/COUNT probe caches
            fed.reset_stats()
            fed_t, got = timed(lambda q=q: fed_answers(fed, q))
            fed_requests = requests(fed) // 3
            naive.reset_stats()
            naive_t, naive_got = timed(lambda q=q: fed_answers(naive, q), repeat=1)
            naive_requests = requests(naive)
            assert got == expected, f"{name}: federated answers differ from the union store's"
            assert naive_got == expected, f"{name}: naive federated answers differ from the union store's"
            ratios.append(fed_t / union_t)
            naive_ratios.append(naive_t / fed_t)
            total_fed_requests += fed_requests
            total_naive_requests += naive_requests
            print(f"{name} ({len(got)} rows): federated {fed_t:.3f}s ({fed_requests} requests), union store "
                  f"{union_t:.3f}s, {fed_t / union_t:.2f}x; naive federator {naive_t:.3f}s ({naive_requests} requests), "
                  f"{naive_t / fed_t:.1f}x the federated time")
    finally:
        fed.close()
        naive.close()
        for server in servers:
            server.stop()
    gm = float(np.exp(np.mean(np.log(ratios))))
    naive_gm = float(np.exp(np.mean(np.log(naive_ratios))))
    print(f"remote requests: federated {total_fed_requests}, naive {total_naive_requests}")
    print(f"naive_federator_vs_federated (geometric mean): {naive_gm:.1f}x slower")
    print(f"federated_vs_union_store (geometric mean, target <= 3x): {gm:.2f}x")


if __name__ == "__main__":
    main()
