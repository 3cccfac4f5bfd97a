"""Get a Dask client: connect to a scheduler address, or start one LocalCluster per process."""

from __future__ import annotations

import atexit
import logging
import threading
from typing import TYPE_CHECKING

from workbench.errors import ClusterError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = ["get_client", "close_client"]

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
