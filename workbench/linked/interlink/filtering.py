"""Filtering: the candidate pairs, i.e. source/target pairs whose MBRs intersect.

Two filters with one answer (pairs sorted by source, then target index):

* :func:`grid_candidates` — GIA.nt's equigrid: the source side is indexed in tiles, the
  target side streamed in chunks; a pair is reported by the one tile holding its
  reference point (the lower-left corner of the MBR intersection), so no pair repeats;
* :func:`strtree_candidates` — shapely's STRtree over the source, queried with the target.

Everything is vectorised numpy; no Python loop runs per geometry.
"""

from __future__ import annotations

import numpy as np
import shapely

from workbench.linked.interlink.tiles import TileGrid

__all__ = ["FILTERS", "candidates", "grid_candidates", "mbr_intersects", "reference_points", "strtree_candidates"]

#: The filter names.
FILTERS = ("grid", "strtree")


def mbr_intersects(sb: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Whether MBR rows of ``sb`` and ``tb`` (paired, ``(n, 4)``) intersect (closed boxes)."""
    return (sb[:, 0] <= tb[:, 2]) & (tb[:, 0] <= sb[:, 2]) & (sb[:, 1] <= tb[:, 3]) & (tb[:, 1] <= sb[:, 3])


def reference_points(sb: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower-left corner of the MBR intersection of paired rows: lies in both MBRs when they intersect."""
    return np.maximum(sb[:, 0], tb[:, 0]), np.maximum(sb[:, 1], tb[:, 1])


def _explode(ix0: np.ndarray, iy0: np.ndarray, ix1: np.ndarray,
             iy1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(owner row, tile column, tile row) for every tile of every box (empty boxes give nothing)."""
    nys = np.maximum(iy1 - iy0 + 1, 0)
    counts = np.maximum(ix1 - ix0 + 1, 0) * nys
    owner = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = nys[owner]
    return owner, ix0[owner] + offset // rows, iy0[owner] + offset % rows


def _sorted(si: np.ndarray, ti: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((ti, si))
    return si[order].astype(np.int64), ti[order].astype(np.int64)


def grid_candidates(grid: TileGrid, *, source_bounds: np.ndarray, target_bounds: np.ndarray,
                    chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs ``(source rows, target rows)`` by the equigrid, the target streamed ``chunk`` rows at a time.

    A pair is kept in the tile of its reference point only: as ``floor`` is monotone, that
    tile is ``(max(ix0_s, ix0_t), max(iy0_s, iy0_t))`` of the two MBRs' first tiles.
    """
    if len(source_bounds) == 0 or len(target_bounds) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    sx0, sy0, sx1, sy1 = grid.ranges(source_bounds)
    owner, ix, iy = _explode(sx0, sy0, sx1, sy1)
    keys = grid.key(ix, iy)
    order = np.argsort(keys, kind="stable")
    skeys, sowner = keys[order], owner[order]
    found_s: list[np.ndarray] = []
    found_t: list[np.ndarray] = []
    for start in range(0, len(target_bounds), chunk):
        tb = target_bounds[start:start + chunk]
        tx0, ty0, tx1, ty1 = grid.ranges(tb)
        towner, tix, tiy = _explode(np.maximum(tx0, 0), np.maximum(ty0, 0),
                                    np.minimum(tx1, grid.nx - 1), np.minimum(ty1, grid.ny - 1))
        tkeys = grid.key(tix, tiy)
        lo = np.searchsorted(skeys, tkeys, side="left")
        hits = np.searchsorted(skeys, tkeys, side="right") - lo
        keep = hits > 0
        lo, hits, towner, tix, tiy = lo[keep], hits[keep], towner[keep], tix[keep], tiy[keep]
        total = int(hits.sum())
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(hits) - hits, hits)
        s = sowner[np.repeat(lo, hits) + within]
        t = np.repeat(towner, hits)
        # reference tile: the one tile of the pair that reports it
        keep = (np.repeat(tix, hits) == np.maximum(sx0[s], tx0[t])) & (np.repeat(tiy, hits) == np.maximum(sy0[s], ty0[t]))
        s, t = s[keep], t[keep]
        keep = mbr_intersects(source_bounds[s], tb[t])
        found_s.append(s[keep])
        found_t.append(t[keep] + start)
    return _sorted(np.concatenate(found_s), np.concatenate(found_t))


def strtree_candidates(source_geoms: np.ndarray, target_geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs ``(source rows, target rows)`` by an STRtree of the source (envelope intersection)."""
    if len(source_geoms) == 0 or len(target_geoms) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    tree = shapely.STRtree(source_geoms)
    t, s = tree.query(target_geoms)
    keep = mbr_intersects(shapely.bounds(source_geoms[s]), shapely.bounds(target_geoms[t]))
    return _sorted(s[keep], t[keep])


def candidates(method: str, grid: TileGrid, *, source_geoms: np.ndarray, source_bounds: np.ndarray,
               target_geoms: np.ndarray, target_bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs by the filter named ``method`` (``"grid"`` or ``"strtree"``)."""
    if method == "grid":
        return grid_candidates(grid, source_bounds=source_bounds, target_bounds=target_bounds)
    if method == "strtree":
        return strtree_candidates(source_geoms, target_geoms)
    raise ValueError(f"unknown filter {method!r}: expected one of {', '.join(FILTERS)}")
