"""``workbench projects`` (projects, members, API keys) and ``workbench serve`` (servings, the server, logs).

Heavy libraries (TensorFlow, the feature store) are imported inside the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

__all__ = ["register"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 1..65535, got {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``projects`` and ``serve`` commands."""
    from workbench.serving.auth import ROLES, SCOPES

    p = subparsers.add_parser("projects", help="serving projects, their members and API keys")
    p.add_argument("--auth-db", help="auth database: SQLAlchemy URL or sqlite path (default <project>/serving/auth.db)")
    sub = p.add_subparsers(dest="projects_command", required=True)
    c = sub.add_parser("create", help="create a project; prints the owner's API key once")
    c.add_argument("name")
    c.add_argument("--owner", required=True, help="user who owns the project")
    c.set_defaults(func=_projects_create)
    a = sub.add_parser("add-member", help="add a user to a project (or change its role)")
    a.add_argument("project")
    a.add_argument("user")
    a.add_argument("--role", choices=ROLES, default="data_scientist")
    a.set_defaults(func=_projects_add_member)
    ls = sub.add_parser("list", help="projects and members")
    ls.set_defaults(func=_projects_list)
    keys = sub.add_parser("keys", help="API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key; printed once")
    kc.add_argument("project")
    kc.add_argument("--user", required=True)
    kc.add_argument("--scope", action="append", choices=SCOPES, help="scope (repeatable; default serving:infer)")
    kc.add_argument("--name", default="", help="a note on what the key is for")
    kc.set_defaults(func=_keys_create)
    kl = ksub.add_parser("list", help="keys by prefix (never the secret)")
    kl.add_argument("--project")
    kl.add_argument("--user")
    kl.add_argument("--active", action="store_true", help="only keys not revoked")
    kl.set_defaults(func=_keys_list)
    kr = ksub.add_parser("revoke", help="revoke a key by its prefix")
    kr.add_argument("prefix")
    kr.set_defaults(func=_keys_revoke)

    s = subparsers.add_parser("serve", help="model servings (TF-Serving REST and Open Inference Protocol)")
    ssub = s.add_subparsers(dest="serve_command", required=True)
    sc = ssub.add_parser("create", help="create or update a serving of a registered model (a rollout if it runs)")
    sc.add_argument("name")
    sc.add_argument("--model", required=True, help="registered model name")
    sc.add_argument("--version", default=None, help="version number, alias (champion) or 'latest' (default)")
    sc.add_argument("--project", required=True, help="project that owns the serving")
    sc.add_argument("--max-batch-size", type=_positive_int, help="rows gathered into one model call (default 64)")
    sc.add_argument("--batch-timeout-ms", type=_nonneg_float, help="wait for more requests (default 2 ms)")
    sc.add_argument("--max-queue", type=_positive_int, help="requests waiting before 503 (default 256)")
    sc.add_argument("--no-batching", action="store_true", help="one model call per request")
    sc.add_argument("--pad-to-max-batch", action="store_true",
                    help="pad every model call to --max-batch-size rows: bit-identical answers whatever the batching")
    sc.add_argument("--import", dest="imports", action="append", default=None, metavar="MODULE",
                    help="module to import before loading (custom layers); repeatable")
    sc.add_argument("--stopped", action="store_true", help="create it stopped (default: running)")
    sc.add_argument("--description", default="")
    sc.set_defaults(func=_serve_create)
    sl = ssub.add_parser("list", help="servings of the project directory")
    sl.set_defaults(func=_serve_list)
    st = ssub.add_parser("start", help="run a server (all running servings); with NAMEs, mark those running "
                         "first (and run a server only if none runs)")
    st.add_argument("names", nargs="*", metavar="NAME")
    st.add_argument("--host", default="127.0.0.1")
    st.add_argument("--port", type=_port, default=8501)
    st.add_argument("--workers", type=_positive_int, default=1, help="uvicorn worker processes (default 1)")
    st.add_argument("--max-body-bytes", type=_positive_int, default=16 * 1024 * 1024)
    st.add_argument("--request-timeout", type=_nonneg_float, default=30.0, help="seconds per prediction")
    st.add_argument("--flush-interval", type=_nonneg_float, default=1.0, help="inference-log write interval, s")
    st.add_argument("--poll-interval", type=_nonneg_float, default=0.5, help="servings-file check interval, s")
    st.add_argument("--max-rows", type=_positive_int, default=4096, help="most rows per request")
    st.add_argument("--only", action="append", metavar="SERVING",
                    help="serve only this serving (repeatable; default: every serving of the project directory)")
    st.add_argument("--no-inference-log", action="store_true")
    st.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    st.set_defaults(func=_serve_start)
    sp = ssub.add_parser("stop", help="mark servings stopped; without NAME, stop the running server")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.set_defaults(func=_serve_stop)
    ss = ssub.add_parser("status", help="state of servings (Running, Starting, Stopped, Failed)")
    ss.add_argument("names", nargs="*", metavar="NAME")
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(func=_serve_status)
    lg = ssub.add_parser("logs", help="inference log of a serving, and a monitoring summary")
    lg.add_argument("name")
    lg.add_argument("--limit", type=_positive_int, default=20, help="rows shown (the latest)")
    lg.add_argument("--summary", action="store_true", help="requests/s, latency percentiles, errors, classes")
    lg.add_argument("--json", action="store_true")
    lg.set_defaults(func=_serve_logs)


def _auth(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from workbench.serving.auth import AuthStore

    return AuthStore(args.auth_db)


def _projects_create(args: argparse.Namespace) -> int:
    key = _auth(args).create_project(args.name, owner=args.owner)
    print(f"project {args.name!r} created, owner {args.owner!r}")
    print(f"API key of {args.owner} (shown once, store it now): {key}")
    return 0


def _projects_add_member(args: argparse.Namespace) -> int:
    _auth(args).add_member(args.project, args.user, role=args.role)
    print(f"{args.user!r} is a {args.role} of {args.project!r}")
    return 0


def _projects_list(args: argparse.Namespace) -> int:
    store = _auth(args)
    projects = store.list_projects()
    if not projects:
        print("no projects")
    for p in projects:
        members = ", ".join(f"{u} ({r})" for u, r in sorted(store.members(p["name"]).items()))
        print(f"{p['name']:<20} owner {p['owner']:<16} members: {members}")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    key = _auth(args).create_key(args.project, args.user, scopes=args.scope or ["serving:infer"], name=args.name)
    print(f"API key of {args.user} in {args.project} (shown once, store it now): {key}")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    keys = _auth(args).list_keys(args.project, args.user, include_revoked=not args.active)
    if not keys:
        print("no keys")
    for k in keys:
        state = "active" if k.active else f"revoked {k.revoked_at}"
        print(f"{k.prefix}  {k.project:<16} {k.user:<16} {','.join(k.scopes):<45} {k.created_at}  {state}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    info = _auth(args).revoke_key(args.prefix)
    print(f"revoked {info.prefix} ({info.user} in {info.project})")
    return 0


def _serve_create(args: argparse.Namespace) -> int:
    from workbench.serving import hopsworks
    from workbench.serving.batching import BatchingOptions

    batching = None
    given = {k: v for k, v in (("max_batch_size", args.max_batch_size), ("batch_timeout_ms", args.batch_timeout_ms),
                               ("max_queue", args.max_queue)) if v is not None}
    if given or args.no_batching or args.pad_to_max_batch:
        batching = BatchingOptions.from_dict({**given, "enabled": not args.no_batching,
                                              "pad_to_max_batch": args.pad_to_max_batch})
    cfg = hopsworks.create_or_update(
        args.name, args.model, model_version=args.version, project=args.project, batching=batching,
        imports=args.imports or (), description=args.description, status="stopped" if args.stopped else "running",
    )
    ref = cfg.model_version or cfg.alias or "latest"
    print(f"serving {cfg.name!r}: model {cfg.model_name!r} {ref}, project {cfg.project!r}, {cfg.status}, "
          f"revision {cfg.revision}")
    return 0


def _serve_list(args: argparse.Namespace) -> int:
    from workbench.serving import hopsworks

    servings = hopsworks.get_all()
    if not servings:
        print("no servings")
    for c in servings:
        ref = c.model_version or c.alias or "latest"
        b = c.batching
        batching = f"batch {b.max_batch_size}/{b.batch_timeout_ms:g}ms" if b.enabled else "no batching"
        print(f"{c.name:<20} {c.project:<14} {c.model_name} {ref:<10} {c.status:<8} rev {c.revision}  {batching}")
    return 0


def _serve_start(args: argparse.Namespace) -> int:
    from workbench.config import load_settings
    from workbench.serving import hopsworks
    from workbench.serving.app import ServerOptions
    from workbench.serving.server import run_server

    for name in args.names:
        hopsworks.start(name, wait=None)
        print(f"serving {name!r} marked running")
    info = hopsworks.server_info()
    if args.names and info is not None:
        print(f"a server already runs at {info['url']} (pid {info['pid']}); it loads running servings itself")
        return 0
    options = ServerOptions(
        project_dir=str(load_settings().project_dir), max_body_bytes=args.max_body_bytes,
        request_timeout=args.request_timeout or 30.0, flush_interval=max(0.01, args.flush_interval),
        poll_interval=max(0.05, args.poll_interval), max_rows=args.max_rows,
        inference_log=not args.no_inference_log, only=tuple(args.only) if args.only else None,
    )
    print(f"serving on http://{args.host}:{args.port} with {args.workers} worker(s); Ctrl-C to stop", flush=True)
    run_server(options, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)
    return 0


def _serve_stop(args: argparse.Namespace) -> int:
    from workbench.serving import hopsworks

    if args.names:
        for name in args.names:
            hopsworks.stop(name)
            print(f"serving {name!r} marked stopped")
        return 0
    info = hopsworks.server_info()
    if info is None:
        print("no server runs for this project directory")
        return 1
    os.kill(int(info["pid"]), signal.SIGTERM)
    print(f"sent SIGTERM to the server at {info['url']} (pid {info['pid']})")
    return 0


def _serve_status(args: argparse.Namespace) -> int:
    from workbench.serving import hopsworks

    names = args.names or [c.name for c in hopsworks.get_all()]
    rows = [hopsworks.get_status(n) for n in names]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print("no servings")
    for r in rows:
        ref = r["model_version"] or r["alias"] or "latest"
        extra = f"  {r['error']}" if r["error"] else ""
        print(f"{r['name']:<20} {r['state']:<9} {r['model_name']} {ref} (loaded: {r.get('loaded_version')}){extra}")
    return 0


def _serve_logs(args: argparse.Namespace) -> int:
    from workbench.serving import hopsworks, monitoring

    cfg = hopsworks.get(args.name)
    frame = hopsworks.get_inference_log(args.name)
    if args.summary:
        from workbench import registry

        training = names = None
        try:
            mv = registry.get_model(cfg.model_name, cfg.model_version, alias=cfg.alias)
            from workbench.serving.model import ServedModel

            served = ServedModel.from_folder(mv.path, model_name=mv.name, version=mv.version)
            names = served.class_names
            training = monitoring.training_distribution(mv.training_dataset, len(names))
        except registry.RegistryError:
            pass
        summary = monitoring.summarize(frame, training=training, class_names=names)
        if args.json:
            print(json.dumps(summary, indent=1, default=str))
        else:
            print(monitoring.summary_table(summary).to_string(index=False))
        return 0
    tail = frame.tail(args.limit)
    if args.json:
        print(tail.to_json(orient="records", date_format="iso"))
        return 0
    if not len(tail):
        print(f"no inference-log rows for serving {args.name!r}")
        return 0
    cols = ["time", "user", "model_version", "protocol", "endpoint", "status", "latency_ms", "rows", "class_counts",
            "error"]
    print(tail[cols].to_string(index=False))
    print(f"{len(frame)} row(s) in total", file=sys.stderr)
    return 0
