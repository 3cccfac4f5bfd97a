"""Run the serving server: in the foreground (``workbench serve start``) or as a child process.

:func:`run_server` starts uvicorn with ``workers`` processes, each building the app
with :func:`~workbench.serving.app.app_from_env` (models load once per worker), and
records ``<project_dir>/serving/servers/<pid>.json`` (URL, pid) while it runs, so that the
Hopsworks-shaped functions find it. SIGTERM or SIGINT shut it down cleanly: requests
in flight finish and the inference log is flushed.

:class:`ServerProcess` starts the same command as a subprocess and waits until the
server is ready (notebooks, tests, benchmarks).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from workbench.serving.app import OPTIONS_ENV, ServerOptions
from workbench.serving.errors import ServingError
from workbench.serving.repository import serving_dir

__all__ = ["ServerProcess", "free_port", "run_server"]

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _write_info(path: Path, info: Mapping[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".server.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(dict(info), fh)
    os.replace(tmp, path)


def run_server(
    options: ServerOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    workers: int = 1,
    log_level: str = "warning",
) -> None:
    """Serve until SIGTERM/SIGINT (blocking).

    Parameters
    ----------
    options
        Server options (project directory, limits, log flush interval...).
    host, port
        Where to listen.
    workers
        uvicorn worker processes; each loads the models.
    log_level
        uvicorn's log level.
    """
    import uvicorn

    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise ServingError(400, f"workers must be an integer in 1..64, got {workers!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ServingError(400, f"port must be an integer in 1..65535, got {port!r}")
    os.environ[OPTIONS_ENV] = options.to_json()
    folder = serving_dir(options.project_dir) / "servers"
    folder.mkdir(exist_ok=True)
    info_path = folder / f"{os.getpid()}.json"
    url = f"http://{host}:{port}"
    _write_info(info_path, {"url": url, "pid": os.getpid(), "workers": workers,
                            "started_at": _dt.datetime.now(_dt.UTC).isoformat()})
    try:
        uvicorn.run(
            "workbench.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
            log_level=log_level, timeout_keep_alive=5, timeout_graceful_shutdown=30, access_log=False,
        )
    finally:
        with contextlib.suppress(OSError, json.JSONDecodeError, KeyError):
            if json.loads(info_path.read_text())["pid"] == os.getpid():
                info_path.unlink()


def _check_port_free(host: str, port: int) -> None:
    """Raise ServingError(409) when something listens on ``host:port`` already."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServingError(409, f"port {port} on {host} is in use already ({exc.strerror}): another server is "
                                    "running there; stop it or choose another port") from None


class ServerProcess:
    """``workbench serve start`` as a child process (its own process group).

    Parameters
    ----------
    port
        Port (default: a free one).
    workers
        Worker processes.
    project_dir
        Project directory (passed as ``WORKBENCH_PROJECT_DIR``).
    args
        Extra ``serve start`` arguments (``--max-body-bytes``, ``--flush-interval``...).
    env
        Extra environment variables.
    """

    def __init__(self, port: int | None = None, *, workers: int = 1, project_dir: str | os.PathLike[str] | None = None,
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None, host: str = "127.0.0.1",
                 log_file: str | os.PathLike[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.project_dir = project_dir
        self.args = list(args)
        self.env = dict(env or {})
        self.url = f"http://{host}:{self.port}"
        self.log_file = Path(log_file) if log_file else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 180.0, ready: bool = True) -> ServerProcess:
        """Start the server; return once ``/v2/health/ready`` (or ``live``) answers 200.

        Raises
        ------
        ServingError
            409 when the port is taken already (another server would answer the
            readiness probe in this one's place), 503 when the server exits or
            does not become ready in ``timeout`` seconds.
        """
        _check_port_free(self.host, self.port)
        env = {**os.environ, **self.env}
        if self.project_dir is not None:
            env["WORKBENCH_PROJECT_DIR"] = str(self.project_dir)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        cmd = [sys.executable, "-m", "workbench.cli", "serve", "start", "--host", self.host, "--port",
               str(self.port), "--workers", str(self.workers), *self.args]
        out: Any = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if self.log_file:
            out.close()
        path = "/v2/health/ready" if ready else "/v2/health/live"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServingError(503, f"the serving server exited with code {self.proc.returncode} "
                                        f"(see {self.log_file or 'its output'})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    atexit.register(self.stop)  # a kernel or script that ends never leaves the server behind
                    return self
            time.sleep(0.2)
        self.kill()
        raise ServingError(503, f"the serving server did not become ready on {self.url} within {timeout:g} s")

    @property
    def pid(self) -> int | None:
        """The server's process id."""
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 60.0) -> int | None:
        """Clean shutdown (SIGTERM); the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        """Crash it: SIGKILL to its whole process group (workers included)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
