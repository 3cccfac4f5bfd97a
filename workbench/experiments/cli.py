"""``workbench models``: the model registry from the shell."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def _handler(args: argparse.Namespace) -> int:
    from workbench import registry
    from workbench.errors import WorkbenchError
    from workbench.experiments._mlflow import store_path

    if not registry.registry_exists():
        raise WorkbenchError(
            f"no model registry at {store_path()} (the project directory); run in the project folder or set "
            "WORKBENCH_PROJECT_DIR; models are registered by the training notebooks"
        )
    if args.action == "list":
        if not args.name:
            names = registry.list_models()
            for name in names:
                print(name)
            if not names:
                print("the registry holds no model yet")
            return 0
        versions = registry.get_models(args.name)
        if not versions:
            raise registry.unknown_model(args.name)
        for v in versions:
            aliases = f"\t@{','.join(v.aliases)}" if v.aliases else ""
            print(f"{v.name} v{v.version}\t{json.dumps(v.metrics)}{aliases}")
    elif args.action == "best":
        v = registry.get_best_model(args.name, args.metric, direction=args.direction)
        print(f"{v.name} v{v.version}\t{args.metric}={v.metrics[args.metric]}")
    elif args.action == "alias":
        registry.set_alias(args.name, args.alias, args.version)
        print(f"{args.name}@{args.alias} -> v{args.version}")
    elif args.action == "export":
        version = int(args.version) if args.version.isdigit() else args.version
        print(registry.export(args.name, version, args.path))
    return 0


def register(subparsers: Any) -> None:
    """Add ``workbench models`` to the CLI."""
    p = subparsers.add_parser("models", help="model registry: list, best, alias, export")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="registered models, or the versions of one")
    listing.add_argument("name", nargs="?")
    best = sub.add_parser("best", help="the version with the best value of a metric")
    best.add_argument("name")
    best.add_argument("metric")
    best.add_argument("--direction", choices=["max", "min"], default="max")
    alias = sub.add_parser("alias", help="point an alias (e.g. champion) at a version")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int)
    export = sub.add_parser(
        "export", help="export a version (number or alias) to a directory or .tar.gz/.zip"
    )
    export.add_argument("name")
    export.add_argument("version")
    export.add_argument("path")
    p.set_defaults(func=_handler)
