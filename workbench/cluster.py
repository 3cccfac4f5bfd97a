"""Get a Dask client: connect to a scheduler address, or start one LocalCluster per process.

GPU workers are Dask workers started with a ``GPU`` resource (``dask worker ADDR --resources GPU=1``, one
worker per GPU with ``CUDA_VISIBLE_DEVICES`` set, as ``dask-cuda`` does): :func:`task_resources` is what a
task asks for so that it holds one GPU while it runs and frees it when it ends.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import subprocess
import threading
from typing import TYPE_CHECKING, Mapping

from workbench.errors import ClusterError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = ["get_client", "close_client", "GPU_RESOURCE", "detect_gpus", "worker_resources", "gpu_workers", "task_resources"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_local: "tuple[LocalCluster, Client] | None" = None
_remote: "dict[str, Client]" = {}


def get_client(
    address: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    timeout: float = 10.0,
    resources: Mapping[str, float] | None = None,
) -> "Client":
    """Return a Dask client.

    Parameters
    ----------
    address
        Scheduler address (``tcp://host:8786``). ``None``/empty uses the
        ``dask_address`` setting, and when that is unset starts (once per
        process) a LocalCluster and reuses it on later calls.
    n_workers
        Workers of the LocalCluster (default: the ``dask_workers`` setting).
    threads_per_worker
        Threads per LocalCluster worker.
    timeout
        Seconds to wait for a remote scheduler before failing.
    resources
        Resources of every LocalCluster worker (e.g. ``{"GPU": 1}``); ignored for a remote scheduler.

    Raises
    ------
    ClusterError
        When the scheduler cannot be reached in ``timeout`` seconds.
    """
    from distributed import Client, LocalCluster

    from workbench.config import load_settings

    global _local
    if not address:
        settings = load_settings()
        address = settings.dask_address
        if n_workers is None:
            n_workers = settings.dask_workers
    with _lock:
        if address:
            client = _remote.get(address)
            if client is not None and client.status == "running":
                return client
            try:
                client = Client(address, timeout=timeout, set_as_default=True)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s: {exc}"
                ) from exc
            _remote[address] = client
            return client
        if _local is not None and _local[1].status == "running":
            return _local[1]
        if logging.getLogger().getEffectiveLevel() > logging.INFO:
            # distributed's own config logs the scheduler's and workers' start at INFO; keep that for -v
            logging.getLogger("distributed").setLevel(logging.WARNING)
        cluster = LocalCluster(
            n_workers=n_workers or 2,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
            **({"resources": dict(resources)} if resources else {}),
        )
        client = Client(cluster, set_as_default=True)
        log.info("started a LocalCluster: %s (dashboard %s)", cluster.scheduler_address, client.dashboard_link)
        _local = (cluster, client)
        return client


def close_client() -> None:
    """Close every client this process opened and the LocalCluster it started."""
    global _local
    with _lock:
        for client in _remote.values():
            client.close()
        _remote.clear()
        if _local is not None:
            cluster, client = _local
            client.close()
            cluster.close()
            _local = None


atexit.register(close_client)

#: Name of the Dask worker resource that counts GPUs.
GPU_RESOURCE = "GPU"


def detect_gpus() -> int:
    """Number of NVIDIA GPUs ``nvidia-smi -L`` lists on this machine (0 without the tool or a GPU)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def worker_resources(client: "Client") -> dict[str, dict[str, float]]:
    """Each worker's declared resources (``{}`` for a worker started without ``--resources``)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {address: dict(info.get("resources") or {}) for address, info in workers.items()}


def gpu_workers(client: "Client") -> list[str]:
    """Addresses of the workers with at least one ``GPU`` resource, sorted."""
    return sorted(a for a, res in worker_resources(client).items() if res.get(GPU_RESOURCE, 0) >= 1)


def task_resources(client: "Client | None", *, gpus: int = 1) -> dict[str, float] | None:
    """``{"GPU": gpus}`` when some worker of ``client`` has a GPU resource, else None (CPU cluster or no client).

    Submitting with ``resources=task_resources(client)`` makes a task wait for a free GPU, hold it while it
    runs and free it when it ends.
    """
    if client is None or not gpu_workers(client):
        return None
    return {GPU_RESOURCE: float(gpus)}
