"""One storage API over local paths and ``s3://`` URLs (fsspec + s3fs).

Every write is atomic:

* local files are written to a hidden temporary name in the same directory and
  renamed with :func:`os.replace`;
* a single S3 object is written with one PUT, which S3 makes visible whole or
  not at all; multi-part uploads (large files) are likewise only visible once
  completed;
* a multi-object product (a Zarr store) is written under a hidden temporary
  prefix (``.name.<uuid>.tmp`` beside the target) and then copied into place
  with its metadata objects last, so a reader never opens a store whose
  metadata points at missing chunks.

Under faults: a failed write removes its temporary prefix (a few tries), and
:func:`listdir` never shows one; s3fs aborts a failed multipart upload; a
write whose answer was lost (the connection dropped after the request went
out) is checked with a HEAD of the object — same size and ETag as what was
sent means it landed — before it is reported failed. What a killed process
leaves behind (a temporary prefix, an unfinished multipart upload) is removed
by :func:`cleanup_debris`.

Functions take an optional ``storage_options`` mapping for fsspec; when it is
``None``, options for ``s3://`` come from :func:`workbench.config.load_settings`.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import fsspec

from workbench._quiet import quiet_zarr
from workbench.errors import StorageError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

quiet_zarr()
log = logging.getLogger(__name__)

__all__ = [
    "join",
    "filesystem",
    "read_bytes",
    "write_bytes",
    "exists",
    "listdir",
    "remove",
    "cleanup_debris",
    "file_lock",
    "is_debris",
    "MULTIPART_CHUNK",
    "write_zarr",
    "open_zarr",
    "write_geoparquet",
    "read_geoparquet",
    "write_cog",
    "open_cog",
    "local_copy",
]

_ZARR_METADATA = {".zmetadata", ".zattrs", ".zgroup", ".zarray", "zarr.json"}
#: Part size of S3 multipart uploads (objects of twice this size or more go up in parts).
MULTIPART_CHUNK = 8 * 2**20
_DEBRIS_SUFFIXES = (".tmp", ".old")


def is_debris(name: str) -> bool:
    """Whether an entry name is a temporary of an unfinished or failed atomic write (hidden)."""
    return name.startswith(".") and name.endswith(_DEBRIS_SUFFIXES)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on a local lock file for the block; parents are created."""
    import fcntl

    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_remote(url: str | os.PathLike[str]) -> bool:
    """Whether ``url`` names an object store rather than a local path."""
    return "://" in str(url) and not str(url).startswith("file://")


def join(root: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts onto a local path or URL with ``/``."""
    root = str(root)
    if is_remote(root):
        return posixpath.join(root.rstrip("/"), *[p.strip("/") for p in parts])
    return str(Path(root, *parts))


def _options(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    if storage_options is not None:
        return dict(storage_options)
    if str(url).startswith("s3://"):
        from workbench.config import load_settings

        return load_settings().storage_options()
    return {}


def filesystem(
    url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the fsspec filesystem for ``url`` and the path within it."""
    url = str(url)
    try:
        fs, path = fsspec.core.url_to_fs(url, **_options(url, storage_options))
    except (ImportError, ValueError) as exc:
        raise StorageError(f"cannot open storage for {url!r}: {exc}") from exc
    if is_remote(url):
        _quiet_io_loop()
    return fs, path


class _DroppedConnectionFilter(logging.Filter):
    """Drop asyncio's "Task exception was never retrieved" for a dropped connection.

    When a connection breaks, aiohttp leaves the body-writing task of the
    request holding the same error that the request itself raises (and that
    the caller gets as one clear :class:`StorageError`); asyncio would print
    that duplicate with a traceback when the task is collected, on whichever
    loop ran it (fsspec's or Zarr's). Every other asyncio message is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Task exception was never retrieved") or not record.exc_info:
            return True
        exc = record.exc_info[1]
        dropped = isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__.startswith(
            ("ClientConnection", "ServerDisconnected", "ClientOSError")
        )
        return not dropped


def _quiet_io_loop() -> None:
    """Install :class:`_DroppedConnectionFilter` on the ``asyncio`` logger (once)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _DroppedConnectionFilter) for f in logger.filters):
        logger.addFilter(_DroppedConnectionFilter())


@contextlib.contextmanager
def _translated(url: str, action: str) -> Iterator[None]:
    """Turn the many exceptions of fsspec/botocore into a StorageError naming the URL."""
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError as exc:
        raise StorageError(f"{action} {url!r}: not found ({exc})") from exc
    except PermissionError as exc:
        raise StorageError(f"{action} {url!r}: access denied - check the S3 keys ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - botocore/aiohttp raise many unrelated types
        name = type(exc).__name__
        text = str(exc)
        if "NoSuchBucket" in text or "NoSuchBucket" in name:
            raise StorageError(f"{action} {url!r}: the bucket does not exist") from exc
        if any(s in text for s in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403")):
            raise StorageError(f"{action} {url!r}: access denied - check the S3 keys ({text})") from exc
        if any(s in name for s in ("Connect", "Timeout", "EndpointConnection")) or "connect" in text.lower():
            raise StorageError(f"{action} {url!r}: the endpoint cannot be reached ({text})") from exc
        raise StorageError(f"{action} {url!r} failed: {name}: {text}") from exc


def read_bytes(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """Read a whole object or file."""
    fs, path = filesystem(url, storage_options)
    with _translated(str(url), "reading"):
        return fs.cat_file(path)


def _umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(
    url: str | os.PathLike[str], data: bytes, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write ``data`` atomically to ``url`` (parents are created)."""
    url = str(url)
    if not is_remote(url):
        target = Path(url.removeprefix("file://"))
        with _translated(url, "writing"):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            try:
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the normal mode
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return
    fs, path = filesystem(url, storage_options)
    with _translated(url, "writing"):
        try:
            fs.pipe_file(path, data, chunksize=MULTIPART_CHUNK)  # one PUT, or a multipart upload: atomic on S3
        except Exception as exc:  # noqa: BLE001 - the answer may be lost although the write landed
            if not _outcome_unknown(exc) or not _landed(fs, path, data):
                raise
            log.info("writing %s: the answer was lost (%s), but the object is there whole", url, type(exc).__name__)


def _outcome_unknown(exc: BaseException) -> bool:
    """A connection that broke or timed out: the request may have been carried out."""
    for err in (exc, exc.__cause__, exc.__context__):
        if err is None:
            continue
        name, text = type(err).__name__, str(err)
        if any(s in name for s in ("Connect", "Timeout", "Disconnect", "EndpointConnection", "ResponseStreaming",
                                   "ServerDisconnected", "ClientPayload", "ProtocolError", "IncompleteRead")):
            return True
        if any(s in text.lower() for s in ("connection", "timed out", "disconnect", "reset by peer")):
            return True
    return False


def _etag_of(data: bytes) -> str:
    """The ETag S3 gives ``data`` written by :func:`write_bytes` (plain MD5, or MD5 of part MD5s and a count)."""
    import hashlib

    if len(data) < 2 * MULTIPART_CHUNK:
        return hashlib.md5(data).hexdigest()  # noqa: S324 - S3's ETag, not security
    parts = [hashlib.md5(data[i : i + MULTIPART_CHUNK]).digest() for i in range(0, len(data), MULTIPART_CHUNK)]  # noqa: S324
    return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"  # noqa: S324


def _landed(fs: fsspec.AbstractFileSystem, path: str, data: bytes, *, attempts: int = 3) -> bool:
    """HEAD the object: whether it holds exactly ``data`` (size and ETag)."""
    want = _etag_of(data)
    for attempt in range(attempts):
        try:
            fs.invalidate_cache(path)
            info = fs.info(path)
        except FileNotFoundError:
            return False
        except Exception:  # noqa: BLE001 - the endpoint may still be unreachable: try again shortly
            time.sleep(0.5 * (attempt + 1))
            continue
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        return int(info.get("size", -1)) == len(data) and etag == want
    return False


def exists(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether a file, object or prefix exists."""
    fs, path = filesystem(url, storage_options)
    with _translated(str(url), "checking"):
        return bool(fs.exists(path))


def listdir(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Names (not full paths) of the entries directly under ``url``, sorted; temporaries of writes are hidden."""
    fs, path = filesystem(url, storage_options)
    with _translated(str(url), "listing"):
        entries = fs.ls(path, detail=False)
    names = (posixpath.basename(e.rstrip("/")) for e in entries)
    return sorted(n for n in names if not is_debris(n))


def remove(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Remove a file, object or whole prefix; a missing target is not an error."""
    fs, path = filesystem(url, storage_options)
    with _translated(str(url), "removing"):
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _publish_tree(fs: fsspec.AbstractFileSystem, tmp: str, target: str) -> None:
    """Copy the objects under ``tmp`` to ``target``, metadata last, then delete ``tmp``."""
    files = [f for f in fs.find(tmp)]
    data = [f for f in files if posixpath.basename(f) not in _ZARR_METADATA]
    meta = [f for f in files if posixpath.basename(f) in _ZARR_METADATA]
    if fs.exists(target):
        fs.rm(target, recursive=True)
    for group in (data, meta):
        if group:
            fs.copy(group, [target + f[len(tmp):] for f in group])
    fs.rm(tmp, recursive=True)


def write_zarr(
    dataset: "xr.Dataset",
    url: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    compute: bool = True,
) -> str:
    """Write an xarray Dataset to a Zarr store atomically; returns ``url``.

    A Dask-backed dataset is written chunk by chunk in parallel on the current
    Dask scheduler, never loaded whole.
    """
    url = str(url)
    if not is_remote(url):
        target = Path(url.removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        with _translated(url, "writing Zarr"):
            try:
                dataset.to_zarr(tmp, mode="w", compute=compute, consolidated=True)
                if target.exists():
                    old = target.parent / f".{target.name}.{uuid.uuid4().hex}.old"
                    os.replace(target, old)
                    os.replace(tmp, target)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return url
    fs, path = filesystem(url, storage_options)
    parent, name = posixpath.split(path.rstrip("/"))
    tmp_path = posixpath.join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
    with _translated(url, "writing Zarr"):
        mapper = fs.get_mapper(tmp_path)
        try:
            dataset.to_zarr(mapper, mode="w", compute=compute, consolidated=True)
            _publish_tree(fs, tmp_path, path.rstrip("/"))
        finally:
            _remove_quietly(fs, tmp_path)
    return url


def _remove_quietly(fs: fsspec.AbstractFileSystem, path: str, *, attempts: int = 3) -> None:
    """Remove a temporary prefix, retrying briefly; log (never raise) when the store cannot be reached."""
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            fs.invalidate_cache(path)
            if fs.exists(path):
                fs.rm(path, recursive=True)
            return
        except FileNotFoundError:
            return
        except Exception as exc:  # noqa: BLE001 - the write's own error is the one to report
            last = exc
            time.sleep(0.3 * (attempt + 1))
    log.warning("could not remove the temporary prefix %s (%s); it is hidden from listings, and "
                "workbench.storage.cleanup_debris() on its parent removes it later", path, last)


def cleanup_debris(
    url: str | os.PathLike[str],
    *,
    older_than_s: float = 3600.0,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, list[str]]:
    """Remove what interrupted writes left under ``url``: temporary prefixes and unfinished multipart uploads.

    Parameters
    ----------
    url
        A folder or ``s3://bucket/prefix``.
    older_than_s
        Only debris older than this many seconds is removed (a write still in
        progress elsewhere keeps its temporaries); 0 removes all.
    storage_options
        fsspec options for ``s3://``.

    Returns
    -------
    dict
        ``removed`` (temporary paths) and ``aborted`` (``key`` of each aborted upload).
    """
    import datetime as dt

    url = str(url)
    cutoff = time.time() - older_than_s
    removed: list[str] = []
    aborted: list[str] = []
    if not is_remote(url):
        root = Path(url.removeprefix("file://"))
        for entry in root.rglob(".*") if root.is_dir() else []:
            if is_debris(entry.name) and entry.exists() and entry.stat().st_mtime <= cutoff:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(str(entry))
        return {"removed": removed, "aborted": aborted}
    fs, path = filesystem(url, storage_options)
    with _translated(url, "cleaning up"):
        fs.invalidate_cache(path)
        files = fs.find(path, detail=True) if fs.exists(path) else {}
        newest: dict[str, float] = {}
        for name, info in files.items():
            parts = name[len(path.rstrip("/")) + 1 :].split("/")
            for depth, part in enumerate(parts):
                if is_debris(part):
                    prefix = "/".join([path.rstrip("/"), *parts[: depth + 1]])
                    stamp = info.get("LastModified")
                    when = stamp.timestamp() if isinstance(stamp, dt.datetime) else time.time()
                    newest[prefix] = max(newest.get(prefix, 0.0), when)
                    break
        for prefix, when in sorted(newest.items()):
            if when <= cutoff:
                fs.rm(prefix, recursive=True)
                removed.append(f"s3://{prefix}")
        bucket, _, key_prefix = path.partition("/")
        listing = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key_prefix)
        for upload in stale_uploads(listing.get("Uploads", []) or [], cutoff):
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted.append(upload["Key"])
    return {"removed": removed, "aborted": aborted}


def stale_uploads(uploads: list[dict[str, Any]], cutoff: float) -> list[dict[str, Any]]:
    """The multipart uploads (``list_multipart_uploads`` entries) initiated at or before ``cutoff`` (epoch s)."""
    import datetime as dt

    out = []
    for upload in uploads:
        started = upload.get("Initiated")
        if isinstance(started, dt.datetime) and started.timestamp() > cutoff:
            continue  # recent: a writer elsewhere may still be sending its parts
        out.append(upload)
    return out


def open_zarr(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> "xr.Dataset":
    """Open a Zarr store lazily (Dask-backed)."""
    import xarray as xr

    url = str(url)
    if not exists(url, storage_options=storage_options):
        raise StorageError(f"opening Zarr {url!r}: not found")
    with _translated(url, "opening Zarr"):
        if not is_remote(url):
            return xr.open_zarr(url.removeprefix("file://"), chunks={})
        fs, path = filesystem(url, storage_options)
        return xr.open_zarr(fs.get_mapper(path), chunks={})


def write_geoparquet(
    frame: "gpd.GeoDataFrame", url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write a GeoDataFrame as GeoParquet atomically; returns ``url``."""
    buffer = io.BytesIO()
    with _translated(str(url), "encoding GeoParquet for"):
        frame.to_parquet(buffer, index=False)
    write_bytes(url, buffer.getvalue(), storage_options=storage_options)
    return str(url)


def read_geoparquet(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> "gpd.GeoDataFrame":
    """Read a GeoParquet file into a GeoDataFrame."""
    import geopandas as gpd

    data = read_bytes(url, storage_options=storage_options)
    with _translated(str(url), "decoding GeoParquet"):
        return gpd.read_parquet(io.BytesIO(data))


def write_cog(
    array: "xr.DataArray", url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write a georeferenced DataArray (rioxarray CRS + transform) as a Cloud-Optimised GeoTIFF."""
    import rioxarray  # noqa: F401 - registers the .rio accessor

    if array.rio.crs is None:
        raise StorageError(f"writing COG {url!r}: the array has no CRS (set it with .rio.write_crs)")
    with tempfile.TemporaryDirectory() as tmpdir:
        local = Path(tmpdir) / "cog.tif"
        with _translated(str(url), "encoding COG for"):
            array.rio.to_raster(local, driver="COG", compress="DEFLATE")
        write_bytes(url, local.read_bytes(), storage_options=storage_options)
    return str(url)


def open_cog(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> "xr.DataArray":
    """Open a GeoTIFF/COG as a DataArray (windowed reads; remote files are read through fsspec)."""
    import rioxarray

    url = str(url)
    if not exists(url, storage_options=storage_options):
        raise StorageError(f"opening COG {url!r}: not found")
    with _translated(url, "opening COG"):
        if not is_remote(url):
            return rioxarray.open_rasterio(url.removeprefix("file://"))
        fs, path = filesystem(url, storage_options)
        return rioxarray.open_rasterio(fs.open(path, "rb"))


@contextlib.contextmanager
def local_copy(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> Iterator[Path]:
    """Yield a local path for ``url``: the path itself, or a temporary download of a remote file."""
    url = str(url)
    if not is_remote(url):
        yield Path(url.removeprefix("file://"))
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        local = Path(tmpdir) / posixpath.basename(url.rstrip("/"))
        fs, path = filesystem(url, storage_options)
        with _translated(url, "downloading"):
            fs.get(path, str(local), recursive=True)
        yield local


def check_roundtrip(root: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write, read back and remove a small probe under ``root``; raise StorageError if any step fails.

    Returns
    -------
    dict
        ``root``, ``probe`` URL, ``bytes`` written and ``ok``.
    """
    probe = join(root, f".workbench-probe-{uuid.uuid4().hex}")
    payload = uuid.uuid4().bytes * 64
    write_bytes(probe, payload, storage_options=storage_options)
    try:
        if read_bytes(probe, storage_options=storage_options) != payload:
            raise StorageError(f"storage check under {root!r}: the probe read back differs from what was written")
    finally:
        remove(probe, storage_options=storage_options)
    return {"root": str(root), "probe": probe, "bytes": len(payload), "ok": True}


def read_overview(
    url: str | os.PathLike[str], *, max_size: int = 512, storage_options: Mapping[str, Any] | None = None
) -> "xr.DataArray":
    """Read a raster decimated so that its longer side is at most ``max_size`` pixels.

    Uses the COG's overviews when present (rasterio ``out_shape``), so only a
    small part of the file is read.
    """
    import rasterio
    import xarray as xr
    from rasterio.enums import Resampling

    url = str(url)
    if max_size < 1:
        raise StorageError(f"max_size must be >= 1, got {max_size}")
    with _translated(url, "reading overview of"):
        if is_remote(url):
            fs, path = filesystem(url, storage_options)
            opener: Any = fs.open(path, "rb")
        else:
            opener = url.removeprefix("file://")
        with rasterio.open(opener) as src:
            scale = max(src.width, src.height) / max_size
            height = max(1, int(round(src.height / max(scale, 1))))
            width = max(1, int(round(src.width / max(scale, 1))))
            data = src.read(1, out_shape=(height, width), resampling=Resampling.average, masked=True)
            transform = src.transform @ src.transform.scale(src.width / width, src.height / height)
            xs = [transform.c + (i + 0.5) * transform.a for i in range(width)]
            ys = [transform.f + (j + 0.5) * transform.e for j in range(height)]
            array = xr.DataArray(data.filled(float("nan")) if data.dtype.kind == "f" else data.data,
                                 dims=("y", "x"), coords={"y": ys, "x": xs}, name=posixpath.basename(url))
            array.attrs["crs"] = str(src.crs) if src.crs else None
            return array
