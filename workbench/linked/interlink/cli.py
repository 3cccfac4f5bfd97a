"""``workbench interlink SOURCE TARGET --out DIR``: link two geometry sets and write the links (wired into ``workbench``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``interlink`` command."""
    p = subparsers.add_parser(
        "interlink", help="discover topological relations between two geometry sets (batch or progressive, on Dask)",
        description="Link SOURCE and TARGET geometries (GeoParquet, GeoJSON, GeoPackage, CSV with lon/lat or wkt; "
                    "or @query.rq: a SPARQL SELECT of ?feature ?wkt over --store). Writes DIR/links.parquet, "
                    "DIR/links.nt and DIR/summary.json.")
    p.add_argument("source", help="source side (indexed: give the smaller one), a file or @query.rq")
    p.add_argument("target", help="target side (streamed), a file or @query.rq")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--relations", nargs="+", metavar="REL",
                   help="GeoSPARQL relations to link (default: sfIntersects sfContains sfWithin ehCovers ehCoveredBy "
                        "sfEquals sfTouches sfOverlaps sfCrosses); commas also separate")
    p.add_argument("--budget", type=int, help="verify at most N candidate pairs, best-weighted first (progressive)")
    p.add_argument("--weighting", help="cf, js, chi2, mbro, isp, random or a product such as chi2*mbro "
                                       "(default with --budget: chi2*mbro)")
    p.add_argument("--filter", default="grid", choices=("grid", "strtree"), help="candidate filter (same answer)")
    p.add_argument("--partitions", type=int, help="spatial partitions (default: by size, 2 per Dask worker)")
    p.add_argument("--dask-address", help="Dask scheduler address (tcp://host:8786), or 'local' for a LocalCluster; "
                                          "default: run in this process")
    p.add_argument("--crs", help="CRS to compare in (default: the source's)")
    p.add_argument("--invalid", default="error", choices=("error", "repair", "skip"), help="invalid geometries")
    p.add_argument("--source-id", help="id column of the source (default: id, else the row)")
    p.add_argument("--target-id", help="id column of the target")
    p.add_argument("--store", help="store directory that @query.rq sides select from")
    p.add_argument("--load", metavar="STORE_DIR", help="also assert the links in this GeoSPARQL store")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_interlink)


def _side(text: str, store: object | None) -> object:
    from workbench.linked.cli import _query_text
    from workbench.linked.interlink.errors import InterlinkError
    from workbench.linked.interlink.inputs import StoreSelection

    if not text.startswith("@"):
        return Path(text)
    if store is None:
        raise InterlinkError(f"{text} is a query: give --store DIR, the store it selects from")
    return StoreSelection(store, _query_text(text))  # type: ignore[arg-type]


def _interlink(args: argparse.Namespace) -> int:
    from workbench.linked.interlink.api import interlink
    from workbench.linked.interlink.errors import InterlinkError

    relations = None
    if args.relations:
        relations = [r.strip() for item in args.relations for r in item.split(",") if r.strip()]
    store = None
    if args.store:
        if not Path(args.store).is_dir():
            raise InterlinkError(f"store directory {args.store} does not exist")
        from workbench.linked.store import GeoStore

        store = GeoStore(args.store)
    client = None
    if args.dask_address:
        from workbench.cluster import get_client

        client = get_client(None if args.dask_address == "local" else args.dask_address)
    result = interlink(_side(args.source, store), _side(args.target, store), relations=relations,
                       budget=args.budget, weighting=args.weighting, client=client, filter=args.filter,
                       partitions=args.partitions, crs=args.crs, invalid=args.invalid, source_id=args.source_id,
                       target_id=args.target_id, progress=not args.quiet)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    result.to_parquet(out / "links.parquet")
    result.to_ntriples(out / "links.nt")
    summary = {"crs": result.crs, "relations": list(result.relations), "counts": result.counts(),
               **{k: v for k, v in result.stats.items() if k != "theta"}}
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=float))
    tmp.replace(out / "summary.json")
    print(result.summary())
    if args.load:
        from workbench.linked.store import GeoStore

        loaded = result.load_into(GeoStore(args.load))
        print(f"loaded {loaded} link triples into {args.load}")
    print(f"links: {out / 'links.parquet'}, {out / 'links.nt'}")
    return 0
