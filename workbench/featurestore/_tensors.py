"""Tensor features: arrays stored as Zarr, indexed from the Delta table by (store id, row)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import zarr

from workbench import storage

__all__ = ["write_tensor", "open_tensor", "gather_rows", "rows_per_chunk", "store_column", "row_column"]

TARGET_CHUNK_BYTES = 4 * 1024 * 1024


def store_column(name: str) -> str:
    """Name of the Delta column holding the Zarr store id of tensor feature ``name``."""
    return f"{name}__store"


def row_column(name: str) -> str:
    """Name of the Delta column holding the row within that store."""
    return f"{name}__row"


def rows_per_chunk(shape: Sequence[int], dtype: Any) -> int:
    """Rows per Zarr chunk so that one chunk holds about 4 MiB."""
    row_bytes = max(1, int(np.prod(shape, dtype="int64")) * np.dtype(dtype).itemsize)
    return int(max(1, min(65536, TARGET_CHUNK_BYTES // row_bytes)))


def _store(url: str, storage_options: Mapping[str, Any] | None, *, read_only: bool = False) -> Any:
    if storage.is_remote(url):
        from zarr.storage import FsspecStore

        if storage_options is None:
            from workbench.config import load_settings

            storage_options = load_settings().storage_options()
        # zarr opens an asynchronous fsspec filesystem (cached by fsspec, so one per set of options)
        return FsspecStore.from_url(url, storage_options=dict(storage_options), read_only=read_only)
    return url.removeprefix("file://")


def create_tensor(
    url: str,
    *,
    rows: int,
    shape: Sequence[int],
    dtype: Any,
    storage_options: Mapping[str, Any] | None,
    compress: bool = True,
    chunk_rows: int | None = None,
) -> zarr.Array:
    """Create an empty ``(rows, *shape)`` Zarr array chunked along rows.

    Chunks hold ``chunk_rows`` rows (default: about 4 MiB), are zstd-compressed
    unless ``compress=False``, and uncompressed ones are always written (also
    when all zero) so that every chunk file exists as raw little-endian bytes.
    """
    chunk = chunk_rows or rows_per_chunk(shape, dtype)
    extra: dict[str, Any] = {} if compress else {"compressors": None, "config": {"write_empty_chunks": True}}
    return zarr.create_array(
        store=_store(url, storage_options),
        shape=(rows, *shape),
        chunks=(min(chunk, max(rows, 1)), *shape),
        dtype=np.dtype(dtype),
        overwrite=True,
        **extra,
    )


def write_tensor(url: str, array: np.ndarray, *, storage_options: Mapping[str, Any] | None) -> None:
    """Write ``array`` (rows first) as a new Zarr array at ``url``."""
    out = create_tensor(
        url, rows=array.shape[0], shape=array.shape[1:], dtype=array.dtype, storage_options=storage_options
    )
    if array.shape[0]:
        out[...] = array


def open_tensor(url: str, *, storage_options: Mapping[str, Any] | None) -> zarr.Array:
    """Open a Zarr array for reading."""
    return zarr.open_array(store=_store(url, storage_options, read_only=True), mode="r")


def gather_rows(
    arrays: Mapping[str, zarr.Array],
    stores: np.ndarray,
    rows: np.ndarray,
    *,
    shape: Sequence[int],
    dtype: Any,
) -> np.ndarray:
    """Gather the rows ``rows[i]`` of store ``stores[i]`` into one array, in the given order."""
    out = np.empty((len(rows), *shape), dtype=np.dtype(dtype))
    if not len(rows):
        return out
    stores = np.asarray(stores)
    rows = np.asarray(rows, dtype="int64")
    for store_id in np.unique(stores):
        where = np.nonzero(stores == store_id)[0]
        wanted = rows[where]
        lo, hi = int(wanted.min()), int(wanted.max()) + 1
        arr = arrays[str(store_id)]
        if hi - lo <= 2 * len(wanted):
            block = arr[lo:hi]
            out[where] = block[wanted - lo]
        else:
            order = np.argsort(wanted)
            out[where[order]] = arr.oindex[wanted[order]]
    return out
