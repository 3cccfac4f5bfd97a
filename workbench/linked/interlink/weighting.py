"""Pair weighting for progressive interlinking: pure functions of tile counts, MBRs and point counts.

The schemes of JedAI-spatial (Papadakis et al.), computed here over the equigrid of
:mod:`workbench.linked.interlink.tiles`:

``cf``     common tiles of the two MBRs (co-occurrence frequency);
``js``     Jaccard similarity of the tile sets: ``cf / (tiles_s + tiles_t - cf)``;
``chi2``   Pearson's χ² of the 2x2 tile contingency table (in both / only in one / in neither,
           the last at least 1), over all tiles of the grid;
``mbro``   MBR overlap: area of the MBR intersection over the area of the MBR union (0 when
           both are degenerate);
``isp``    inverse sum of points: ``1 / (points_s + points_t)``;
``random`` a pseudo-random weight per pair, reproducible from the seed and the pair's rows.

A hybrid is the product of schemes, written ``chi2*mbro``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.linked.interlink.errors import InterlinkError
from workbench.linked.interlink.tiles import TileGrid

__all__ = ["WEIGHTINGS", "PairFeatures", "pair_weights", "parse_weighting"]

#: The weighting schemes (a hybrid multiplies some: ``"chi2*mbro"``).
WEIGHTINGS: tuple[str, ...] = ("cf", "js", "chi2", "mbro", "isp", "random")


@dataclass(frozen=True)
class PairFeatures:
    """What the weights of candidate pairs are computed from (paired rows).

    Attributes
    ----------
    source_bounds, target_bounds
        ``(n, 4)`` MBRs of the pairs' geometries.
    source_points, target_points
        Coordinate counts of the geometries.
    source_rows, target_rows
        Global rows of the geometries in their sides (the RANDOM weight's key).
    """

    source_bounds: np.ndarray
    target_bounds: np.ndarray
    source_points: np.ndarray
    target_points: np.ndarray
    source_rows: np.ndarray
    target_rows: np.ndarray


def parse_weighting(text: str) -> tuple[str, ...]:
    """The schemes of a weighting name (``"chi2*mbro"`` -> ``("chi2", "mbro")``).

    Raises
    ------
    InterlinkError
        On an unknown scheme.
    """
    if not isinstance(text, str) or not text.strip():
        raise InterlinkError(f"weighting {text!r} is empty: expected one of {', '.join(WEIGHTINGS)} or a product "
                             f"like chi2*mbro")
    parts = tuple(p.strip().lower().replace("x2", "chi2") for p in text.split("*"))
    for part in parts:
        if part not in WEIGHTINGS:
            raise InterlinkError(
                f"unknown weighting {part!r} in {text!r}: expected one of {', '.join(WEIGHTINGS)} "
                f"or a product of them like chi2*mbro"
            )
    return parts


def _common_tiles(grid: TileGrid, f: PairFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sx0, sy0, sx1, sy1 = grid.ranges(f.source_bounds)
    tx0, ty0, tx1, ty1 = grid.ranges(f.target_bounds)
    common = (np.maximum(np.minimum(sx1, tx1) - np.maximum(sx0, tx0) + 1, 0)
              * np.maximum(np.minimum(sy1, ty1) - np.maximum(sy0, ty0) + 1, 0))
    tiles_s = (sx1 - sx0 + 1) * (sy1 - sy0 + 1)
    tiles_t = (tx1 - tx0 + 1) * (ty1 - ty0 + 1)
    return common.astype(np.float64), tiles_s.astype(np.float64), tiles_t.astype(np.float64)


def _chi2(common: np.ndarray, tiles_s: np.ndarray, tiles_t: np.ndarray, total: int) -> np.ndarray:
    a = common
    b = tiles_t - common
    c = tiles_s - common
    d = np.maximum(1.0, total - (a + b + c))
    n = a + b + c + d
    num = n * (a * d - b * c) ** 2
    den = (a + b) * (c + d) * (a + c) * (b + d)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / den, 0.0)
    return out


def _mbro(f: PairFeatures) -> np.ndarray:
    sb, tb = f.source_bounds, f.target_bounds
    w = np.maximum(np.minimum(sb[:, 2], tb[:, 2]) - np.maximum(sb[:, 0], tb[:, 0]), 0.0)
    h = np.maximum(np.minimum(sb[:, 3], tb[:, 3]) - np.maximum(sb[:, 1], tb[:, 1]), 0.0)
    inter = w * h
    union = (sb[:, 2] - sb[:, 0]) * (sb[:, 3] - sb[:, 1]) + (tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _random(f: PairFeatures, seed: int) -> np.ndarray:
    # splitmix64 of (seed, source row, target row): the same weight for a pair wherever it is computed
    with np.errstate(over="ignore"):
        z = (f.source_rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ f.target_rows.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def pair_weights(schemes: tuple[str, ...], grid: TileGrid, *, features: PairFeatures, seed: int = 0) -> np.ndarray:
    """Weights of candidate pairs under a (hybrid) weighting: the product of its schemes' weights."""
    n = len(features.source_rows)
    weight = np.ones(n, dtype=np.float64)
    tiles: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for scheme in schemes:
        if scheme in ("cf", "js", "chi2") and tiles is None:
            tiles = _common_tiles(grid, features)
        if scheme == "cf":
            assert tiles is not None
            part = tiles[0]
        elif scheme == "js":
            assert tiles is not None
            common, ts, tt = tiles
            part = common / np.maximum(ts + tt - common, 1.0)
        elif scheme == "chi2":
            assert tiles is not None
            part = _chi2(*tiles, grid.tiles)
        elif scheme == "mbro":
            part = _mbro(features)
        elif scheme == "isp":
            part = 1.0 / np.maximum(features.source_points + features.target_points, 1).astype(np.float64)
        elif scheme == "random":
            part = _random(features, seed)
        else:
            raise InterlinkError(f"unknown weighting {scheme!r}: expected one of {', '.join(WEIGHTINGS)}")
        weight *= part
    return weight
