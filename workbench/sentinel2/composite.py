"""Monthly median composites of valid observations over the agronomic year.

Pure computation: NumPy kernels on blocks, and a lazy Dask/xarray wrapper that
maps them over a ``(time, band, y, x)`` cube chunked in space only.

The median kernel sorts the few observations of a month with a vectorised
Batcher odd–even merge network (elementwise ``minimum``/``maximum`` over
cache-sized slabs, NaN sorted last as +inf), counts the valid ones and picks
the middle one or two. It returns exactly what ``numpy.nanmedian`` returns (mean of the two
middle values for an even count, NaN for no value) at memory speed, where
``nanmedian`` (and xarray's ``resample(...).median()`` on top of it) calls a
Python function per pixel.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import DataError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "N_MONTHS",
    "agronomic_months",
    "month_index",
    "nanmedian_axis0",
    "monthly_median",
    "monthly_count",
    "fill_gaps",
    "monthly_composite",
    "check_has_valid",
]

N_MONTHS = 12
_NETWORK_MAX = 32  # above this many observations per month, fall back to np.sort


def agronomic_months(agronomic_year: int) -> np.ndarray:
    """First day of each month of the agronomic year (September ``year`` .. August ``year + 1``)."""
    if not isinstance(agronomic_year, (int, np.integer)):
        raise DataError(f"agronomic_year must be an integer year, got {agronomic_year!r}")
    months = [dt.date(agronomic_year + (m + 8) // 12, (m + 8) % 12 + 1, 1) for m in range(N_MONTHS)]
    return np.array(months, dtype="datetime64[ns]")


def month_index(times: np.ndarray, *, agronomic_year: int) -> np.ndarray:
    """Month of the agronomic year (0 = September … 11 = August) of each time; -1 outside the year."""
    t = np.asarray(times).astype("datetime64[M]")
    start = np.datetime64(f"{agronomic_year}-09", "M")
    idx = (t - start).astype(np.int64)
    return np.where((idx >= 0) & (idx < N_MONTHS), idx, -1)


@lru_cache(maxsize=64)
def _network(k: int) -> tuple[tuple[int, int], ...]:
    """Comparators (i < j) of Batcher's odd–even merge sort for ``k`` inputs.

    Built for the next power of two and pruned to indices < ``k``: the pruned
    inputs would be +inf, which never move, so the pruned network still sorts.
    """
    n = 1
    while n < k:
        n *= 2
    pairs = []
    p = 1
    while p < n:
        step = p
        while step >= 1:
            for j in range(step % p, n - step, 2 * step):
                for i in range(min(step, n - j - step)):
                    if (i + j) // (2 * p) == (i + j + step) // (2 * p):
                        pairs.append((i + j, i + j + step))
            step //= 2
        p *= 2
    return tuple((a, b) for a, b in pairs if b < k)


class _Workspace:
    """Buffers reused across the slabs of one median: no allocation per slab.

    (Dask worker processes trim the heap aggressively, so fresh temporaries
    cost page faults; reusing buffers keeps the kernel at memory speed there.)
    """

    def __init__(self, k: int, step: int, dtype: np.dtype) -> None:
        self.buf = np.empty((k + 1, step), dtype=dtype)  # k planes + one scratch row
        self.nan = np.empty(step, dtype=bool)
        self.count = np.empty(step, dtype=np.int64)
        self.idx = np.empty(step, dtype=np.int64)
        self.pos = np.arange(step, dtype=np.int64)
        self.a = np.empty(step, dtype=dtype)
        self.b = np.empty(step, dtype=dtype)


def _median_slab(stack: np.ndarray, out: np.ndarray, ws: _Workspace) -> None:
    """Median along axis 0 of ``stack`` (k, m) into ``out`` (m,) through a sorting network."""
    k, m = stack.shape
    buf = ws.buf[:, :m]
    count, nan = ws.count[:m], ws.nan[:m]
    count.fill(k)
    inf = buf.dtype.type(np.inf)
    for i in range(k):
        np.isnan(stack[i], out=nan)
        np.subtract(count, nan, out=count)
        np.fmin(stack[i], inf, out=buf[i])  # x, or +inf where x is NaN: NaN sorts last
    rows = list(range(k))
    scratch = k
    for i, j in _network(k):
        a, b = buf[rows[i]], buf[rows[j]]
        np.minimum(a, b, out=buf[scratch])
        np.maximum(a, b, out=b)
        rows[i], scratch = scratch, rows[i]  # swap rows instead of copying
    flat = ws.buf.reshape(-1)
    order = np.asarray(rows, dtype=np.int64) * ws.buf.shape[1]  # flat offset of the r-th smallest row
    idx, pos = ws.idx[:m], ws.pos[:m]
    # lower middle: rank (n - 1) // 2 (0 when n == 0); upper middle: rank n // 2 (clipped)
    np.maximum(count, 1, out=idx)
    np.subtract(idx, 1, out=idx)
    np.floor_divide(idx, 2, out=idx)
    np.take(order, idx, out=idx)
    np.add(idx, pos, out=idx)
    np.take(flat, idx, out=ws.a[:m])
    np.floor_divide(count, 2, out=idx)
    np.minimum(idx, k - 1, out=idx)
    np.take(order, idx, out=idx)
    np.add(idx, pos, out=idx)
    np.take(flat, idx, out=ws.b[:m])
    np.add(ws.a[:m], ws.b[:m], out=out)
    np.multiply(out, out.dtype.type(0.5), out=out)
    np.equal(count, 0, out=nan)
    np.copyto(out, out.dtype.type(np.nan), where=nan)


def _slab_step(block_bytes: int, dtype: np.dtype, size: int) -> int:
    return min(max(1024, block_bytes // dtype.itemsize), max(size, 1))


def _nanmedian_into(stack: np.ndarray, out: np.ndarray, ws: _Workspace | None, block_bytes: int) -> None:
    """Median of ``stack`` (k, ...) along axis 0 into ``out`` (...)."""
    k = stack.shape[0]
    dtype = out.dtype
    if k == 0:
        out[...] = np.nan
        return
    if k == 1:
        out[...] = stack[0]
        return
    if k > _NETWORK_MAX:
        work = np.where(np.isnan(stack), np.inf, stack).astype(dtype, copy=False)
        work.sort(axis=0)
        out[...] = _median_of_sorted(work, dtype)
        return
    flat = stack.reshape(k, -1)
    if flat.dtype != dtype:
        flat = flat.astype(dtype)
    target = out.reshape(-1)
    step = _slab_step(block_bytes, dtype, flat.shape[1])
    if ws is None or ws.buf.shape[0] < k + 1 or ws.buf.shape[1] < step:
        ws = _Workspace(k, step, dtype)
    for s0 in range(0, flat.shape[1], step):
        _median_slab(flat[:, s0:s0 + step], target[s0:s0 + step], ws)


def nanmedian_axis0(stack: np.ndarray, *, block_bytes: int = 1 << 16) -> np.ndarray:
    """Median along axis 0 ignoring NaN; NaN where a position has no value.

    Equal to ``numpy.nanmedian(stack, axis=0)`` (without its all-NaN warning).
    The work is done on slabs of about ``block_bytes`` per plane so that the
    few planes of a month stay in the CPU cache.
    """
    stack = np.asarray(stack)
    dtype = np.dtype(stack.dtype if np.issubdtype(stack.dtype, np.floating) else np.float64)
    out = np.empty(stack.shape[1:], dtype=dtype)
    _nanmedian_into(stack, out, None, block_bytes)
    return out


def _median_of_sorted(work: np.ndarray, dtype: np.dtype) -> np.ndarray:
    n = np.count_nonzero(work != np.inf, axis=0)
    lo = np.maximum(n - 1, 0) // 2
    hi = n // 2
    a = np.take_along_axis(work, lo[None], axis=0)[0]
    b = np.take_along_axis(work, hi[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        med = np.asarray((a + b) / 2, dtype=dtype)
    med[n == 0] = np.nan
    return med


def monthly_median(data: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Per-month NaN-median of ``data`` ``(time, ...)`` given each time's month index.

    Returns an array ``(12, ...)``; times with month -1 are ignored.
    """
    months = np.asarray(months)
    if months.shape != data.shape[:1]:
        raise DataError(f"{months.size} month indices for {data.shape[0]} time steps")
    dtype = np.dtype(data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64)
    out = np.empty((N_MONTHS,) + data.shape[1:], dtype=dtype)
    per_month = [np.flatnonzero(months == m) for m in range(N_MONTHS)]
    k_max = max(len(w) for w in per_month)
    size = int(np.prod(data.shape[1:], dtype=np.int64))
    ws = _Workspace(k_max, _slab_step(1 << 16, dtype, size), dtype) if 1 < k_max <= _NETWORK_MAX else None
    for m, where in enumerate(per_month):
        if where.size and where[-1] - where[0] + 1 == where.size:  # sorted times: a view, no copy
            _nanmedian_into(data[where[0]:where[-1] + 1], out[m], ws, 1 << 16)
        else:
            _nanmedian_into(data[where], out[m], ws, 1 << 16)
    return out


def monthly_count(valid: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Number of valid observations per month: ``valid`` ``(time, ...)`` bool → ``(12, ...)`` uint16."""
    months = np.asarray(months)
    out = np.zeros((N_MONTHS,) + valid.shape[1:], dtype=np.uint16)
    for m in range(N_MONTHS):
        sel = valid[months == m]
        if sel.shape[0]:
            out[m] = np.count_nonzero(sel, axis=0)
    return out


def fill_gaps(composite: np.ndarray) -> np.ndarray:
    """Fill NaN months by linear interpolation along axis 0 (nearest value at the ends).

    Positions with no value in any month stay NaN.
    """
    comp = np.asarray(composite)
    n = comp.shape[0]
    valid = ~np.isnan(comp)
    if valid.all():
        return comp.copy()
    idx = np.arange(n).reshape((n,) + (1,) * (comp.ndim - 1))
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(valid, idx, n)[::-1], axis=0)[::-1]
    has_prev, has_next = prev >= 0, nxt < n
    vp = np.take_along_axis(comp, np.clip(prev, 0, n - 1), axis=0)
    vn = np.take_along_axis(comp, np.clip(nxt, 0, n - 1), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = (idx - prev) / np.where(nxt > prev, nxt - prev, 1)
        inner = vp + (vn - vp) * w.astype(comp.dtype)
    filled = np.where(has_prev & has_next, inner, np.where(has_prev, vp, vn))
    return np.where(valid, comp, filled).astype(comp.dtype)


def _composite_block(block: np.ndarray, months: np.ndarray, fill: bool) -> np.ndarray:
    med = monthly_median(block, months)
    return fill_gaps(med) if fill else med


def _count_block(block: np.ndarray, months: np.ndarray) -> np.ndarray:
    return monthly_count(np.isfinite(block).all(axis=1), months)


def monthly_composite(
    reflectance: "xr.DataArray",
    *,
    agronomic_year: int,
    fill: bool = True,
    chunk: int = 512,
) -> "xr.Dataset":
    """Lazy monthly median composites of a masked ``(time, band, y, x)`` cube.

    Parameters
    ----------
    reflectance
        Reflectance with NaN where an observation is invalid (clouds ...),
        dims ``(time, band, y, x)``, NumPy- or Dask-backed.
    agronomic_year
        Year of the September that starts the 12 months.
    fill
        Fill months without a valid observation by temporal interpolation.
    chunk
        Spatial chunk size (pixels) of the computation.

    Returns
    -------
    xarray.Dataset
        ``reflectance`` ``(month, band, y, x)`` float32, ``valid_count``
        ``(month, y, x)`` uint16 and ``filled`` ``(month, y, x)`` bool (no
        valid observation that month: the value is interpolated), with the
        same 12 months whatever the input sampling. Coordinates other than
        time (x, y, band, spatial_ref) are kept.

    Raises
    ------
    DataError
        When the dims are not ``(time, band, y, x)`` or no time falls in the year.
    """
    import dask.array as da
    import xarray as xr

    if tuple(reflectance.dims) != ("time", "band", "y", "x"):
        raise DataError(f"the cube must have dims (time, band, y, x), got {tuple(reflectance.dims)}")
    months = month_index(reflectance["time"].values, agronomic_year=agronomic_year)
    keep = months >= 0
    if not keep.any():
        times = reflectance["time"].values
        span = f"{times.min()}..{times.max()}" if times.size else "no time steps"
        raise DataError(
            f"no acquisition in agronomic year {agronomic_year} "
            f"({agronomic_year}-09-01..{agronomic_year + 1}-08-31); the cube covers {span}"
        )
    where = np.flatnonzero(keep)
    if where[-1] - where[0] + 1 == where.size:  # a contiguous run of dates: a slice, no gather
        cube = reflectance.isel(time=slice(int(where[0]), int(where[-1]) + 1))
    else:
        cube = reflectance.isel(time=where)
    months = months[keep]
    data = cube.data
    if not isinstance(data, da.Array):
        data = da.from_array(data, chunks=(-1, -1, chunk, chunk))
    data = data.astype(np.float32).rechunk({0: -1, 1: -1, 2: chunk, 3: chunk})
    out_chunks = ((N_MONTHS,), data.chunks[1], data.chunks[2], data.chunks[3])
    comp = da.map_blocks(
        _composite_block, data, months, fill, dtype=np.float32, chunks=out_chunks, name="s2-monthly-median"
    )
    count = da.map_blocks(
        _count_block,
        data,
        months,
        dtype=np.uint16,
        chunks=((N_MONTHS,), data.chunks[2], data.chunks[3]),
        drop_axis=1,
        name="s2-monthly-count",
    )
    month_coord = agronomic_months(agronomic_year)
    coords = {k: v for k, v in cube.coords.items() if "time" not in v.dims}
    coords["month"] = month_coord
    ds = xr.Dataset(
        {
            "reflectance": (("month", "band", "y", "x"), comp),
            "valid_count": (("month", "y", "x"), count),
            "filled": (("month", "y", "x"), count == 0),
        },
        coords=coords,
        attrs={**cube.attrs, "agronomic_year": int(agronomic_year), "n_acquisitions": int(keep.sum())},
    )
    ds["reflectance"].attrs = {"long_name": "monthly median surface reflectance", "units": "1"}
    ds["valid_count"].attrs = {"long_name": "number of valid observations in the month"}
    ds["filled"].attrs = {"long_name": "no valid observation: value interpolated in time" if fill else "no valid observation"}
    return ds


def check_has_valid(composite: "xr.Dataset", *, name: str = "cube") -> int:
    """Raise :class:`DataError` when a composite has no valid observation at all; return their number."""
    total = int(composite["valid_count"].sum().compute())
    if total == 0:
        year = composite.attrs.get("agronomic_year", "?")
        raise DataError(
            f"{name}: no valid observation in agronomic year {year} (every pixel of every date is "
            "cloud, shadow, no data or otherwise masked); choose another year or relax the SCL mask"
        )
    return total
