"""``workbench sparql``: serve, load, query and map (wired into the ``workbench`` command)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from workbench.errors import WorkbenchError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``sparql`` command and its sub-commands."""
    p = subparsers.add_parser("sparql", help="GeoSPARQL store and SPARQL endpoint (linked geospatial data)")
    sub = p.add_subparsers(dest="sparql_command", required=True)

    def store_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--store", default="workbench-data/rdf-store", help="store directory (created if missing)")
        q.add_argument("--entailment", default="subclass", choices=("subclass", "rdfs", "none"))
        q.add_argument("--no-query-rewrite", action="store_true",
                       help="answer topological properties (geo:sfWithin...) from asserted triples only")

    serve = sub.add_parser("serve", help="serve the store as a SPARQL 1.1 endpoint")
    store_arg(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8890)
    serve.add_argument("--api-key", default=os.environ.get("WORKBENCH_SPARQL_API_KEY"),
                       help="key that updates must present (default: $WORKBENCH_SPARQL_API_KEY; none: read-only)")
    serve.add_argument("--timeout", type=float, default=30.0, help="query time limit, seconds")
    serve.add_argument("--result-limit", type=int, default=100_000, help="most rows per answer")
    serve.add_argument("--no-geosparql", action="store_true",
                       help="serve a plain SPARQL endpoint: refuse geof: functions (a federation member)")
    serve.add_argument("--workers", type=_positive_int, default=4, help="queries evaluated at once")
    serve.add_argument("--queue", type=_non_negative_int, default=64, help="queries that may wait for a worker")
    serve.add_argument("--queue-wait", type=float, help="longest wait for a worker, seconds (default: --timeout)")
    serve.add_argument("--per-client", type=_positive_int,
                       help="workers one client address may hold at once (default: workers - 1)")
    serve.add_argument("--isolation", choices=("auto", "process", "thread"), default="auto",
                       help="evaluate queries in worker processes killed at the time limit (auto: yes, on disk)")
    serve.add_argument("--max-query-bytes", type=_positive_int, default=4 * 1024 * 1024,
                       help="largest query body, bytes")
    serve.add_argument("--max-body-bytes", type=_positive_int, default=64 * 1024 * 1024,
                       help="largest request body (keyed updates), bytes")
    serve.set_defaults(func=_serve)

    load = sub.add_parser("load", help="load RDF files into the store")
    store_arg(load)
    load.add_argument("files", nargs="+", type=Path)
    load.add_argument("--format", help="RDF format (default: from the suffix)")
    load.add_argument("--graph", help="named graph IRI to load into")
    load.set_defaults(func=_load)

    query = sub.add_parser("query", help="run a SPARQL query (text or @file) and print the results")
    store_arg(query)
    query.add_argument("query")
    query.add_argument("--format", default="csv", choices=("json", "xml", "csv", "tsv"))
    query.add_argument("--no-index", action="store_true", help="evaluate spatial FILTERs without the index")
    query.set_defaults(func=_query)

    fed = sub.add_parser("federate", help="serve one SPARQL endpoint over member endpoints (federated GeoSPARQL), "
                         "or explain / run a federated query")
    fed.add_argument("--member", action="append", required=True, metavar="NAME=URL",
                     help="a member endpoint (repeat for each member)")
    fed.add_argument("--host", default="127.0.0.1")
    fed.add_argument("--port", type=int, default=8895)
    fed.add_argument("--timeout", type=float, default=30.0, help="seconds one request to a member may take")
    fed.add_argument("--query-timeout", type=float, default=60.0, help="seconds a federated query may take")
    fed.add_argument("--partial", action="store_true",
                     help="answer without a member that is down or times out (the answer is marked partial)")
    fed.add_argument("--bind-join-block", type=int, default=50, help="bindings per VALUES block of a bind join")
    fed.add_argument("--result-limit", type=int, default=100_000, help="most rows per answer")
    fed.add_argument("--metadata-dir", default="workbench-data/federation-metadata",
                     help="where member metadata is cached (refreshed after a day)")
    fed.add_argument("--refresh", action="store_true", help="probe the members' metadata again first")
    what = fed.add_mutually_exclusive_group()
    what.add_argument("--explain", metavar="QUERY", help="print the plan of a query (text or @file) and exit")
    what.add_argument("--query", metavar="QUERY", help="run one query (text or @file), print CSV and exit")
    fed.set_defaults(func=_federate)

    mapping = sub.add_parser("map", help="map a vector file to RDF with an RML mapping")
    mapping.add_argument("mapping", help="mapping file, or a shipped one: sea_ice_chart, crop_parcels, insitu_points")
    mapping.add_argument("--source", type=Path, help="input file (overrides rml:source)")
    mapping.add_argument("--output", type=Path, help="N-Triples/Turtle file to write")
    mapping.add_argument("--store", help="store directory to load into instead")
    mapping.add_argument("--invalid", default="error", choices=("error", "repair", "skip"))
    mapping.set_defaults(func=_map)


def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from workbench.linked.store import GeoStore

    return GeoStore(args.store, entailment=args.entailment, query_rewrite=not args.no_query_rewrite,
                    geosparql=not getattr(args, "no_geosparql", False))


def _serve(args: argparse.Namespace) -> int:
    from workbench.linked.endpoint import serve

    if args.timeout <= 0 or (args.queue_wait is not None and args.queue_wait < 0):
        raise WorkbenchError("--timeout must be positive and --queue-wait 0 or more seconds")
    serve(_open(args), host=args.host, port=args.port, api_key=args.api_key, timeout=args.timeout,
          result_limit=args.result_limit, workers=args.workers, queue=args.queue, queue_wait=args.queue_wait,
          per_client=args.per_client, isolation=args.isolation, max_query_bytes=args.max_query_bytes,
          max_body_bytes=args.max_body_bytes)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _load(args: argparse.Namespace) -> int:
    store = _open(args)
    for path in args.files:
        n = store.load(path, format=args.format, graph=args.graph)
        print(f"{path}: {n} triples")
    print(f"store {args.store}: {len(store)} quads, {len(store.index)} indexed geometries")
    return 0


def _query_text(query: str) -> str:
    """The query itself, or the text of the file named by ``@path``."""
    from workbench.errors import DataError

    if not query.startswith("@"):
        return query
    path = Path(query[1:])
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"query file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read query file {path}: {exc}") from None


def _query(args: argparse.Namespace) -> int:
    import pyoxigraph as ox

    from workbench.linked.results import write_boolean, write_results

    text = _query_text(args.query)
    result = _open(args).query(text, use_index=not args.no_index)
    if isinstance(result, ox.QueryBoolean):
        sys.stdout.write(write_boolean(bool(result), args.format).decode())
    elif isinstance(result, ox.QueryTriples):
        sys.stdout.write((ox.serialize(list(result), format=ox.RdfFormat.TURTLE) or b"").decode())
    else:  # solutions: pyoxigraph's, or the spatial engine's (read alike)
        names = [v.value for v in result.variables]
        rows = [[row[n] for n in names] for row in result]
        sys.stdout.write(write_results(names, rows, fmt=args.format).decode())
    return 0


def _members(specs: list[str]) -> dict[str, str]:
    from workbench.errors import ConfigError

    members: dict[str, str] = {}
    for spec in specs:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--member {spec!r}: expected NAME=URL, e.g. eo=http://127.0.0.1:8890/sparql")
        if name in members:
            raise ConfigError(f"--member {name!r} is given twice")
        members[name] = url
    return members


def _federate(args: argparse.Namespace) -> int:
    from workbench.linked.federation import Federation
    from workbench.linked.results import write_boolean, write_results

    federation = Federation(_members(args.member), timeout=args.timeout, bind_join_block=args.bind_join_block,
                            partial=args.partial, metadata_dir=args.metadata_dir)
    if args.refresh:
        federation.refresh_metadata()
    if args.explain is not None:
        print(federation.explain(_query_text(args.explain)))
        return 0
    if args.query is not None:
        result = federation.query(_query_text(args.query))
        if isinstance(result, bool):
            sys.stdout.write(write_boolean(result, "csv").decode())
        else:
            rows = [[row[v] for v in result.variables] for row in result]
            sys.stdout.write(write_results(result.variables, rows, fmt="csv").decode())
            for warning in result.warnings:
                print(f"warning: partial answer: {warning}", file=sys.stderr)
        return 0
    from workbench.linked.federation.server import serve_federation

    serve_federation(federation, host=args.host, port=args.port, timeout=args.query_timeout,
                     result_limit=args.result_limit)
    return 0


def _map(args: argparse.Namespace) -> int:
    from workbench.errors import ConfigError
    from workbench.linked.mapping import map_to_file, map_to_store

    if (args.output is None) == (args.store is None):
        raise ConfigError("give exactly one of --output FILE or --store DIR")
    if args.output is not None:
        report = map_to_file(args.mapping, args.output, source=args.source, invalid=args.invalid)
    else:
        from workbench.linked.store import GeoStore

        report = map_to_store(args.mapping, GeoStore(args.store), source=args.source, invalid=args.invalid)
    print(f"{report.features} features -> {report.triples} triples; invalid geometries: {report.invalid_geometries} "
          f"(repaired {report.repaired}, skipped {report.skipped})")
    return 0
