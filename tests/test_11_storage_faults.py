"""Storage on S3 under faults (issue 17, item 12): a real S3 server behind a TCP proxy that the test cuts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import boto3
import numpy as np
import pytest
import xarray as xr

from tests.servers.tcp_proxy import CuttableProxy, proxied_options
from workbench import storage
from workbench.errors import StorageError


@pytest.fixture()
def proxy(s3_server: dict[str, Any]) -> Iterator[CuttableProxy]:
    cut = CuttableProxy("127.0.0.1", s3_server["port"])
    try:
        yield cut
    finally:
        cut.close()


def _direct(s3_server: dict[str, Any]) -> Any:
    """A boto3 client straight to the server (not through the proxy), to see what really is there."""
    return boto3.client("s3", endpoint_url=s3_server["endpoint_url"], aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def _keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def _cube(n: int = 64) -> xr.Dataset:
    data = np.random.default_rng(0).random((n, n, 4), dtype=np.float32)
    return xr.Dataset({"sar": (("y", "x", "band"), data)}).chunk({"y": 8, "x": 8})


def test_zarr_write_cut_midway_leaves_no_visible_debris(s3_server: dict[str, Any], s3_bucket: str,
                                                       proxy: CuttableProxy) -> None:
    options = proxied_options(s3_server["storage_options"], proxy)
    url = f"{s3_bucket}/polar/cube.zarr"
    storage.write_bytes(f"{s3_bucket}/polar/keep.txt", b"kept", storage_options=options)
    proxy.cut_after(40_000)  # a few chunks go through, then the connection drops
    with pytest.raises(StorageError, match="writing Zarr"):
        storage.write_zarr(_cube(), url, storage_options=options)
    assert proxy.is_cut
    proxy.resume()
    # the failed write is invisible: no store, no temporary in the listing
    assert storage.listdir(f"{s3_bucket}/polar", storage_options=options) == ["keep.txt"]
    assert not storage.exists(url, storage_options=options)
    s3 = _direct(s3_server)
    bucket = s3_bucket.removeprefix("s3://")
    leftovers = [k for k in _keys(s3, bucket) if ".tmp/" in k]
    if leftovers:  # the cleanup could not reach the server while the proxy was cut: cleanup_debris removes it
        done = storage.cleanup_debris(f"{s3_bucket}/polar", older_than_s=0, storage_options=options)
        assert done["removed"] and all(".cube.zarr." in p for p in done["removed"])
    assert [k for k in _keys(s3, bucket) if ".tmp/" in k] == []
    assert _keys(s3, bucket) == ["polar/keep.txt"]
    storage.write_zarr(_cube(), url, storage_options=options)  # and the same write then succeeds
    assert storage.open_zarr(url, storage_options=options)["sar"].shape == (64, 64, 4)


def test_cut_multipart_upload_is_aborted_by_cleanup(s3_server: dict[str, Any], s3_bucket: str,
                                                   proxy: CuttableProxy) -> None:
    options = proxied_options(s3_server["storage_options"], proxy)
    data = os.urandom(2 * storage.MULTIPART_CHUNK + 1024)  # three parts
    url = f"{s3_bucket}/big/blob.bin"
    proxy.cut_after(storage.MULTIPART_CHUNK + 200_000)  # the upload starts, a part goes, then the cut
    with pytest.raises(StorageError):
        storage.write_bytes(url, data, storage_options=options)
    proxy.resume()
    s3 = _direct(s3_server)
    bucket = s3_bucket.removeprefix("s3://")
    assert "big/blob.bin" not in _keys(s3, bucket)  # never visible half-written
    storage.cleanup_debris(f"{s3_bucket}/big", older_than_s=0, storage_options=options)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    storage.write_bytes(url, data, storage_options=options)
    assert storage.read_bytes(url, storage_options=options) == data


def test_killed_writer_leaves_an_upload_that_cleanup_aborts(s3_server: dict[str, Any], s3_bucket: str,
                                                           tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        from workbench import storage
        opts = {s3_server["storage_options"]!r}
        import s3fs
        fs = s3fs.S3FileSystem(**{{k: v for k, v in opts.items()}})
        # a multipart upload that starts and never completes: the process is killed in the middle
        bucket, key = {s3_bucket.removeprefix("s3://")!r}, "killed/blob.bin"
        mpu = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
        fs.call_s3("upload_part", Bucket=bucket, Key=key, PartNumber=1, UploadId=mpu["UploadId"],
                   Body=os.urandom(storage.MULTIPART_CHUNK))
        print("part uploaded", flush=True)
        import time; time.sleep(60)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "part uploaded"
    finally:
        proc.kill()
        proc.wait()
    s3 = _direct(s3_server)
    bucket = s3_bucket.removeprefix("s3://")
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    done = storage.cleanup_debris(f"{s3_bucket}/killed", older_than_s=0, storage_options=s3_server["storage_options"])
    assert done["aborted"] == ["killed/blob.bin"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_recent_uploads_are_kept_by_cleanup() -> None:
    """Age filter of cleanup_debris (moto reports a fixed 2010 'Initiated', so it is checked on its own)."""
    import datetime as dt

    now = time.time()
    old = {"Key": "a", "UploadId": "1", "Initiated": dt.datetime.fromtimestamp(now - 7200, dt.timezone.utc)}
    new = {"Key": "b", "UploadId": "2", "Initiated": dt.datetime.fromtimestamp(now - 60, dt.timezone.utc)}
    assert storage.stale_uploads([old, new], now - 3600) == [old]
    assert storage.stale_uploads([old, new], now) == [old, new]


def test_write_whose_answer_is_lost_is_checked_before_it_is_reported(s3_server: dict[str, Any], s3_bucket: str,
                                                                    proxy: CuttableProxy) -> None:
    options = proxied_options(s3_server["storage_options"], proxy)
    url = f"{s3_bucket}/lost/answer.bin"
    proxy.drop_next_response()  # the PUT reaches the server, its 200 never comes back
    storage.write_bytes(url, b"landed anyway", storage_options=options)  # no error: a HEAD shows it landed
    assert storage.read_bytes(url, storage_options=options) == b"landed anyway"
    # and a write that really failed is still reported
    proxy.cut_after(0)
    with pytest.raises(StorageError, match="cannot be reached|failed"):
        storage.write_bytes(f"{s3_bucket}/lost/never.bin", b"x", storage_options=options)


def test_fault_gives_one_clear_error_and_no_asyncio_traceback(s3_server: dict[str, Any], s3_bucket: str,
                                                             proxy: CuttableProxy, tmp_path: Path) -> None:
    options = proxied_options(s3_server["storage_options"], proxy)
    script = tmp_path / "write.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import numpy as np, xarray as xr
        from workbench import storage
        from workbench.errors import StorageError
        ds = xr.Dataset({{"a": (("y", "x"), np.zeros((256, 256), "float32"))}}).chunk({{"y": 16}})
        try:
            storage.write_zarr(ds, {f"{s3_bucket}/noisy/cube.zarr"!r}, storage_options={options!r})
        except StorageError as exc:
            print(f"error: {{exc}}".splitlines()[0], file=sys.stderr)
            sys.exit(2)
    """))
    proxy.cut_after(30_000)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    time.sleep(0.1)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Task exception" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: writing Zarr")
    # at most one more line, and an actionable one: where the hidden temporary is and how to remove it
    assert all("cleanup_debris" in line for line in lines[:-1]) and len(lines) <= 2, lines
