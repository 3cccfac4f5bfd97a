"""One spatial partitioner for both sides: a grid whose cuts are quantiles of the MBR centres.

A geometry goes to every cell its MBR overlaps, so a pair may meet in several cells; the
reference-point rule keeps it in the one cell holding the lower-left corner of the pair's
MBR intersection (a point inside both MBRs, hence in a cell both were sent to). The cells
of a point and of an MBR come from one function (:meth:`GridPartitioner.column`...), so the
rule never loses nor repeats a pair: a partitioned run equals a single-process one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GridPartitioner", "fit_partitioner"]


@dataclass(frozen=True)
class GridPartitioner:
    """A ``len(x_cuts)+1`` by ``len(y_cuts)+1`` grid of cells (inner cut coordinates, ascending)."""

    x_cuts: np.ndarray
    y_cuts: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """Cells along x and y."""
        return len(self.x_cuts) + 1, len(self.y_cuts) + 1

    @property
    def cells(self) -> int:
        """Number of cells (partitions)."""
        nx, ny = self.shape
        return nx * ny

    def column(self, x: np.ndarray) -> np.ndarray:
        """Cell column of coordinates ``x``."""
        return np.searchsorted(self.x_cuts, x, side="right")

    def row(self, y: np.ndarray) -> np.ndarray:
        """Cell row of coordinates ``y``."""
        return np.searchsorted(self.y_cuts, y, side="right")

    def cell_of_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cell number of points."""
        return self.column(x) * self.shape[1] + self.row(y)

    def assign(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, cells)``: each MBR row once per cell it overlaps, sorted by cell."""
        c0, c1 = self.column(bounds[:, 0]), self.column(bounds[:, 2])
        r0, r1 = self.row(bounds[:, 1]), self.row(bounds[:, 3])
        ny = self.shape[1]
        nr = r1 - r0 + 1
        counts = (c1 - c0 + 1) * nr
        owner = np.repeat(np.arange(len(bounds)), counts)
        offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        cells = (c0[owner] + offset // nr[owner]) * ny + r0[owner] + offset % nr[owner]
        order = np.argsort(cells, kind="stable")
        return owner[order], cells[order]


def fit_partitioner(source_bounds: np.ndarray, target_bounds: np.ndarray, *, partitions: int) -> GridPartitioner:
    """A partitioner of about ``partitions`` cells balanced on both sides' MBR centres."""
    if partitions <= 1:
        return GridPartitioner(np.empty(0), np.empty(0))
    kx = max(1, round(math.sqrt(partitions)))
    ky = max(1, math.ceil(partitions / kx))
    both = np.concatenate([source_bounds, target_bounds])
    cx = (both[:, 0] + both[:, 2]) / 2
    cy = (both[:, 1] + both[:, 3]) / 2
    x_cuts = np.unique(np.quantile(cx, np.arange(1, kx) / kx)) if kx > 1 else np.empty(0)
    y_cuts = np.unique(np.quantile(cy, np.arange(1, ky) / ky)) if ky > 1 else np.empty(0)
    return GridPartitioner(x_cuts, y_cuts)
