"""A real Dask cluster started from the command line: ``dask scheduler`` and ``dask worker`` processes on loopback.

The tests that say "runs on a cluster" use this rather than a LocalCluster in the test process, so that
nothing can pass by sharing memory, a working directory or imported state with the client.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

#: Environment of every worker: one thread per library, so two workers use the two cores one each.
SINGLE_THREAD_ENV = {
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


@dataclass
class CliCluster:
    """A running command-line cluster.

    Attributes
    ----------
    address
        The scheduler's ``tcp://127.0.0.1:PORT``.
    workers
        The ``dask worker`` processes (one worker each).
    scheduler
        The ``dask scheduler`` process.
    worker_dirs
        Each worker's own working and temporary directory (its cwd and ``TMPDIR``).
    """

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_dirs: list[Path] = field(default_factory=list)


def _dask_command() -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "distributed.cli.dask_spec"]


def _wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with code {process.returncode} before writing {path}")
        if path.exists() and path.stat().st_size:
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(path.read_text())
        time.sleep(0.1)
    raise TimeoutError(f"dask scheduler did not write {path} within {timeout:g} s")


def _wait_for_workers(address: str, n: int, timeout: float) -> None:
    from distributed import Client

    with Client(address, timeout=timeout, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=timeout)


def _stop(processes: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM every process (dask's CLI closes cleanly on it), then SIGKILL what is left after ``timeout``."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def cli_cluster(
    n_workers: int = 2,
    *,
    nthreads: int = 1,
    env: Mapping[str, str] | None = None,
    resources: str | None = None,
    memory_limit: str = "4GiB",
    timeout: float = 120.0,
) -> Iterator[CliCluster]:
    """Start ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1.

    Parameters
    ----------
    n_workers
        Number of ``dask worker`` processes (one worker of ``nthreads`` threads each).
    nthreads
        Threads per worker.
    env
        Extra environment of the workers (over :data:`SINGLE_THREAD_ENV` and this process's environment).
    resources
        ``--resources`` of every worker, e.g. ``"GPU=1"``.
    memory_limit
        ``--memory-limit`` of every worker.
    timeout
        Seconds to wait for the scheduler and all workers.

    Yields
    ------
    CliCluster
        The cluster; its processes are stopped (SIGTERM, then SIGKILL) on exit.
    """
    base = Path(tempfile.mkdtemp(prefix="wb-dask-cli-"))
    scheduler_file = base / "scheduler.json"
    log_dir = base / "logs"
    log_dir.mkdir()
    command = _dask_command()
    common_env = {**os.environ, **SINGLE_THREAD_ENV, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    scheduler = subprocess.Popen(
        [*command, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
         "--scheduler-file", str(scheduler_file)],
        stdout=(log_dir / "scheduler.log").open("wb"), stderr=subprocess.STDOUT, env=common_env,
        start_new_session=True,
    )
    cluster = CliCluster(address="", scheduler=scheduler)
    try:
        info = _wait_for_file(scheduler_file, scheduler, timeout)
        cluster.address = str(info["address"])
        for i in range(n_workers):
            work = base / f"worker-{i}"
            (work / "tmp").mkdir(parents=True)
            worker_env = {**common_env, **(env or {}), "TMPDIR": str(work / "tmp")}
            args = [*command, "worker", cluster.address, "--nthreads", str(nthreads), "--nworkers", "1",
                    "--host", "127.0.0.1", "--dashboard-address", ":0", "--memory-limit", memory_limit,
                    "--local-directory", str(work / "dask"), "--name", f"cli-worker-{i}", "--no-nanny"]
            if resources:
                args += ["--resources", resources]
            cluster.workers.append(subprocess.Popen(
                args, cwd=work, env=worker_env, stdout=(log_dir / f"worker-{i}.log").open("wb"),
                stderr=subprocess.STDOUT, start_new_session=True,
            ))
            cluster.worker_dirs.append(work)
        _wait_for_workers(cluster.address, n_workers, timeout)
        yield cluster
    except BaseException:
        for log in sorted(log_dir.glob("*.log")):
            sys.stderr.write(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}\n")
        raise
    finally:
        _stop(cluster.workers)
        _stop([scheduler])
        shutil.rmtree(base, ignore_errors=True)
