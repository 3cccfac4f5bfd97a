"""One storage API over local paths and ``s3://`` URLs (fsspec + s3fs).

Every write is atomic:

* local files are written to a hidden temporary name in the same directory and
  renamed with :func:`os.replace`;
* a single S3 object is written with one PUT, which S3 makes visible whole or
  not at all; multi-part uploads (large files) are likewise only visible once
  completed;
* a multi-object product (a Zarr store) is written under a temporary prefix and
  then copied into place with its metadata objects last, so a reader never
  opens a store whose metadata points at missing chunks.

Functions take an optional ``storage_options`` mapping for fsspec; when it is
``None``, options for ``s3://`` come from :func:`workbench.config.load_settings`.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import shutil
import tempfile
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

__all__ = [
    "join",
    "filesystem",
    "read_bytes",
    "write_bytes",
    "exists",
    "listdir",
    "remove",
    "write_zarr",
    "open_zarr",
    "write_geoparquet",
    "read_geoparquet",
    "write_cog",
    "open_cog",
    "local_copy",
]

_ZARR_METADATA = {".zmetadata", ".zattrs", ".zgroup", ".zarray", "zarr.json"}


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
    return fs, path


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
        fs.pipe_file(path, data)  # one PUT: atomic on S3


def exists(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether a file, object or prefix exists."""
    fs, path = filesystem(url, storage_options)
    with _translated(str(url), "checking"):
        return bool(fs.exists(path))


def listdir(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Names (not full paths) of the entries directly under ``url``, sorted."""
    fs, path = filesystem(url, storage_options)
    with _translated(str(url), "listing"):
        entries = fs.ls(path, detail=False)
    return sorted(posixpath.basename(e.rstrip("/")) for e in entries)


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
    tmp_path = f"{path.rstrip('/')}.{uuid.uuid4().hex}.tmp"
    with _translated(url, "writing Zarr"):
        mapper = fs.get_mapper(tmp_path)
        try:
            dataset.to_zarr(mapper, mode="w", compute=compute, consolidated=True)
            _publish_tree(fs, tmp_path, path.rstrip("/"))
        finally:
            if fs.exists(tmp_path):
                fs.rm(tmp_path, recursive=True)
    return url


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
