"""Storage round trips on local paths and a real S3 server on loopback, and the failure cases."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely.geometry
import xarray as xr

from workbench import storage
from workbench.errors import StorageError


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any] | None]:
    """The same tests on a local folder and on a fresh bucket of the loopback S3 server."""
    if request.param == "local":
        return str(tmp_path / "store"), None
    bucket = request.getfixturevalue("s3_bucket")
    options = request.getfixturevalue("s3_server")["storage_options"]
    return f"{bucket}/prefix", options


def test_bytes_round_trip(root: tuple[str, dict[str, Any] | None]) -> None:
    base, opts = root
    url = storage.join(base, "a", "b.bin")
    assert not storage.exists(url, storage_options=opts)
    storage.write_bytes(url, b"hello", storage_options=opts)
    assert storage.exists(url, storage_options=opts)
    assert storage.read_bytes(url, storage_options=opts) == b"hello"
    storage.write_bytes(url, b"again", storage_options=opts)
    assert storage.read_bytes(url, storage_options=opts) == b"again"
    assert storage.listdir(storage.join(base, "a"), storage_options=opts) == ["b.bin"]
    storage.remove(storage.join(base, "a"), storage_options=opts)
    assert not storage.exists(url, storage_options=opts)


def test_zarr_round_trip(root: tuple[str, dict[str, Any] | None]) -> None:
    base, opts = root
    data = np.arange(2 * 30 * 20, dtype="float32").reshape(2, 30, 20)
    ds = xr.Dataset({"sigma0": (("band", "y", "x"), data)}, coords={"band": ["HH", "HV"]}).chunk({"y": 10})
    url = storage.join(base, "cube.zarr")
    storage.write_zarr(ds, url, storage_options=opts)
    back = storage.open_zarr(url, storage_options=opts)
    assert back["sigma0"].chunks is not None  # lazy
    np.testing.assert_array_equal(back["sigma0"].values, data)
    # Overwrite in place leaves only the new store, no temporary prefixes.
    storage.write_zarr(ds * 2, url, storage_options=opts)
    np.testing.assert_array_equal(storage.open_zarr(url, storage_options=opts)["sigma0"].values, data * 2)
    assert storage.listdir(base, storage_options=opts) == ["cube.zarr"]


def test_geoparquet_round_trip(root: tuple[str, dict[str, Any] | None]) -> None:
    base, opts = root
    frame = gpd.GeoDataFrame(
        {"parcel": [1, 2], "crop": ["maize", "rye"]},
        geometry=[shapely.geometry.box(0, 0, 1, 1), shapely.geometry.Point(2, 2)],
        crs="EPSG:32633",
    )
    url = storage.join(base, "parcels.parquet")
    storage.write_geoparquet(frame, url, storage_options=opts)
    back = storage.read_geoparquet(url, storage_options=opts)
    assert back.crs.to_epsg() == 32633
    assert list(back["crop"]) == ["maize", "rye"]
    assert back.geometry.geom_equals(frame.geometry).all()


def test_cog_round_trip(root: tuple[str, dict[str, Any] | None]) -> None:
    import rioxarray  # noqa: F401

    base, opts = root
    array = xr.DataArray(np.arange(64 * 64, dtype="uint16").reshape(1, 64, 64), dims=("band", "y", "x"),
                         coords={"band": [1], "y": 5_100_000 - 10 * np.arange(64) - 5, "x": 500_000 + 10 * np.arange(64) + 5})
    array = array.rio.write_crs("EPSG:32633")
    url = storage.join(base, "b04.tif")
    storage.write_cog(array, url, storage_options=opts)
    back = storage.open_cog(url, storage_options=opts)
    assert back.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(back.values, array.values)
    overview = storage.read_overview(url, max_size=16, storage_options=opts)
    assert overview.shape == (16, 16)


def test_check_roundtrip(root: tuple[str, dict[str, Any] | None]) -> None:
    base, opts = root
    report = storage.check_roundtrip(base, storage_options=opts)
    assert report["ok"] and not storage.exists(report["probe"], storage_options=opts)


def test_cog_without_crs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no CRS"):
        storage.write_cog(xr.DataArray(np.zeros((1, 4, 4)), dims=("band", "y", "x")), tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not found"):
        storage.read_bytes(tmp_path / "missing.bin")
    with pytest.raises(StorageError, match="not found"):
        storage.open_zarr(tmp_path / "missing.zarr")


def test_failed_local_write_leaves_nothing(tmp_path: Path) -> None:
    ds = xr.Dataset({"v": (("x",), np.arange(3))})
    ds.attrs["bad"] = object()  # not serialisable: the write fails midway
    with pytest.raises(StorageError):
        storage.write_zarr(ds, tmp_path / "bad.zarr")
    assert list(tmp_path.iterdir()) == []


def test_missing_bucket(s3_server: dict[str, Any]) -> None:
    opts = s3_server["storage_options"]
    with pytest.raises(StorageError, match="bucket does not exist|not found"):
        storage.write_bytes("s3://no-such-bucket-xyz/k", b"x", storage_options=opts)
    with pytest.raises(StorageError, match="not found|bucket"):
        storage.read_bytes("s3://no-such-bucket-xyz/k", storage_options=opts)


def test_wrong_credentials(tmp_path: Path) -> None:
    """A second moto server with authentication on (as AWS does): unknown keys are refused."""
    import os
    import subprocess
    import sys

    import requests

    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "wrong", "secret": "wrong",
                "config_kwargs": {"retries": {"max_attempts": 1}}, "skip_instance_cache": True}
        with pytest.raises(StorageError, match="access denied"):
            storage.write_bytes("s3://some-bucket/k", b"x", storage_options=opts)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_unreachable_endpoint_fails_fast() -> None:
    from tests.conftest import free_port

    opts = {"endpoint_url": f"http://127.0.0.1:{free_port()}", "key": "k", "secret": "s",
            "config_kwargs": {"connect_timeout": 1, "read_timeout": 2, "retries": {"max_attempts": 1}},
            "skip_instance_cache": True}
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="cannot be reached|failed"):
        storage.write_bytes("s3://bucket/k", b"x", storage_options=opts)
    assert time.monotonic() - t0 < 30


def _writer(url: str, payload: bytes, opts: dict[str, Any] | None, rounds: int) -> None:
    for _ in range(rounds):
        storage.write_bytes(url, payload, storage_options=opts)


def test_concurrent_writers_never_mix(root: tuple[str, dict[str, Any] | None]) -> None:
    """Two processes write the same key; every read sees one whole payload, never a mix or a partial."""
    base, opts = root
    url = storage.join(base, "contended.bin")
    a, b = b"A" * 200_000, b"B" * 200_000
    storage.write_bytes(url, a, storage_options=opts)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, p, opts, 15)) for p in (a, b)]
    for p in procs:
        p.start()
    seen = set()
    while any(p.is_alive() for p in procs):
        data = storage.read_bytes(url, storage_options=opts)
        assert data in (a, b)
        seen.add(data[:1])
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert storage.read_bytes(url, storage_options=opts) in (a, b)
    if opts is None:
        leftovers = [p.name for p in Path(base).iterdir() if p.name != "contended.bin"]
        assert leftovers == []
