"""Run records of pipeline runs: find, list, show and compare them, and check a run before it is replayed.

A run folder ``runs/<run-id>/`` holds ``run.json`` (:mod:`workbench.pipeline`). These helpers read those records
only; :func:`workbench.pipeline.run_pipeline` with ``replay=RUN_ID`` re-executes one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

from workbench._args import did_you_mean
from workbench.errors import PipelineError

__all__ = ["runs_root", "find_run", "load_record", "list_runs", "diff_runs", "replay_plan", "ReplayWarning"]

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[A-Za-z0-9][\w.-]*$")
#: Keys a run record must have to be listed, shown, compared or replayed.
_REQUIRED = ("run_id", "pipeline_file", "stages")


class ReplayWarning(UserWarning):
    """A replay runs with other package versions, another pipeline file or another workbench commit."""


def runs_root(runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of run folders: ``runs_dir``, else ``<project_dir>/runs`` of the settings."""
    if runs_dir:
        return Path(runs_dir)
    from workbench.config import load_settings

    return load_settings().runs_dir


def _known(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "run.json").is_file())


def find_run(run_id: str, *, runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of run ``run_id``.

    Raises
    ------
    PipelineError
        When ``run_id`` is not a run id (a path, empty) or no run of that id is under ``runs_dir``; the
        message lists the closest known ids.
    """
    root = runs_root(runs_dir)
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise PipelineError(f"run id {run_id!r} is not a run id (like 20261202T061500Z-ab12cd; see `workbench runs list`)")
    folder = root / run_id
    if not (folder / "run.json").is_file():
        known = _known(root)
        where = f"in {root}" if root.is_dir() else f"({root} does not exist)"
        hint = did_you_mean(run_id, known) or (f"; the latest is {known[-1]!r}" if known else "; there is no run yet")
        raise PipelineError(f"no run {run_id!r} {where}{hint}")
    return folder


def load_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``run.json`` of a run folder, checked to be a run record.

    Raises
    ------
    PipelineError
        When the file is missing, not JSON, not an object or lacks the keys of a run record.
    """
    from workbench.pipeline import read_run

    path = Path(run_dir) / "run.json"
    record = read_run(run_dir)
    if not isinstance(record, dict):
        raise PipelineError(f"run record {path} is not a JSON object (got {type(record).__name__})")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise PipelineError(f"run record {path} is not a run record: it lacks {missing}")
    if not isinstance(record["stages"], list) or not all(isinstance(s, dict) and "name" in s for s in record["stages"]):
        raise PipelineError(f"run record {path}: 'stages' must be a list of stage entries with a 'name'")
    return record


def list_runs(*, runs_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """One summary per run folder (oldest first): id, pipeline, status, start, end, stages ok, replay of.

    A folder whose ``run.json`` cannot be read is listed with status ``unreadable`` and the reason.
    """
    root = runs_root(runs_dir)
    rows = []
    for run_id in _known(root):
        try:
            record = load_record(root / run_id)
        except PipelineError as exc:
            rows.append({"run_id": run_id, "pipeline": None, "status": "unreadable", "started": None,
                         "ended": None, "stages": None, "replay_of": None, "error": str(exc)})
            continue
        stages = record["stages"]
        rows.append({
            "run_id": run_id, "pipeline": record.get("pipeline"), "status": record.get("status"),
            "started": record.get("started"), "ended": record.get("ended"),
            "stages": f"{sum(s.get('status') == 'ok' for s in stages)}/{len(stages)}",
            "replay_of": (record.get("replay") or {}).get("of"), "error": None,
        })
    return rows


def _outputs(record: Mapping[str, Any]) -> dict[tuple[str, str], str | None]:
    out = {}
    for stage in record["stages"]:
        for name, entry in (stage.get("outputs") or {}).items():
            out[(stage["name"], name)] = entry.get("sha256") if isinstance(entry, dict) else None
    return out


def diff_runs(a: str, b: str, *, runs_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Each output of runs ``a`` and ``b`` with its checksum in both.

    Returns
    -------
    list of dict
        Rows ``{stage, output, a, b, same}`` in stage order; ``a``/``b`` is ``None`` where that run has no such
        output (or no checksum: a remote URL), and ``same`` is true only for two equal checksums.
    """
    first = load_record(find_run(a, runs_dir=runs_dir))
    second = load_record(find_run(b, runs_dir=runs_dir))
    left, right = _outputs(first), _outputs(second)
    keys = list(left) + [k for k in right if k not in left]
    return [{"stage": stage, "output": name, "a": left.get((stage, name)), "b": right.get((stage, name)),
             "same": left.get((stage, name)) is not None and left.get((stage, name)) == right.get((stage, name))}
            for stage, name in keys]


def replay_plan(record: Mapping[str, Any], *, run_dir: Path) -> dict[str, Any]:
    """What a replay of ``record`` re-runs, with a :class:`ReplayWarning` for each thing that changed since.

    Checks that the pipeline file still exists; compares its checksum (when the run recorded one), the package
    versions and the workbench commit with today's.

    Returns
    -------
    dict
        ``pipeline_file``, ``overrides``, ``kernel``, ``project_dir``, ``deterministic`` and a ``replay``
        entry for the new run record (``of``, ``package_changes``, ``pipeline_changed``, ``commit_changed``).
    """
    from workbench.pipeline import _package_versions, _workbench_build, checksum

    pipeline_file = Path(str(record["pipeline_file"]))
    if not pipeline_file.is_file():
        raise PipelineError(
            f"run {record['run_id']} ran pipeline file {pipeline_file}, which no longer exists; "
            "restore it to replay the run"
        )
    overrides = record.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise PipelineError(f"run record {run_dir / 'run.json'}: 'overrides' must be a mapping")
    changed: list[str] = []
    was, now = dict(record.get("package_versions") or {}), _package_versions()
    packages = {name: {"run": was.get(name), "now": now.get(name)}
                for name in sorted(set(was) | set(now)) if was.get(name) != now.get(name)}
    if packages:
        changed.append("package versions differ: " + ", ".join(
            f"{n} {v['run'] or '(absent)'} -> {v['now'] or '(absent)'}" for n, v in packages.items()))
    recorded_sha = record.get("pipeline_sha256")
    pipeline_changed = bool(recorded_sha) and recorded_sha != checksum(pipeline_file)
    if pipeline_changed:
        changed.append(f"pipeline file {pipeline_file} changed since the run")
    commit_was = (record.get("workbench") or {}).get("commit")
    commit_now = _workbench_build().get("commit")
    commit_changed = bool(commit_was and commit_now and commit_was != commit_now)
    if commit_changed:
        changed.append(f"workbench commit {commit_was[:10]} -> {commit_now[:10]}")
    for line in changed:
        message = f"replaying run {record['run_id']}: {line}; outputs may differ"
        log.warning(message)
        warnings.warn(message, ReplayWarning, stacklevel=3)
    return {
        "pipeline_file": pipeline_file,
        "overrides": dict(overrides),
        "kernel": record.get("kernel"),
        "project_dir": record.get("project_dir"),
        "deterministic": bool(record.get("deterministic", False)),
        "replay": {"of": record["run_id"], "package_changes": packages, "pipeline_changed": pipeline_changed,
                   "commit_changed": commit_changed},
    }


def format_rows(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as a plain fixed-width table (for the command line)."""
    widths = {c: max([len(c)] + [len(str(r.get(c) if r.get(c) is not None else "-")) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    for r in rows:
        lines.append("  ".join(str(r.get(c) if r.get(c) is not None else "-").ljust(widths[c]) for c in columns))
    return "\n".join(line.rstrip() for line in lines)


def dumps(value: Any) -> str:
    """JSON for the command line."""
    return json.dumps(value, indent=2, default=str)
