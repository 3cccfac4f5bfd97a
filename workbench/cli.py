"""The ``workbench`` command: run pipelines, search catalogues, show settings, and the layers' own commands."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import yaml

from workbench.errors import WorkbenchError

__all__ = ["main", "build_parser"]

#: Modules that add their own subcommands through ``register(subparsers)``.
_COMMAND_MODULES: tuple[str, ...] = (
    "workbench.featurestore.cli",
    "workbench.experiments.cli",
    "workbench.sentinel1.cli",
    "workbench.sentinel2.cli",
    "workbench.linked.cli",
    "workbench.linked.interlink.cli",
    "workbench.serving.cli",
    "workbench.processors.cli",
)


def _cmd_run(args: argparse.Namespace) -> int:
    from workbench.pipeline import run_pipeline, stage_summary

    if not args.pipeline and not args.resume:
        raise WorkbenchError("give a pipeline file (workbench run PIPELINE.yaml) or --resume RUN_ID")
    params = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WorkbenchError(f"--param {item!r} must look like NAME=VALUE (VALUE as YAML)")
        params[key] = yaml.safe_load(value)
    record = run_pipeline(
        args.pipeline, runs_dir=args.runs_dir, parameters=params, kernel=args.kernel,
        resume=args.resume, progress=not args.quiet,
    )
    for row in stage_summary(record):
        secs = f"{row['seconds']:.1f}s" if row["seconds"] is not None else ""
        print(f"  {row['stage']:<20} {row['status']:<8} {secs:>8}  {row['error']}")
    base = Path(args.runs_dir) if args.runs_dir else Path(record["project_dir"]) / "runs"
    run_dir = base / record["run_id"]
    if record["status"] != "ok":
        failed = next((s for s in record["stages"] if s["status"] in ("failed", "interrupted")), None)
        if failed is not None:
            err = failed.get("error") or {}
            print(f"\nstage {failed['name']!r} failed: {err.get('ename')}: {err.get('evalue')}", file=sys.stderr)
            print(f"partly executed notebook: {failed.get('output_notebook')}", file=sys.stderr)
        else:
            err = record.get("error") or {}
            print(f"\nrun failed: {err.get('ename')}: {err.get('evalue')}", file=sys.stderr)
        print(f"report: {run_dir / 'report.html'}", file=sys.stderr)
        print(f"resume with: workbench run --resume {record['run_id']}", file=sys.stderr)
        return 1
    print(f"\nrun {record['run_id']} ok")
    print(f"run record: {run_dir / 'run.json'}")
    print(f"report: {run_dir / 'report.html'}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from workbench.catalog import items_to_geodataframe, search

    filters = {}
    if args.max_cloud_cover is not None:
        filters["max_cloud_cover"] = args.max_cloud_cover
    items = search(args.collection, args.bbox, args.start, args.end, backend=args.backend, limit=args.limit, **filters)
    if args.json:
        print(json.dumps({"type": "FeatureCollection", "features": [i.to_dict() for i in items]}, indent=2))
        return 0
    frame = items_to_geodataframe(items).drop(columns="geometry")
    print(frame.to_string(index=False) if len(frame) else "no items found")
    print(f"{len(items)} item(s)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from workbench import __version__
    from workbench.config import load_settings
    from workbench.pipeline import _package_versions

    settings = load_settings()
    print(f"ExtremeEarth Workbench {__version__}")
    print("\nsettings:")
    for key, value in settings.public().items():
        print(f"  {key:<22} {value}")
    print("\npackages:")
    for name, ver in _package_versions().items():
        print(f"  {name:<22} {ver}")
    if args.cluster:
        from workbench.cluster import close_client, get_client

        client = get_client(settings.dask_address)
        info = client.scheduler_info()
        print(f"\ncluster: {client.scheduler.address}, {len(info['workers'])} worker(s), dashboard {client.dashboard_link}")
        close_client()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="workbench", description="ExtremeEarth Workbench")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a papermill pipeline of notebooks, or resume a failed run")
    run.add_argument("pipeline", nargs="?", help="pipeline YAML (e.g. notebooks/pipelines/demo.yaml)")
    run.add_argument("--resume", metavar="RUN_ID", help="continue a failed run from its failed stage")
    run.add_argument("--runs-dir", help="where run folders go (default <project>/runs)")
    run.add_argument("--kernel", help="Jupyter kernel (default: the pipeline's, 'workbench')")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="override a shared parameter")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    search = sub.add_parser("search", help="search a catalogue (local sample catalogue, STAC API or CDSE OData)")
    search.add_argument("collection", help="collection id, e.g. sentinel-2-l2a")
    search.add_argument("--bbox", nargs=4, type=float, required=True, metavar=("W", "S", "E", "N"))
    search.add_argument("--start", required=True, help="ISO date")
    search.add_argument("--end", required=True, help="ISO date (inclusive)")
    search.add_argument("--backend", choices=["local", "stac", "odata"], help="default: the catalog_backend setting")
    search.add_argument("--limit", type=int)
    search.add_argument("--max-cloud-cover", type=float)
    search.add_argument("--json", action="store_true", help="print the items as GeoJSON")
    search.set_defaults(func=_cmd_search)

    info = sub.add_parser("info", help="versions, settings and (with --cluster) the Dask cluster")
    info.add_argument("--cluster", action="store_true", help="also start/connect the Dask cluster and describe it")
    info.set_defaults(func=_cmd_info)

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
