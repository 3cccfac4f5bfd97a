"""Compiled kernel: per-group NaN-median along time and valid counts, in one pass over a block.

The block is ``(time, band, pixel)``; the groups (the months) are given as a
CSR layout: ``order[starts[g]:starts[g + 1]]`` are the time indices of group
``g``. For each group and band, the kernel walks the pixels in cache-sized
tiles (so the group's few rows are read as sequential streams); it copies the
rows of a tile into a small buffer (NaN as +inf, counting the non-NaN values
and noting which observations are finite), sorts the buffer across its rows
with a Batcher odd–even merge network (elementwise min/max over the tile,
which the compiler vectorises) and picks the middle one or two values per
pixel by blends over the sorted rows (no gather, no branch). The observations
finite in every band are counted at the end of each group. Results equal :func:`numpy.nanmedian`: the middle value for an odd
count, the mean of the two middle values for an even count, NaN for none.

Groups larger than :data:`NETWORK_MAX` are left to the caller (their counts
are still computed).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

__all__ = ["NETWORK_MAX", "TILE", "network", "network_tables", "grouped_median_count"]

#: Largest group sorted by the network; larger groups fall back to a full sort.
NETWORK_MAX = 32
#: Pixels per tile: ``k`` rows of this many values stay in the L1/L2 cache.
TILE = 256


@lru_cache(maxsize=64)
def network(k: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd–even merge sort for ``k`` inputs.

    Built for the next power of two and pruned to indices below ``k``: the
    pruned inputs would be +inf, which never move, so the pruned network
    still sorts.
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


@lru_cache(maxsize=8)
def network_tables(kmax: int) -> tuple[np.ndarray, np.ndarray]:
    """All networks for ``k = 0 .. kmax`` as ``(pairs (n, 2), offsets (kmax + 2,))``: ``k``'s are ``pairs[offsets[k]:offsets[k + 1]]``."""
    pairs: list[tuple[int, int]] = []
    offsets = [0]
    for k in range(kmax + 1):
        pairs.extend(network(k))
        offsets.append(len(pairs))
    table = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    table.flags.writeable = False
    out = np.array(offsets, dtype=np.int64)
    out.flags.writeable = False
    return table, out


@njit(cache=True, nogil=True, boundscheck=False)
def _kernel(data, order, starts, pairs, offsets, kmax, out, count):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    n_bands = data.shape[1]
    n_pix = data.shape[2]
    n_groups = starts.shape[0] - 1
    width = 1
    for g in range(n_groups):
        width = max(width, starts[g + 1] - starts[g])
    buf = np.empty(min(width, kmax) * TILE + 1, dtype=data.dtype)
    cnt = np.empty(TILE, dtype=np.int32)
    lo_v = np.empty(TILE, dtype=data.dtype)
    hi_v = np.empty(TILE, dtype=data.dtype)
    fin = np.empty((width, n_pix), dtype=np.uint8)  # observation finite in every band so far
    inf = data.dtype.type(np.inf)
    half = data.dtype.type(0.5)
    nan = data.dtype.type(np.nan)
    for g in range(n_groups):
        s0 = starts[g]
        k = starts[g + 1] - s0
        fin[:k] = 1
        for b in range(n_bands):
            if k > kmax:  # validity only: the median of a large group is the caller's
                for i in range(k):
                    row = data[order[s0 + i], b]
                    fi = fin[i]
                    for p in range(n_pix):
                        fi[p] &= np.uint8(abs(row[p]) < inf)
                continue
            if k == 0:
                out[g, b, :] = nan
                continue
            # tiles of pixels in order: the k rows of the group are read as k sequential streams
            for p0 in range(0, n_pix, TILE):
                n = min(TILE, n_pix - p0)
                o = out[g, b, p0:p0 + n]
                cnt[:n] = 0
                for i in range(k):
                    row = data[order[s0 + i], b, p0:p0 + n]
                    fi = fin[i, p0:p0 + n]
                    bi = buf[i * TILE:i * TILE + n]
                    for p in range(n):
                        v = row[p]
                        missing = v != v
                        cnt[p] += np.int32(not missing)
                        fi[p] &= np.uint8(abs(v) < inf)
                        bi[p] = inf if missing else v
                for c in range(offsets[k], offsets[k + 1]):
                    bi = buf[pairs[c, 0] * TILE:pairs[c, 0] * TILE + n]
                    bj = buf[pairs[c, 1] * TILE:pairs[c, 1] * TILE + n]
                    for p in range(n):
                        a = bi[p]
                        z = bj[p]
                        bi[p] = min(a, z)
                        bj[p] = max(a, z)
                # the middle one or two values: blends over the k sorted rows, no gather, no branch
                lo_v[:n] = nan
                hi_v[:n] = nan
                for r in range(k):
                    br = buf[r * TILE:r * TILE + n]
                    for p in range(n):
                        c = cnt[p]
                        v = br[p]
                        lo_v[p] = v if (c - 1) >> 1 == r else lo_v[p]
                        hi_v[p] = v if c >> 1 == r else hi_v[p]
                for p in range(n):
                    a = lo_v[p]
                    o[p] = a if cnt[p] & 1 else (a + hi_v[p]) * half
        cg = count[g]
        cg[:] = 0
        for i in range(k):
            fi = fin[i]
            for p in range(n_pix):
                cg[p] += fi[p]


def grouped_median_count(
    data: np.ndarray,
    order: np.ndarray,
    starts: np.ndarray,
    *,
    kmax: int = NETWORK_MAX,
    out: np.ndarray | None = None,
    count: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group NaN-median and all-bands-valid count of a ``(time, band, pixel)`` block.

    Parameters
    ----------
    data
        float32 or float64 array ``(time, band, pixel)``.
    order, starts
        Group ``g`` holds the times ``order[starts[g]:starts[g + 1]]``.
    kmax
        Groups with more times than this (at most :data:`NETWORK_MAX`) are
        not computed: their medians are left uninitialised for the caller.
    out, count
        Optional arrays to write into: ``out`` ``(groups, bands or more, pixel)``
        of ``data``'s dtype, C-contiguous (bands beyond ``data``'s are left
        alone), ``count`` ``(groups, pixel)`` of any numeric dtype, e.g. a
        view of one band of ``out``.

    Returns
    -------
    median, count
        ``(groups, band, pixel)`` of ``data``'s dtype (``out``'s first bands
        when given), and ``(groups, pixel)`` (uint16 unless ``count`` is
        given): the number of times of the group finite in every band.
    """
    if data.dtype not in (np.float32, np.float64) or data.ndim != 3:
        raise TypeError(f"expected a float32/float64 (time, band, pixel) array, got {data.dtype} {data.shape}")
    kmax = min(int(kmax), NETWORK_MAX)
    order = np.ascontiguousarray(order, dtype=np.int64)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    pairs, offsets = network_tables(NETWORK_MAX)
    n_groups = starts.shape[0] - 1
    if out is None:
        out = np.empty((n_groups,) + data.shape[1:], dtype=data.dtype)
    elif (out.dtype != data.dtype or out.ndim != 3 or out.shape[0] != n_groups or out.shape[1] < data.shape[1]
          or out.shape[2] != data.shape[2] or not out.flags.c_contiguous):
        raise ValueError(f"out {out.dtype} {out.shape} does not fit a block {data.dtype} {data.shape}")
    if count is None:
        count = np.empty((n_groups, data.shape[2]), dtype=np.uint16)
    elif count.shape != (n_groups, data.shape[2]):
        raise ValueError(f"count {count.shape} does not fit {n_groups} groups of {data.shape[2]} pixels")
    _kernel(data, order, starts, pairs, offsets, kmax, out, count)
    return out[:, :data.shape[1]], count
