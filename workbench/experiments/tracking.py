"""Track experiments in MLflow: one parent run per experiment, one child run per trial."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from workbench.experiments._mlflow import client, experiment_id, retry_locked

__all__ = ["Tracker"]

log = logging.getLogger(__name__)


class Tracker:
    """Log an experiment and its trials to the project's MLflow store (from one process)."""

    def __init__(
        self,
        name: str,
        *,
        project: Any = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client(project)
        self.experiment_id = experiment_id(name, project)
        run = retry_locked(
            lambda: self._client.create_run(self.experiment_id, run_name=name, tags=dict(tags or {})),
            what="creating the run",
        )
        self.run_id: str = run.info.run_id
        self.artifact_dir = Path(_local(run.info.artifact_uri))
        if params:
            self._batch(self.run_id, params=params)

    def _batch(
        self,
        run_id: str,
        *,
        metrics: Mapping[str, float] | None = None,
        history: list[tuple[int, float]] | None = None,
        key: str = "",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        m = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
        m += [Metric(f"{key}_history", float(v), now, int(s)) for s, v in (history or [])]
        p = [Param(str(k), str(v)[:6000]) for k, v in (params or {}).items()]
        t = [RunTag(str(k), str(v)[:5000]) for k, v in (tags or {}).items()]
        for i in range(0, max(len(m), 1), 900):
            chunk = m[i : i + 900]
            retry_locked(
                lambda chunk=chunk, first=(i == 0): self._client.log_batch(
                    run_id, metrics=chunk, params=p if first else [], tags=t if first else []
                ),
                what="logging a batch",
            )

    def trial(self, record: Mapping[str, Any], *, key: str) -> str:
        """Log one finished trial as a child run; return its run id."""
        tags = {
            "mlflow.parentRunId": self.run_id,
            "workbench.trial": str(record["number"]),
            "workbench.state": record["state"],
            "workbench.worker": record.get("worker", ""),
        }
        if record.get("error"):
            tags["workbench.error"] = record["error"][-4000:]
        if record.get("messages"):
            tags["workbench.log"] = "\n".join(record["messages"])[-4000:]
        run = retry_locked(
            lambda: self._client.create_run(
                self.experiment_id,
                run_name=f"trial-{record['number']}",
                tags=tags,
                start_time=int(record["started"] * 1000),
            ),
            what="creating a trial run",
        )
        params = {
            k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in record["params"].items()
        }
        metrics = dict(record.get("metrics") or {})
        metrics["duration_s"] = record["duration"]
        self._batch(run.info.run_id, metrics=metrics, history=record.get("history"), key=key, params=params)
        for path in record.get("artifacts") or []:
            if os.path.exists(path):
                self._client.log_artifact(run.info.run_id, path)
            else:
                log.warning("trial %s: artifact %s is not readable here; not logged", record["number"], path)
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(record["state"], "FAILED")
        retry_locked(
            lambda: self._client.set_terminated(
                run.info.run_id, status, end_time=int((record["started"] + record["duration"]) * 1000)
            ),
            what="ending a trial run",
        )
        return str(run.info.run_id)

    def finish(
        self, *, metrics: Mapping[str, float], files: Mapping[str, Path], failed: bool = False
    ) -> None:
        """Log the experiment's summary metrics and files, and end the parent run."""
        self._batch(self.run_id, metrics=metrics)
        for path in files.values():
            self._client.log_artifact(self.run_id, str(path))
        retry_locked(
            lambda: self._client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED"),
            what="ending the run",
        )

    def scratch(self) -> Path:
        """A temporary directory for files to log."""
        return Path(tempfile.mkdtemp(prefix="wb-exp-"))


def _local(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path) if uri.startswith("file:") else uri
