"""``workbench fs``: look at the feature store from the shell."""

from __future__ import annotations

import argparse
import json
from typing import Any

from workbench.featurestore._common import json_default

__all__ = ["register"]


def _store(args: argparse.Namespace) -> Any:
    from workbench import storage
    from workbench.featurestore import FeatureStore, FeatureStoreError

    fs = FeatureStore(root=args.root) if args.root else FeatureStore()
    try:
        found = storage.exists(fs.root, storage_options=fs.storage_options)
    except Exception as exc:  # noqa: BLE001 - botocore credential/endpoint errors, translated below
        raise FeatureStoreError(f"cannot reach the feature store at {fs.root}: {_why(exc)}") from None
    if not found:
        raise FeatureStoreError(
            f"no feature store at {fs.root}; give --root of an existing store (default <storage_root>/featurestore)"
        )
    return fs


def _why(exc: BaseException) -> str:
    """A one-line reason, naming the settings to set when S3 credentials are missing."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    if names & {"NoCredentialsError", "PartialCredentialsError"} or "credentials" in str(exc).lower():
        return "no S3 credentials; set WORKBENCH_S3_ACCESS_KEY and WORKBENCH_S3_SECRET_KEY (or s3_* in workbench.toml)"
    return str(exc) or type(exc).__name__


def _print(data: Any) -> None:
    print(json.dumps(data, indent=1, default=json_default))


def _handler(args: argparse.Namespace) -> int:
    fs = _store(args)
    if args.action == "groups":
        for name, version in fs.list_feature_groups():
            group = fs.get_feature_group(name, version)
            commits = group.commit_details() if group.has_data() else {}
            latest = commits[max(commits)] if commits else None
            print(
                f"{name} v{version}\tkey={','.join(group.primary_key)}\tcommits={len(commits)}"
                f"\tlast={latest['committed_at'].isoformat() if latest else '-'}"
            )
    elif args.action == "views":
        for name, version in fs.list_feature_views():
            view = fs.get_feature_view(name, version)
            print(
                f"{name} v{version}\tlabels={','.join(view.labels)}\ttraining datasets="
                f"{view.training_dataset_versions()}"
            )
    elif args.action == "commits":
        group = fs.get_feature_group(args.name, args.version)
        _print({str(k): v for k, v in group.commit_details(args.limit).items()})
    elif args.action == "stats":
        _print(fs.get_feature_group(args.name, args.version).statistics(args.commit))
    elif args.action == "dataset":
        view = fs.get_feature_view(args.name, args.version)
        versions = view.training_dataset_versions()
        td = view.get_training_dataset_metadata(args.td_version or (versions[-1] if versions else 1))
        _print({"version": td.version, "splits": td.splits, "provenance": td.provenance})
    return 0


def register(subparsers: Any) -> None:
    """Add ``workbench fs`` to the CLI."""
    p = subparsers.add_parser(
        "fs", help="feature store: groups, commits, statistics, views, training datasets"
    )
    p.add_argument("--root", help="feature store root (default <storage_root>/featurestore)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("groups", help="list feature groups")
    sub.add_parser("views", help="list feature views")
    commits = sub.add_parser("commits", help="commits of a feature group")
    stats = sub.add_parser("stats", help="statistics of a commit of a feature group")
    dataset = sub.add_parser("dataset", help="a training dataset of a feature view: splits and provenance")
    for q in (commits, stats, dataset):
        q.add_argument("name")
        q.add_argument("--version", type=int, help="default: the highest")
    commits.add_argument("--limit", type=int)
    stats.add_argument("--commit", type=int, help="Delta version (default: the latest)")
    dataset.add_argument("--td-version", type=int, help="default: the latest")
    p.set_defaults(func=_handler)
