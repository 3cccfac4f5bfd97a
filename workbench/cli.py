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

    if args.resume and args.replay:
        raise WorkbenchError("give either --resume RUN_ID or --replay RUN_ID, not both")
    if args.replay and args.pipeline:
        raise WorkbenchError(f"--replay {args.replay} runs the pipeline file of that run; leave out {args.pipeline!r}")
    if not args.pipeline and not args.resume and not args.replay:
        raise WorkbenchError("give a pipeline file (workbench run PIPELINE.yaml), --resume RUN_ID or --replay RUN_ID")
    params = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WorkbenchError(f"--param {item!r} must look like NAME=VALUE (VALUE as YAML)")
        params[key] = yaml.safe_load(value)
    record = run_pipeline(
        args.pipeline, runs_dir=args.runs_dir, project_dir=args.project_dir, parameters=params, kernel=args.kernel,
        resume=args.resume, replay=args.replay, deterministic=True if args.deterministic else None,
        progress=not args.quiet,
    )
    for row in stage_summary(record):
        secs = f"{row['seconds']:.1f}s" if row["seconds"] is not None else ""
        print(f"  {row['stage']:<20} {row['status']:<8} {secs:>8}  {row['error']}")
    base = Path(args.runs_dir) if args.runs_dir else Path(record["project_dir"]) / "runs"
    if args.replay and not args.runs_dir:
        from workbench.runs import runs_root

        base = runs_root(None)
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
    replayed = (record.get("replay") or {}).get("of")
    print(f"\nrun {record['run_id']} ok" + (f" (a replay of {replayed})" if replayed else ""))
    if replayed:
        print(f"compare with: workbench runs diff {replayed} {record['run_id']}")
    print(f"run record: {run_dir / 'run.json'}")
    print(f"report: {run_dir / 'report.html'}")
    return 0


def _cmd_runs_list(args: argparse.Namespace) -> int:
    from workbench.runs import dumps, format_rows, list_runs, runs_root

    rows = list_runs(runs_dir=args.runs_dir)
    if args.json:
        print(dumps(rows))
    elif not rows:
        print(f"no run yet in {runs_root(args.runs_dir)}")
    else:
        print(format_rows(rows, ["run_id", "pipeline", "status", "stages", "started", "ended", "replay_of"]))
        for row in rows:
            if row["error"]:
                print(f"{row['run_id']}: {row['error']}", file=sys.stderr)
    return 0


def _cmd_runs_show(args: argparse.Namespace) -> int:
    from workbench.pipeline import stage_summary
    from workbench.runs import dumps, find_run, load_record

    run_dir = find_run(args.run_id, runs_dir=args.runs_dir)
    record = load_record(run_dir)
    if args.json:
        print(dumps(record))
        return 0
    print(f"run {record['run_id']}: pipeline {record.get('pipeline')} ({record['pipeline_file']}), "
          f"status {record.get('status')}")
    print(f"  started {record.get('started')}, ended {record.get('ended')}, kernel {record.get('kernel')}, "
          f"deterministic {bool(record.get('deterministic'))}")
    if record.get("replay"):
        print(f"  replay of {record['replay'].get('of')}")
    if record.get("overrides"):
        print(f"  overrides {json.dumps(record['overrides'])}")
    for row in stage_summary(record):
        secs = f"{row['seconds']:.1f}s" if row["seconds"] is not None else ""
        print(f"  {row['stage']:<20} {row['status']:<8} {secs:>8}  {row['error']}")
    for stage in record["stages"]:
        for name, entry in (stage.get("outputs") or {}).items():
            print(f"    {stage['name']}.{name}: {entry.get('path')}  sha256 {entry.get('sha256') or '-'}")
    print(f"report: {run_dir / 'report.html'}")
    return 0


def _cmd_runs_diff(args: argparse.Namespace) -> int:
    from workbench.runs import diff_runs, dumps, format_rows

    rows = diff_runs(args.a, args.b, runs_dir=args.runs_dir)
    if args.json:
        print(dumps(rows))
    elif not rows:
        print(f"neither run {args.a} nor run {args.b} recorded an output")
    else:
        shown = [{**r, "output": f"{r['stage']}.{r['output']}", "a": (r["a"] or "-")[:16], "b": (r["b"] or "-")[:16],
                  "same": "same" if r["same"] else "DIFFERENT"} for r in rows]
        print(format_rows(shown, ["output", "a", "b", "same"]))
        print(f"{sum(r['same'] for r in rows)} of {len(rows)} output(s) identical")
    return 0 if rows and all(r["same"] for r in rows) else 1


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
    run.add_argument("--replay", metavar="RUN_ID",
                     help="re-execute a run from its run.json (same pipeline file, parameters, kernel) into a new run")
    run.add_argument("--deterministic", action="store_true",
                     help="TensorFlow op determinism and a fixed hash seed in the notebook kernels (replays match)")
    run.add_argument("--runs-dir", help="where run folders go (default <project>/runs)")
    run.add_argument("--project-dir", help="working directory of the notebooks and project of the run (default: "
                     "the project_dir setting; with --replay, the run's) - a fresh one replays from a clean state")
    run.add_argument("--kernel", help="Jupyter kernel (default: the pipeline's, 'workbench')")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="override a shared parameter")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    runs = sub.add_parser("runs", help="the records of pipeline runs: list, show, diff")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    runs_list = runs_sub.add_parser("list", help="every run: id, pipeline, status, stages ok, replay of")
    runs_show = runs_sub.add_parser("show", help="one run's record: parameters, stages, outputs and checksums")
    runs_show.add_argument("run_id", metavar="RUN_ID")
    runs_diff = runs_sub.add_parser("diff", help="each output's checksum in two runs (exit 1 if any differs)")
    runs_diff.add_argument("a", metavar="RUN_A")
    runs_diff.add_argument("b", metavar="RUN_B")
    for parser_, func in ((runs_list, _cmd_runs_list), (runs_show, _cmd_runs_show), (runs_diff, _cmd_runs_diff)):
        parser_.add_argument("--runs-dir", help="where run folders are (default <project>/runs)")
        parser_.add_argument("--json", action="store_true", help="print JSON")
        parser_.set_defaults(func=func)

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
