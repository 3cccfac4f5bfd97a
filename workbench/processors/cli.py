"""``workbench processes``: serve the OGC API, list and describe the processors, execute one (wired into ``workbench``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``processes`` command and its sub-commands."""
    p = subparsers.add_parser("processes", help="TEP processors and their OGC API – Processes server")
    sub = p.add_subparsers(dest="processes_command", required=True)

    serve = sub.add_parser("serve", help="serve the processors as OGC API – Processes")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--jobs-db", help="sqlite file of the jobs (default <project>/processes/jobs.db)")
    serve.add_argument("--auth-db", help="auth database of the API keys (default <project>/serving/auth.db)")
    serve.add_argument("--max-running", type=int, default=2, help="jobs run at once")
    serve.add_argument("--max-queued", type=int, default=16, help="jobs waiting beyond which execution answers 503")
    serve.add_argument("--job-timeout", type=float, default=3600.0, help="seconds before a job is cancelled")
    serve.add_argument("--sync-timeout", type=float, default=600.0,
                       help="seconds a synchronous execution waits before answering 201 with the job")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20)
    serve.set_defaults(func=_serve)

    ls = sub.add_parser("list", help="list the processors")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    describe = sub.add_parser("describe", help="describe a processor (inputs and outputs as JSON Schema)")
    describe.add_argument("processor")
    describe.set_defaults(func=_describe)

    execute = sub.add_parser("execute", help="run a processor here (on the Dask cluster) and print the product")
    execute.add_argument("processor")
    execute.add_argument("inputs", help="inputs as JSON text, or @file.json")
    execute.add_argument("--out-dir", type=Path, help="where the product goes (default <project>/processes/runs)")
    execute.add_argument("--quiet", action="store_true", help="no progress lines")
    execute.set_defaults(func=_execute)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from workbench.processors.api import create_app
    from workbench.processors.jobs import JobManager
    from workbench.serving.auth import AuthStore

    if not 0 < args.port < 65536:
        raise WorkbenchError(f"--port must be in 1..65535, got {args.port}")
    manager = JobManager(args.jobs_db, max_running=args.max_running, max_queued=args.max_queued,
                         timeout=args.job_timeout)
    app = create_app(manager, auth=AuthStore(args.auth_db) if args.auth_db else None,
                     max_body_bytes=args.max_body_bytes, sync_timeout=args.sync_timeout)
    print(f"OGC API – Processes on http://{args.host}:{args.port}/ (jobs in {manager.path})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=10)
    return 0


def _list(args: argparse.Namespace) -> int:
    from workbench.processors import list_processors

    procs = list_processors()
    if args.json:
        print(json.dumps([{"id": p.id, "title": p.title, "version": p.version} for p in procs], indent=1))
    else:
        for p in procs:
            print(f"{p.id:<16} {p.version:<8} {p.title}")
    return 0


def _describe(args: argparse.Namespace) -> int:
    from workbench.processors import get_processor
    from workbench.processors.api import _description

    print(json.dumps(_description(get_processor(args.processor), ""), indent=1))
    return 0


def _read_inputs(text: str) -> Any:
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise WorkbenchError(f"inputs file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"inputs must be JSON (an object of named inputs): {exc}") from None


def _execute(args: argparse.Namespace) -> int:
    from workbench.config import load_settings
    from workbench.processors import get_processor, validate_inputs
    from workbench.processors.models import registry_lookup

    proc = get_processor(args.processor)
    inputs = validate_inputs(proc.id, _read_inputs(args.inputs), model_lookup=registry_lookup, processor=proc)
    out_dir = args.out_dir or Path(load_settings().project_dir) / "processes" / "runs"

    def progress(fraction: float, message: str) -> None:
        if not args.quiet:
            print(f"{int(fraction * 100):3d}% {message}", file=sys.stderr, flush=True)

    product = proc.execute(inputs, out_dir=out_dir, progress=progress)
    print(json.dumps(product.to_dict(), indent=1))
    return 0
