"""In-situ validation at scale: ONE federated GeoSPARQL query over three endpoints vs the geopandas truth.

    python benchmarks/validation.py [--small]

A synthetic crop map (``workbench.validation.synthetic_crop_map``: hexagonal parcels of
about 1 ha in UTM 33N with 6 m roads between them, the map label wrong for 15 % of the
parcels) and a LUCAS-style survey drawn beside it (``generate_lucas_points``: field and road
points, GPS noise, wrong and absent crops). The crop map, the survey with its code list and
the code-list mapping are served by three SPARQL endpoints on loopback; the federation
(``workbench.linked.federation.Federation``) answers the validation query
(``workbench.validation.validation_query``). The baseline is the same validation computed
directly with geopandas (``validate_crop_map``: STRtree ``dwithin`` + the code-list join);
the two reports must be equal. Full size: 100k parcels x 10k points; ``--small``: 10k x 1k.
Times: geopandas best of 3, federated one run (it takes far longer); the machine is shared.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time

from workbench.linked import EndpointServer
from workbench.linked.federation import Federation
from workbench.samples.insitu import generate_lucas_points
from workbench.validation import (
    federated_validation,
    load_stores,
    synthetic_crop_map,
    validate_crop_map,
    write_validation_rdf,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10k parcels x 1k points (make bench)")
    parser.add_argument("--parcels", type=int, default=None)
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--form", choices=("union", "optional"), default="union")
    args = parser.parse_args()
    n_parcels = args.parcels or (10_000 if args.small else 100_000)
    n_points = args.points or (1_000 if args.small else 10_000)

    start = time.perf_counter()
    parcels = synthetic_crop_map(n_parcels, seed=1)
    points = generate_lucas_points(parcels, fraction=min(1.0, 1.05 * n_points / len(parcels)), seed=2)
    points = points.iloc[:n_points].reset_index(drop=True)
    print(f"data: {len(parcels)} parcels, {len(points)} survey points ({time.perf_counter() - start:.1f}s)")

    best = float("inf")
    truth = None
    for _ in range(3):
        t0 = time.perf_counter()
        truth = validate_crop_map(parcels, points, distance_m=10.0)
        best = min(best, time.perf_counter() - t0)
    assert truth is not None
    print(f"geopandas truth: {best:.3f}s -> {truth!r}")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = write_validation_rdf(parcels, points, tmp)
        stores = load_stores(files)
        sizes = {name: len(store) for name, store in stores.items()}
        print(f"sources mapped and loaded in {time.perf_counter() - t0:.1f}s: {sizes} triples")
        servers = {name: EndpointServer(store, port=free_port()).start() for name, store in stores.items()}
        try:
            with Federation({name: s.url for name, s in servers.items()}, timeout=1800.0) as federation:
                federation.refresh_metadata()
                federation.reset_stats()
                t0 = time.perf_counter()
                report = federated_validation(federation, distance_m=10.0, form=args.form)
                fed_s = time.perf_counter() - t0
                stats = federation.stats()
        finally:
            for server in servers.values():
                server.stop()
    differences = report.differences(truth)
    assert not differences, f"federated report differs from the geopandas truth: {differences}"
    requests = {name: s.requests for name, s in stats.items()}
    rows = {name: s.rows for name, s in stats.items()}
    print(f"federated ({args.form} form): {fed_s:.2f}s, {report.meta['rows']} answer rows; member requests "
          f"{requests} ({sum(requests.values())} in all), rows received {rows}")
    total = report.total.iloc[0]
    print(f"reports equal: {int(total.confirmed)} confirmed, {int(total.negative)} negative "
          f"of {len(points)}")
    print(f"validation {len(parcels)} parcels x {len(points)} points: federated {fed_s:.2f}s vs geopandas "
          f"{best:.3f}s: {fed_s / best:.0f}x the geopandas time")


if __name__ == "__main__":
    main()
