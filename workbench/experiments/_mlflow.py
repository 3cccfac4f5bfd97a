"""MLflow under the project directory: a sqlite tracking + registry store and a local artifact root.

Shared by :mod:`workbench.registry` and :mod:`workbench.experiments`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from workbench.featurestore._common import project_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["project_settings", "store_path", "tracking_uri", "artifact_root", "client", "experiment_id", "retry_locked"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_clients: dict[str, "MlflowClient"] = {}
T = TypeVar("T")


def _mlruns(project: Any) -> Path:
    path = Path(project_settings(project).project_dir).absolute() / "mlruns"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_path(project: Any = None) -> Path:
    """Path of the project's sqlite store (``<project>/mlruns/mlflow.db``), without creating anything."""
    return Path(project_settings(project).project_dir).absolute() / "mlruns" / "mlflow.db"


def tracking_uri(project: Any = None) -> str:
    """``sqlite:///<project>/mlruns/mlflow.db``: the tracking and registry store."""
    return f"sqlite:///{_mlruns(project) / 'mlflow.db'}"


def artifact_root(project: Any = None) -> Path:
    """Directory of the artifacts of every run of the project."""
    path = _mlruns(project) / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def retry_locked(func: Callable[[], T], *, attempts: int = 60, what: str = "MLflow call") -> T:
    """Call ``func``, retrying while sqlite reports a lock or a lost race on a unique key."""
    for attempt in range(attempts - 1):
        try:
            return func()
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/mlflow wrap sqlite errors in several types
            text = str(exc).lower()
            if not any(
                s in text for s in ("database is locked", "unique constraint", "integrityerror", "busy")
            ):
                raise
            log.debug("%s: transient sqlite error (%s), retry %d", what, exc, attempt + 1)
            time.sleep(min(0.05 * (attempt + 1), 0.5))
    return func()


def client(project: Any = None) -> "MlflowClient":
    """An MLflow client on the project's store (created once per store and process)."""

    uri = tracking_uri(project)
    with _lock:
        if uri not in _clients:
            logging.getLogger("alembic").setLevel(logging.WARNING)
            _clients[uri] = retry_locked(lambda: _make(uri), what="opening the MLflow store")
        return _clients[uri]


def _make(uri: str) -> "MlflowClient":
    from mlflow import MlflowClient

    lock_file = Path(uri.removeprefix("sqlite:///")).with_suffix(".init.lock")
    with open(lock_file, "a+b") as fh:
        # the first client creates the schema; two processes doing so at once would collide
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX: rely on retry_locked
            pass
        c = MlflowClient(tracking_uri=uri, registry_uri=uri)
        c.search_experiments(max_results=1)  # creates or upgrades the schema now, under the lock
    return c


def experiment_id(name: str, project: Any = None) -> str:
    """Id of MLflow experiment ``name``, created with its artifacts under the project if new."""
    c = client(project)

    def get_or_create() -> str:
        found = c.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(c.create_experiment(name, artifact_location=(artifact_root(project) / name).as_uri()))
        except Exception as exc:  # noqa: BLE001 - another process created it first
            if "already exists" in str(exc).lower() or "unique" in str(exc).lower():
                found = c.get_experiment_by_name(name)
                if found is not None:
                    return str(found.experiment_id)
            raise

    return retry_locked(get_or_create, what=f"creating experiment {name!r}")
