"""The equigrid of the filtering step: tiles as large as the source side's mean MBR (as GIA.nt sets them).

Pure arithmetic on MBR arrays ``(n, 4)`` = ``minx, miny, maxx, maxy``: a geometry occupies
the tiles ``floor((min - origin) / theta) .. floor((max - origin) / theta)`` on each axis.
The same grid serves the candidate pairs, the pair weights (common tiles...) and the
reference-tile rule that reports a pair in one tile only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "equigrid"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileGrid:
    """An equigrid over the source extent.

    Attributes
    ----------
    x0, y0
        Origin (the source side's lower-left MBR corner).
    theta_x, theta_y
        Tile width and height.
    nx, ny
        Tiles along x and y covering the source extent.
    """

    x0: float
    y0: float
    theta_x: float
    theta_y: float
    nx: int
    ny: int

    @property
    def tiles(self) -> int:
        """Number of tiles of the grid (the χ² weighting's table total)."""
        return self.nx * self.ny

    def ix(self, x: np.ndarray) -> np.ndarray:
        """Tile column of coordinates ``x`` (unclipped)."""
        return np.floor((np.asarray(x, dtype=np.float64) - self.x0) / self.theta_x).astype(np.int64)

    def iy(self, y: np.ndarray) -> np.ndarray:
        """Tile row of coordinates ``y`` (unclipped)."""
        return np.floor((np.asarray(y, dtype=np.float64) - self.y0) / self.theta_y).astype(np.int64)

    def ranges(self, bounds: np.ndarray, *, clip: bool = False) -> tuple[np.ndarray, ...]:
        """``ix0, iy0, ix1, iy1`` of each MBR; ``clip``: limited to the grid (empty ranges have ``ix1 < ix0``)."""
        ix0, iy0 = self.ix(bounds[:, 0]), self.iy(bounds[:, 1])
        ix1, iy1 = self.ix(bounds[:, 2]), self.iy(bounds[:, 3])
        if clip:
            ix0, iy0 = np.maximum(ix0, 0), np.maximum(iy0, 0)
            ix1, iy1 = np.minimum(ix1, self.nx - 1), np.minimum(iy1, self.ny - 1)
        return ix0, iy0, ix1, iy1

    def key(self, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        """One integer per tile (row-major in x)."""
        return ix * np.int64(self.ny) + iy

    def tile_counts(self, bounds: np.ndarray) -> np.ndarray:
        """Tiles each MBR occupies (unclipped)."""
        ix0, iy0, ix1, iy1 = self.ranges(bounds)
        return (ix1 - ix0 + 1) * (iy1 - iy0 + 1)


def _theta(lo: np.ndarray, hi: np.ndarray, n: int) -> float:
    mean = float(np.mean(hi - lo))
    if mean > 0:
        return mean
    extent = float(hi.max() - lo.min())  # points (or all degenerate on this axis): about n tiles in all
    return extent / max(1.0, math.sqrt(n)) if extent > 0 else 1.0


def equigrid(source_bounds: np.ndarray, *, max_tiles_per_geometry: float = 16.0) -> TileGrid:
    """The equigrid of a source side: tile size = mean MBR width/height of the source geometries.

    When the source's tile entries would pass ``max_tiles_per_geometry`` per geometry on
    average (a few huge MBRs among small ones), the tiles are enlarged until they do not.
    """
    n = len(source_bounds)
    minx, miny = float(source_bounds[:, 0].min()), float(source_bounds[:, 1].min())
    maxx, maxy = float(source_bounds[:, 2].max()), float(source_bounds[:, 3].max())
    tx = _theta(source_bounds[:, 0], source_bounds[:, 2], n)
    ty = _theta(source_bounds[:, 1], source_bounds[:, 3], n)
    while True:
        grid = TileGrid(minx, miny, tx, ty, int((maxx - minx) // tx) + 1, int((maxy - miny) // ty) + 1)
        entries = float(grid.tile_counts(source_bounds).sum())
        if entries <= max_tiles_per_geometry * n or grid.tiles == 1:
            return grid
        scale = math.sqrt(entries / (max_tiles_per_geometry * n))
        log.info("equigrid: %.0f tile entries for %d geometries; tiles enlarged %.2fx", entries, n, scale)
        tx, ty = tx * scale, ty * scale
