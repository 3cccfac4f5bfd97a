"""Processor jobs: submitted, run on the Dask cluster, their state persisted in sqlite.

:class:`JobManager` is protocol-neutral: the OGC API (:mod:`workbench.processors.api`), the
map panel and the CLI use it alike. A job goes ``accepted → running → successful | failed``,
or ``dismissed`` when cancelled or removed. Its state (status, progress 0–100, message,
times, the product or the error) lives in ``<project_dir>/processes/jobs.db`` — every change
is one sqlite transaction, so a restarted server finds the jobs and results of the last one.
Jobs left ``accepted``/``running`` by a process that no longer exists are marked failed.

Execution: a bounded pool of driver threads (``max_running``) with a bounded queue
(``max_queued``: :class:`QueueFull` beyond it); each driver runs the processor, whose chunks
are computed on the Dask cluster (:func:`workbench.cluster.get_client`). Dismissing a job
cancels it at its next progress report (and its Dask futures); a job running past
``timeout`` seconds is cancelled the same way and fails.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.processors._compute import Cancelled
from workbench.processors.base import InputError, get_processor, validate_inputs

__all__ = ["STATUSES", "TERMINAL", "Job", "JobManager", "JobNotFound", "QueueFull"]

log = logging.getLogger(__name__)

STATUSES = ("accepted", "running", "successful", "failed", "dismissed")
TERMINAL = frozenset({"successful", "failed", "dismissed"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    processor TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    updated TEXT NOT NULL,
    user TEXT,
    owner TEXT NOT NULL,
    inputs TEXT NOT NULL,
    product TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""


class JobNotFound(WorkbenchError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r}")


class QueueFull(WorkbenchError):
    """Too many jobs are waiting; try again later."""


@dataclass(frozen=True)
class Job:
    """State of one job (see the module docstring)."""

    id: str
    processor: str
    status: str
    progress: int
    message: str
    created: str
    started: str | None
    finished: str | None
    updated: str
    user: str | None
    inputs: dict[str, Any] = field(default_factory=dict)
    product: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """True once the job is successful, failed or dismissed."""
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


_OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if owner == _OWNER:
        return True
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine: cannot tell, leave it
    if int(pid_text) == os.getpid():
        return True  # another manager of this very process: its threads may still run the job
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobManager:
    """Submit, follow, list and dismiss processor jobs (state persisted in sqlite).

    Parameters
    ----------
    path_or_url
        sqlite file (or ``sqlite:///path`` URL); default ``<project_dir>/processes/jobs.db``.
    out_dir
        Where job products go (``<out_dir>/<job id>/``); default ``<project_dir>/processes/jobs``.
    max_running
        Jobs executed at once (driver threads; their chunks share the Dask cluster).
    max_queued
        Jobs accepted but not yet running beyond which :meth:`submit` raises :class:`QueueFull`.
    timeout
        Seconds a job may run before it is cancelled and fails.
    client
        Dask client for the jobs (default :func:`workbench.cluster.get_client`, made on first use).
    model_lookup
        Check of the model reference at submission (default: the registry,
        :func:`workbench.processors.models.registry_lookup`); ``False`` skips it.
    """

    def __init__(
        self,
        path_or_url: str | os.PathLike[str] | None = None,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        max_running: int = 2,
        max_queued: int = 16,
        timeout: float = 3600.0,
        client: Any = None,
        model_lookup: Callable[[Any], Any] | bool | None = None,
    ) -> None:
        from workbench.config import load_settings

        settings = load_settings()
        if path_or_url is None:
            path = Path(settings.project_dir) / "processes" / "jobs.db"
        else:
            text = str(path_or_url)
            path = Path(text.removeprefix("sqlite:///"))
        if max_running < 1 or max_queued < 0 or not timeout > 0:
            raise ValueError("max_running must be >= 1, max_queued >= 0 and timeout > 0")
        self.path = path.absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.out_dir = Path(out_dir).absolute() if out_dir else Path(settings.project_dir).absolute() / "processes" / "jobs"
        self.max_running = max_running
        self.max_queued = max_queued
        self.timeout = float(timeout)
        self._client = client
        if model_lookup is None:
            from workbench.processors.models import registry_lookup

            model_lookup = registry_lookup
        self._lookup = model_lookup or None
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="wb-job")
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
        self._recover()

    # ----------------------------------------------------------------- storage

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(sql, args).fetchall()
            conn.execute("COMMIT")
            return rows
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(
            id=row["id"], processor=row["processor"], status=row["status"], progress=int(row["progress"]),
            message=row["message"], created=row["created"], started=row["started"], finished=row["finished"],
            updated=row["updated"], user=row["user"], inputs=json.loads(row["inputs"]),
            product=json.loads(row["product"]) if row["product"] else None,
            error=json.loads(row["error"]) if row["error"] else None,
        )

    def _recover(self) -> None:
        rows = self._execute("SELECT id, owner FROM jobs WHERE status IN ('accepted', 'running')")
        for row in rows:
            if not _alive(row["owner"]):
                now = _now()
                self._execute(
                    "UPDATE jobs SET status='failed', message=?, finished=?, updated=?, error=? "
                    "WHERE id=? AND status IN ('accepted', 'running')",
                    ("interrupted: the process running the job stopped before it finished", now, now,
                     json.dumps({"type": "Interrupted", "detail": "the job's process stopped"}), row["id"]),
                )
                log.warning("job %s was interrupted by a stop of its process; marked failed", row["id"])

    # ----------------------------------------------------------------- public

    def submit(self, processor_id: str, raw_inputs: Mapping[str, Any], *, user: str | None = None) -> str:
        """Validate the inputs, record the job as ``accepted`` and queue it; returns the job id.

        Raises
        ------
        UnknownProcessorError, InputError
            Bad processor id or inputs (nothing is recorded).
        QueueFull
            ``max_queued`` jobs are already waiting.
        """
        proc = get_processor(processor_id)
        inputs = validate_inputs(processor_id, raw_inputs, model_lookup=self._lookup, processor=proc)
        with self._lock:
            waiting = self._execute("SELECT COUNT(*) AS n FROM jobs WHERE status='accepted' AND owner=?", (_OWNER,))
            if waiting[0]["n"] >= self.max_queued + self.max_running:
                raise QueueFull(f"{waiting[0]['n']} jobs are waiting (limit {self.max_queued}); try again later")
            job_id = uuid.uuid4().hex
            now = _now()
            self._execute(
                "INSERT INTO jobs (id, processor, status, progress, message, created, updated, user, owner, inputs) "
                "VALUES (?, ?, 'accepted', 0, 'queued', ?, ?, ?, ?, ?)",
                (job_id, processor_id, now, now, user, _OWNER, json.dumps(inputs.to_raw())),
            )
            self._cancel[job_id] = threading.Event()
        self._pool.submit(self._run, job_id, proc, inputs)
        log.info("job %s: %s accepted", job_id, processor_id)
        return job_id

    def get(self, job_id: str) -> Job:
        """The job ``job_id``; :class:`JobNotFound` if none."""
        rows = self._execute("SELECT * FROM jobs WHERE id=?", (str(job_id),))
        if not rows:
            raise JobNotFound(str(job_id))
        return self._job(rows[0])

    def list(self, *, processor: str | None = None, status: str | Iterator[str] | None = None,
             limit: int | None = None, offset: int = 0, include_dismissed: bool = False) -> list[Job]:
        """Jobs, newest first, optionally of one processor and/or status(es)."""
        where, args = [], []
        if processor is not None:
            where.append("processor=?")
            args.append(processor)
        statuses = [status] if isinstance(status, str) else list(status) if status is not None else []
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        elif not include_dismissed:
            where.append("status != 'dismissed'")
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY created DESC, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        return [self._job(r) for r in self._execute(sql, tuple(args))]

    def dismiss(self, job_id: str) -> Job:
        """Cancel a queued or running job, or dismiss a finished one (its results are no longer served)."""
        job = self.get(job_id)
        now = _now()
        if job.status != "dismissed":
            self._execute(
                "UPDATE jobs SET status='dismissed', message=?, updated=?, finished=COALESCE(finished, ?) WHERE id=?",
                ("dismissed" if job.done else "dismissed: cancelled before it finished", now, now, job.id),
            )
        event = self._cancel.get(job.id)
        if event is not None:
            event.set()
        log.info("job %s dismissed", job.id)
        return self.get(job.id)

    def wait(self, job_id: str, timeout: float | None = None, *, poll: float = 0.1) -> Job:
        """Wait until the job is done (or ``timeout`` seconds passed); returns its state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.done or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(poll)

    def close(self, *, wait: bool = False) -> None:
        """Cancel the running jobs of this manager and stop its threads."""
        for event in self._cancel.values():
            event.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # ----------------------------------------------------------------- running

    def _client_or_default(self) -> Any:
        if self._client is None:
            from workbench.cluster import get_client

            self._client = get_client()
        return self._client

    def _set(self, job_id: str, **values: Any) -> None:
        values["updated"] = _now()
        cols = ", ".join(f"{k}=?" for k in values)
        self._execute(f"UPDATE jobs SET {cols} WHERE id=? AND status != 'dismissed'", (*values.values(), job_id))

    def _run(self, job_id: str, proc: Any, inputs: Any) -> None:
        event = self._cancel.get(job_id) or threading.Event()
        try:
            if event.is_set() or self.get(job_id).status == "dismissed":
                return
            started = time.monotonic()
            self._set(job_id, status="running", started=_now(), message="started", progress=0)
            last = {"pct": -1, "t": 0.0}

            def progress(fraction: float, message: str) -> None:
                if event.is_set():
                    raise Cancelled("the job was dismissed")
                if time.monotonic() - started > self.timeout:
                    raise Cancelled(f"the job ran past its timeout of {self.timeout:g} s")
                pct = int(max(0.0, min(1.0, fraction)) * 100)
                pct = min(pct, 99)
                now = time.monotonic()
                if pct != last["pct"] or now - last["t"] > 1.0:
                    last.update(pct=pct, t=now)
                    self._set(job_id, progress=pct, message=str(message)[:500])

            product = proc.execute(inputs, out_dir=self.out_dir / job_id, progress=progress,
                                   client=self._client_or_default())
            now = _now()
            self._set(job_id, status="successful", progress=100, message="finished", finished=now,
                      product=json.dumps(product.to_dict()))
            log.info("job %s successful: product %s", job_id, product.id)
        except Cancelled as exc:
            if event.is_set():
                log.info("job %s cancelled", job_id)
            else:
                self._fail(job_id, "Timeout", str(exc))
        except InputError as exc:
            self._fail(job_id, "InputError", str(exc), input=exc.input)
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._fail(job_id, type(exc).__name__, str(exc))
        finally:
            self._cancel.pop(job_id, None)

    def _fail(self, job_id: str, kind: str, detail: str, **extra: Any) -> None:
        self._set(job_id, status="failed", message=f"failed: {detail}"[:500], finished=_now(),
                  error=json.dumps({"type": kind, "detail": detail, **extra}))
