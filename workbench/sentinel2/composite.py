"""Monthly median composites of valid observations over the agronomic year.

Pure computation: a compiled kernel on blocks, and a lazy Dask/xarray wrapper
that maps it over a ``(time, band, y, x)`` cube chunked in space only (each
task holds whole time series), on threads or on a multi-process cluster.

The median kernel (:mod:`workbench.sentinel2.median_kernel`) sorts the few
observations of a month with a Batcher odd–even merge network over
cache-sized tiles of pixels (NaN sorted last as +inf), counts the valid ones
and picks the middle one or two, and counts the observations valid in every
band in the same pass. It returns exactly what ``numpy.nanmedian`` returns
(the middle value for an odd count, the mean of the two middle values for an
even count, NaN for no value) close to memory speed, where ``nanmedian`` (and
xarray's ``resample(...).median()`` on top of it) partitions each pixel's
series separately.
"""

from __future__ import annotations

import datetime as dt
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


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype of a median of ``dtype`` values: floats keep theirs, anything else is float64."""
    return np.dtype(dtype if np.issubdtype(dtype, np.floating) else np.float64)


def _groups(months: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR layout of the times of each group: ``order[starts[g]:starts[g + 1]]`` (-1: in no group)."""
    order = np.argsort(months, kind="stable")
    order = order[months[order] >= 0]
    starts = np.searchsorted(months[order], np.arange(n_groups + 1))
    return order.astype(np.int64), starts.astype(np.int64)


def _sorted_median(stack: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """NaN-median along axis 0 by a full sort (for groups too large for the network)."""
    if stack.shape[0] == 0:
        return np.full(stack.shape[1:], np.nan, dtype=dtype)
    work = np.where(np.isnan(stack), np.inf, stack).astype(dtype, copy=False)
    work.sort(axis=0)
    return _median_of_sorted(work, np.isnan(stack).sum(axis=0), dtype)


def _median_of_sorted(work: np.ndarray, n_missing: np.ndarray, dtype: np.dtype) -> np.ndarray:
    n = work.shape[0] - n_missing
    lo = np.maximum(n - 1, 0) // 2
    hi = n // 2
    a = np.take_along_axis(work, lo[None], axis=0)[0]
    b = np.take_along_axis(work, hi[None], axis=0)[0]
    with np.errstate(invalid="ignore", over="ignore"):
        med = np.where(lo == hi, a, np.asarray((a + b) / 2, dtype=dtype)).astype(dtype, copy=False)
    med[n == 0] = np.nan
    return med


def _median_count(
    block: np.ndarray, order: np.ndarray, starts: np.ndarray, *, out: np.ndarray | None = None,
    count: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group median ``(groups, band, pixel)`` and all-bands-valid count ``(groups, pixel)`` of ``(time, band, pixel)``.

    ``out``/``count``: where the kernel may write (see
    :func:`~workbench.sentinel2.median_kernel.grouped_median_count`), when
    the block is float32/float64.
    """
    from workbench.sentinel2.median_kernel import NETWORK_MAX, grouped_median_count

    dtype = _float_dtype(block.dtype)
    work = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32 if dtype.itemsize < 4 else np.float64)
    if work == np.float64 and dtype.itemsize > 8:  # long double: no compiled kernel, sort in its own precision
        count = np.zeros((starts.size - 1, block.shape[2]), dtype=np.uint16)
        out = np.empty((starts.size - 1,) + block.shape[1:], dtype=dtype)
        for g in range(starts.size - 1):
            sel = block[order[starts[g]:starts[g + 1]]]
            out[g] = _sorted_median(sel, dtype)
            count[g] = np.isfinite(sel).all(axis=1).sum(axis=0)
        return out, count
    data = np.ascontiguousarray(block, dtype=work)  # one compiled specialisation per dtype
    if out is not None and out.dtype != work:
        out = count = None
    med, count = grouped_median_count(data, order, starts, out=out, count=count)
    for g in np.flatnonzero(np.diff(starts) > NETWORK_MAX):
        med[g] = _sorted_median(data[order[starts[g]:starts[g + 1]]], work)
    return med.astype(dtype, copy=False), count


def nanmedian_axis0(stack: np.ndarray, *, block_bytes: int = 1 << 16) -> np.ndarray:
    """Median along axis 0 ignoring NaN; NaN where a position has no value.

    Equal to ``numpy.nanmedian(stack, axis=0)`` (without its all-NaN warning),
    computed by the compiled sorting-network kernel of
    :mod:`workbench.sentinel2.median_kernel`. ``block_bytes`` is accepted for
    compatibility; the kernel picks its own cache-sized tiles.
    """
    stack = np.asarray(stack)
    if stack.ndim == 0:
        raise DataError("nanmedian_axis0 needs an array with a leading (time) axis, got a scalar")
    k = stack.shape[0]
    flat = stack.reshape(k, 1, int(np.prod(stack.shape[1:], dtype=np.int64)))
    order = np.arange(k, dtype=np.int64)
    starts = np.array([0, k], dtype=np.int64)
    med, _ = _median_count(flat, order, starts)
    return med.reshape(stack.shape[1:])


def monthly_median(data: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Per-month NaN-median of ``data`` ``(time, ...)`` given each time's month index.

    Returns an array ``(12, ...)``; times with month -1 are ignored.
    """
    data = np.asarray(data)
    months = np.asarray(months)
    if data.ndim == 0 or months.shape != data.shape[:1]:
        raise DataError(f"{months.size} month indices for {data.shape[0] if data.ndim else 0} time steps")
    _check_months(months)
    order, starts = _groups(months, N_MONTHS)
    size = int(np.prod(data.shape[1:], dtype=np.int64))
    med, _ = _median_count(data.reshape(data.shape[0], 1, size), order, starts)
    return med.reshape((N_MONTHS,) + data.shape[1:])


def _check_months(months: np.ndarray) -> None:
    if not np.issubdtype(months.dtype, np.integer):
        raise DataError(f"month indices must be integers (0..11, -1 for none), got dtype {months.dtype}")
    if months.size and (months.min() < -1 or months.max() >= N_MONTHS):
        raise DataError(f"month indices must be in -1..{N_MONTHS - 1}, got {months.min()}..{months.max()}")


def monthly_count(valid: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Number of valid observations per month: ``valid`` ``(time, ...)`` bool → ``(12, ...)`` uint16."""
    months = np.asarray(months)
    valid = np.asarray(valid)
    if valid.ndim == 0 or valid.shape[0] != months.size:
        raise DataError(
            f"mask of {valid.shape[0] if valid.ndim else 0} time steps for {months.size} month indices"
        )
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


def _composite_block(
    block: np.ndarray, order: np.ndarray, starts: np.ndarray, fill: bool, progress: str | None = None
) -> np.ndarray:
    """Medians ``(12, band, y, x)`` and, packed as one more band, the valid counts of a ``(time, band, y, x)`` block."""
    t, b, y, x = block.shape
    out = np.empty((N_MONTHS, b + 1, y * x), dtype=np.float32)
    # the kernel writes the medians into the first bands and the counts (< 2**24, exact in float32) into the last
    med, count = _median_count(block.reshape(t, b, y * x), order, starts, out=out, count=out[:, b])
    if not np.shares_memory(med, out):  # not written in place (a dtype without the kernel)
        out[:, :b] = med
        out[:, b] = count
    out = out.reshape(N_MONTHS, b + 1, y, x)
    if fill:
        out[:, :b] = fill_gaps(out[:, :b])
    if progress is not None:
        from workbench.sentinel2.progress import chunk_done

        chunk_done(progress)
    return out


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
        When the dims are not ``(time, band, y, x)``, an axis is empty, the
        values are not numbers, ``time`` holds no dates, ``chunk`` is not a
        positive integer, or no time falls in the year.
    """
    import dask.array as da
    import xarray as xr

    if not isinstance(reflectance, xr.DataArray):
        raise DataError(f"the cube must be an xarray.DataArray (time, band, y, x), got {type(reflectance).__name__}")
    if tuple(reflectance.dims) != ("time", "band", "y", "x"):
        raise DataError(f"the cube must have dims (time, band, y, x), got {tuple(reflectance.dims)}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise DataError(f"chunk must be a positive number of pixels, got {chunk!r}")
    empty = [d for d in ("band", "y", "x") if reflectance.sizes[d] == 0]
    if empty:
        raise DataError(f"the cube has an empty {'/'.join(empty)} axis (shape {dict(reflectance.sizes)})")
    if not (np.issubdtype(reflectance.dtype, np.number) or reflectance.dtype == bool):
        raise DataError(f"the cube must hold numbers (reflectance, NaN where masked), got dtype {reflectance.dtype}")
    if "time" not in reflectance.coords or not np.issubdtype(reflectance["time"].dtype, np.datetime64):
        raise DataError("the cube needs a datetime64 'time' coordinate (the acquisition dates)")
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
    order, starts = _groups(months, N_MONTHS)
    data = cube.data
    if not isinstance(data, da.Array):
        data = da.from_array(data, chunks=(-1, -1, chunk, chunk))
    # chunks along space only: each task holds whole time series of all bands
    data = data.astype(np.float32).rechunk({0: -1, 1: -1, 2: chunk, 3: chunk})
    n_bands = data.shape[1]
    from workbench.sentinel2.progress import current

    bar = current()
    packed = da.map_blocks(
        _composite_block, data, order, starts, fill, bar.token if bar else None, dtype=np.float32,
        chunks=((N_MONTHS,), (n_bands + 1,), data.chunks[2], data.chunks[3]), name="s2-monthly-median",
    )
    if bar is not None:
        bar.add(packed.npartitions)
    comp = packed[:, :n_bands]
    count = packed[:, n_bands].astype(np.uint16)
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
