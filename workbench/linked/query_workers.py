"""Worker processes that evaluate queries on a read-only view of an on-disk store and are killed at a deadline.

pyoxigraph evaluates a query in Rust without a way to stop it from outside, so a query
past its time limit would keep a core busy until it ends by itself. The endpoint of a
store on disk therefore evaluates queries in a pool of worker processes, each holding
``pyoxigraph.Store.read_only(path)``: the query's plan (checked and prepared by the
server's :class:`~workbench.linked.store.GeoStore`) goes to an idle worker, the worker
answers with finished bytes (:mod:`workbench.linked.answers`), and a worker still busy at
the deadline is killed (its CPU use stops at once) and replaced in the background.

A worker reopens its view when the server's store has been written (the plan carries the
store's :attr:`~workbench.linked.store.GeoStore.generation`), so answers follow updates.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing.connection
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import StorageError
from workbench.linked.answers import Answer, AnswerTimeout, answer_result
from workbench.linked.query_plan import QueryPlan

__all__ = ["QueryTimeout", "QueryWorkers", "WorkerFailed"]

log = logging.getLogger(__name__)


class QueryTimeout(Exception):
    """The query ran past its deadline; its worker was stopped."""


class WorkerFailed(Exception):
    """A worker process failed while evaluating a query (its message says how)."""


@dataclass(frozen=True)
class _Task:
    plan: QueryPlan
    generation: int
    accept: str
    fmt: list[str]
    result_limit: int
    seconds: float


def _worker_main(conn: multiprocessing.connection.Connection, path: str, geosparql_functions: bool) -> None:
    """A worker: open the store read-only, then answer tasks until the pipe closes."""
    import pyoxigraph as ox

    from workbench.linked import geosparql
    from workbench.linked.query_plan import run_plan

    functions = geosparql.custom_functions() if geosparql_functions else {}
    aggregates = geosparql.custom_aggregate_functions() if geosparql_functions else {}
    generation = -1
    store = None
    conn.send(("ready", None))
    while True:
        try:
            task: _Task = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if task.generation != generation or store is None:
                store = ox.Store.read_only(path)
                generation = task.generation
            deadline = time.monotonic() + task.seconds
            result = run_plan(store, task.plan, functions=functions, aggregates=aggregates, deadline=deadline)
            answer = answer_result(result, accept=task.accept, fmt=task.fmt, result_limit=task.result_limit,
                                   deadline=deadline)
            conn.send(("ok", answer))
        except AnswerTimeout as exc:
            conn.send(("timeout", str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the server, which answers 500
            store = None  # reopen next time (e.g. files compacted away under a stale view)
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    """One worker: a ``python -m workbench.linked.query_workers`` process on one end of a socket pair.

    A fresh interpreter (not ``multiprocessing``'s spawn, which re-runs the caller's main
    script, and not fork, unsafe in a threaded server) that imports only what queries need.
    """

    def __init__(self, path: str, geosparql_functions: bool) -> None:
        parent, child = socket.socketpair()
        command = [sys.executable, "-m", "workbench.linked.query_workers", "--fd", str(child.fileno()),
                   "--path", path] + ([] if geosparql_functions else ["--no-geosparql"])
        try:
            self.process = subprocess.Popen(command, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self.conn = multiprocessing.connection.Connection(parent.detach())

    def wait_ready(self, timeout: float) -> None:
        try:
            ready = self.conn.poll(timeout)
            kind, _ = self.conn.recv() if ready else ("no answer", None)
        except (EOFError, OSError):
            kind = f"it exited with status {self.process.poll()}"
        if kind != "ready":
            self.kill()
            raise StorageError(f"a query worker process did not start within {timeout:g} s ({kind})")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("query worker %d did not exit after SIGKILL", self.process.pid)
        self.conn.close()


class QueryWorkers:
    """A pool of ``size`` query worker processes over the on-disk store at ``path``.

    Parameters
    ----------
    path
        Directory of the store (the server holds it read-write; workers open it read-only).
    size
        Worker processes (queries evaluated at once).
    geosparql_functions
        Whether workers register the ``geof:`` functions (``False`` for a plain SPARQL store).
    start_timeout
        Seconds a new worker may take to start.
    """

    def __init__(self, path: str | Path, *, size: int, geosparql_functions: bool = True,
                 start_timeout: float = 60.0) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.path = str(path)
        self.size = size
        self.geosparql_functions = geosparql_functions
        self.start_timeout = start_timeout
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.killed = 0

    def start(self) -> QueryWorkers:
        """Start the workers and wait until each has opened the store."""
        workers = [self._spawn() for _ in range(self.size)]
        for worker in workers:
            worker.wait_ready(self.start_timeout)
            self._idle.put(worker)
        log.info("%d query worker processes over %s", self.size, self.path)
        return self

    def _spawn(self) -> _Worker:
        worker = _Worker(self.path, self.geosparql_functions)
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, dead: _Worker) -> None:
        """Kill ``dead`` and start a replacement in the background."""
        with self._lock:
            self._all.discard(dead)
        dead.kill()
        if self._closed:
            return

        def start() -> None:
            try:
                worker = self._spawn()
                worker.wait_ready(self.start_timeout)
            except Exception:  # logged; the pool runs one short until the next replacement
                if not self._closed:  # (closing kills a starting worker too)
                    log.exception("could not start a replacement query worker")
                return
            if self._closed:
                worker.kill()
            else:
                self._idle.put(worker)

        threading.Thread(target=start, daemon=True, name="sparql-worker-spawn").start()

    def run(self, plan: QueryPlan, *, generation: int, accept: str, fmt: list[str], result_limit: int,
            deadline: float) -> Answer:
        """Evaluate ``plan`` in a worker, blocking until its answer or the deadline (call from a thread).

        Raises
        ------
        QueryTimeout
            At the deadline (``time.monotonic()``); the worker is killed and replaced.
        WorkerFailed
            If the evaluation raised or the worker died.
        """
        if self._closed:
            raise WorkerFailed("the query workers are stopped")
        try:
            worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise QueryTimeout("no query worker was free before the deadline") from None
        task = _Task(plan, generation, accept, list(fmt), result_limit, max(0.0, deadline - time.monotonic()))
        try:
            worker.conn.send(task)
            ready = worker.conn.poll(max(0.0, deadline - time.monotonic()))
            if not ready:
                self.killed += 1
                self._replace(worker)
                raise QueryTimeout("the query ran past its deadline; its worker process was stopped")
            kind, payload = worker.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            self._replace(worker)
            raise WorkerFailed(f"the query worker process died ({exc or type(exc).__name__})") from exc
        self._idle.put(worker)
        if kind == "ok":
            return payload
        if kind == "timeout":
            raise QueryTimeout(payload)
        raise WorkerFailed(payload)

    def close(self) -> None:
        """Stop every worker."""
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.kill()

    def __enter__(self) -> QueryWorkers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process (started by :class:`QueryWorkers`)."""
    parser = argparse.ArgumentParser(prog="python -m workbench.linked.query_workers")
    parser.add_argument("--fd", type=int, required=True, help="file descriptor of the socket to the server")
    parser.add_argument("--path", required=True, help="store directory (opened read-only)")
    parser.add_argument("--no-geosparql", action="store_true")
    args = parser.parse_args(argv)
    _worker_main(multiprocessing.connection.Connection(args.fd), args.path, not args.no_geosparql)
    return 0


if __name__ == "__main__":
    sys.exit(main())
