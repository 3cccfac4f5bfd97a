"""Dask clients: one LocalCluster per process, reused; a scheduler address; an unreachable address."""

from __future__ import annotations

import time

import pytest

from tests.conftest import free_port
from workbench.cluster import close_client, get_client
from workbench.errors import ClusterError


def test_local_cluster_is_started_once_and_reused(project_dir: object) -> None:
    try:
        first = get_client(n_workers=1)
        assert get_client() is first
        assert first.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        address = first.scheduler.address
        # The same cluster through its address, as a notebook given dask_address would get it.
        remote = get_client(address)
        assert remote.scheduler.address == address
        assert len(remote.scheduler_info()["workers"]) == 1
    finally:
        close_client()
    restarted = get_client(n_workers=1)
    try:
        assert restarted is not first and restarted.status == "running"
    finally:
        close_client()


def test_unreachable_scheduler_fails_within_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        get_client(f"tcp://127.0.0.1:{free_port()}", timeout=2)
    assert time.monotonic() - t0 < 20
