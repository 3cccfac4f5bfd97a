"""The Dask side of a distributed training: a port for each rank, and the task that runs a rank's process.

:func:`run_rank` runs on the rank's Dask worker: it starts a fresh TensorFlow process
(:mod:`workbench.training._distributed_worker`), hands it the pickled run spec, relays its progress to the
worker's log, and returns its result. It kills the process and fails when the run's abort event is set
(another rank failed, or the caller gave up), so no rank outlives a failed run.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import urlparse

from workbench.training._distributed_worker import ERROR, PROGRESS, RESULT

__all__ = ["WORKER_MODULE", "reserve_port", "run_rank"]

log = logging.getLogger(__name__)
WORKER_MODULE = "workbench.training._distributed_worker"


def reserve_port() -> tuple[str, int]:
    """This Dask worker's host and a free TCP port on it (for the rank's TensorFlow server)."""
    from distributed import get_worker

    host = urlparse(get_worker().address).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return host, int(sock.getsockname()[1])


def _error_class(name: str) -> type[Exception]:
    from workbench import errors
    from workbench.training.distributed import DistributedTrainingError

    cls = getattr(errors, name, None)
    return (
        cls if isinstance(cls, type) and issubclass(cls, errors.WorkbenchError) else DistributedTrainingError
    )


def run_rank(
    spec: bytes, *, rank: int, n_workers: int, tf_config: str, run_id: str, abort: str
) -> dict[str, Any]:
    """Run rank ``rank`` of run ``run_id`` in a new TensorFlow process; its result, or an error naming the rank."""
    from distributed import Event, get_worker

    from workbench.training.distributed import DistributedTrainingError

    where = get_worker().address
    env = {**os.environ, "TF_CONFIG": tf_config}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [
        sys.executable,
        "-m",
        WORKER_MODULE,
        "--rank",
        str(rank),
        "--n-workers",
        str(n_workers),
        "--run-id",
        run_id,
        "--parent-pid",
        str(os.getpid()),
    ]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    tail: collections.deque[str] = collections.deque(maxlen=40)
    found: dict[str, Any] = {}

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            for marker in (RESULT, ERROR, PROGRESS):
                if line.startswith(marker):
                    record = json.loads(line[len(marker) :])
                    if marker is PROGRESS:
                        log.info("run %s rank %d: %s", run_id, rank, record)
                    else:
                        found[marker] = record
                    break
            else:
                tail.append(line)

    reader = threading.Thread(target=read, name=f"wb-dist-rank{rank}", daemon=True)
    reader.start()
    assert proc.stdin is not None
    try:
        proc.stdin.write(spec)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    event = Event(abort)
    try:
        while proc.poll() is None:
            reader.join(0.5)
            if proc.poll() is None and event.is_set():
                proc.kill()
                proc.wait()
                raise DistributedTrainingError(f"rank {rank} on {where} was stopped: the run was aborted")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    if RESULT in found and proc.returncode == 0:
        return {**found[RESULT], "worker": where, "pid": proc.pid}
    if ERROR in found:
        err = found[ERROR]
        log.warning("run %s rank %d failed:\n%s", run_id, rank, err.get("traceback", ""))
        raise _error_class(err["type"])(f"rank {rank} on {where}: {err['type']}: {err['message']}")
    code = proc.returncode
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    if code == 70:
        how = "exited because its Dask worker went away"
    last = " | ".join(list(tail)[-5:])
    raise DistributedTrainingError(
        f"rank {rank}'s TensorFlow process (pid {proc.pid}) on {where} {how}; last output: {last or '(none)'}"
    )
