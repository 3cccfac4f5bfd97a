"""Shared fixtures: a real S3-compatible server (moto server mode) on loopback, and settings."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Never let a developer's own settings or AWS profile leak into the tests.
for _key in list(os.environ):
    if _key.startswith("WORKBENCH_") or _key.startswith("AWS_"):
        del os.environ[_key]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """Start moto's S3 server on loopback for the session.

    Yields a dict with ``endpoint_url`` and ``storage_options`` (fsspec/s3fs
    options with test keys) for that server.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {
        "endpoint_url": endpoint,
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 1}},
    }
    try:
        yield {"endpoint_url": endpoint, "storage_options": options, "port": port}
    finally:
        server.stop()


@pytest.fixture()
def s3_bucket(s3_server: dict[str, Any]) -> str:
    """A fresh, empty bucket on the loopback S3 server; returns ``s3://name``."""
    import boto3

    name = f"wb-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server["endpoint_url"], aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture()
def s3_env(s3_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Point the workbench settings (environment variables) at the loopback S3 server."""
    monkeypatch.setenv("WORKBENCH_S3_ENDPOINT_URL", s3_server["endpoint_url"])
    monkeypatch.setenv("WORKBENCH_S3_ACCESS_KEY", "testing")
    monkeypatch.setenv("WORKBENCH_S3_SECRET_KEY", "testing")
    return s3_server


@pytest.fixture()
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, set as the workbench project and current directory."""
    monkeypatch.setenv("WORKBENCH_PROJECT_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dask_cli_cluster() -> Iterator[str]:
    """A real cluster from the CLI (``dask scheduler`` + two ``dask worker --nthreads 1``) on 127.0.0.1.

    Yields the scheduler address. Workers run in their own working and temporary directories
    (:mod:`tests.servers.dask_cli`), one thread per library each.
    """
    from tests.servers.dask_cli import cli_cluster

    with cli_cluster(2, nthreads=1) as cluster:
        yield cluster.address
