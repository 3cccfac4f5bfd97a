"""Query preparation and point-lookup latency of the SPARQL endpoint vs pyoxigraph's own ``Store.query``.

    python benchmarks/linked_endpoint_latency.py [--small]

A store on disk with Geographica-style synthetic data (about 1M triples; ``--small``:
about 100k). Measured:

* preparation (``GeoStore.plan``: prefixes, syntax and function check, rewrite, index
  planning) of a query with no spatial part and of one with a spatial selection, cold
  (a new query text each time) and cached (the same text again);
* a point lookup answered over HTTP by ``workbench sparql serve``'s endpoint, with
  worker processes (the default for a store on disk) and with threads, against the same
  query through pyoxigraph's ``Store.query`` in this process (the baseline).

The last line is the HTTP p50 over the baseline's p50 (milliseconds) and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from workbench.linked.endpoint import EndpointServer
from workbench.linked.store import GeoStore
from workbench.linked.synthetic import SYN, generate, to_ntriples

PREFIX = "PREFIX geo: <http://www.opengis.net/ont/geosparql#> PREFIX geof: <http://www.opengis.net/def/function/geosparql/> "


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3


def lookup_query(i: int) -> str:
    return f"SELECT ?t WHERE {{ <{SYN}land/{i}> <{SYN}tag> ?t }}"


def spatial_query(i: int) -> str:
    x = 10 + (i % 50) * 0.01
    return (PREFIX + f'SELECT ?g WHERE {{ ?g geo:asWKT ?w FILTER(geof:sfIntersects(?w, '
            f'"POLYGON(({x} 10, {x + 0.5} 10, {x + 0.5} 10.5, {x} 10.5, {x} 10))"^^geo:wktLiteral)) }}')


def preparation(store: GeoStore, n: int) -> dict[str, float]:
    """Median milliseconds of ``store.plan`` for each kind of query, cold and cached."""
    out = {}
    for name, make in (("no spatial part", lookup_query), ("one spatial selection", spatial_query)):
        cold, cached = [], []
        for i in range(n):
            text = make(i) + f" # {time.perf_counter_ns()}"  # a new text: nothing cached
            t0 = time.perf_counter()
            store.plan(text)
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.plan(text)
            cached.append(time.perf_counter() - t0)
        out[f"{name}, cold"] = statistics.median(cold) * 1e3
        out[f"{name}, cached"] = statistics.median(cached) * 1e3
    return out


def http_lookups(url: str, n: int) -> list[float]:
    times = []
    with httpx.Client(timeout=30) as client:
        for i in range(n + 20):
            t0 = time.perf_counter()
            answer = client.get(url, params={"query": lookup_query(i % 50)}, headers={"accept": "text/csv"})
            elapsed = time.perf_counter() - t0
            assert answer.status_code == 200 and len(answer.text.split()) == 2, answer.text[:200]
            if i >= 20:  # after warm-up
                times.append(elapsed)
    return times


def http_floor(url: str, n: int) -> list[float]:
    """Round trips of a request that runs no query: what uvicorn, FastAPI and the client cost."""
    times = []
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            client.get(url).raise_for_status()
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="about 100k triples, fewer samples")
    args = parser.parse_args()
    scale, samples = (12_000, 300) if args.small else (120_000, 1000)

    with tempfile.TemporaryDirectory() as tmp:
        store = GeoStore(Path(tmp) / "store", entailment="none")
        t0 = time.perf_counter()
        store.load_data(to_ntriples(generate(scale, seed=2)), format="ntriples")
        print(f"store: {len(store):,} triples, {len(store.index):,} geometries (loaded in {time.perf_counter() - t0:.1f} s)")

        for name, ms in preparation(store, 200 if args.small else 500).items():
            print(f"preparation, {name}: {ms:.3f} ms")

        base = []
        for i in range(samples + 20):
            t0 = time.perf_counter()
            rows = list(store.pyoxigraph.query(lookup_query(i % 50)))
            base.append(time.perf_counter() - t0)
            assert len(rows) == 1
        base_p50, base_p99 = percentiles(base[20:])
        print(f"pyoxigraph Store.query in process (baseline): p50 {base_p50:.3f} ms, p99 {base_p99:.3f} ms")

        results = {}
        for isolation in ("process", "thread"):
            with EndpointServer(store, port=_free_port(), isolation=isolation, workers=2) as server:
                p50, p99 = percentiles(http_lookups(server.url, samples))
                if isolation == "process":
                    floor = percentiles(http_floor(server.url.replace("/sparql", "/stats"), samples))[0]
                    print(f"HTTP floor of the same server (GET /stats, no query): p50 {floor:.3f} ms")
            results[isolation] = p50
            print(f"HTTP point lookup, {isolation} workers: p50 {p50:.3f} ms, p99 {p99:.3f} ms")

    over = results["process"] - base_p50
    print(f"endpoint point lookup over pyoxigraph (p50, default process workers): +{over:.2f} ms "
          f"(target <= 2 ms), ratio {results['process'] / base_p50:.0f}x")


if __name__ == "__main__":
    main()
