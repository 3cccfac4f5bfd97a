"""Speckle filter and multilooking on Dask arrays (pure computation)."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
from scipy import ndimage

from workbench.errors import DataError

__all__ = ["boxcar", "block_mean"]


def _uniform(block: np.ndarray, size: int) -> np.ndarray:
    return ndimage.uniform_filter(block, size=size, mode="nearest")


def boxcar(array: da.Array, size: int = 3) -> da.Array:
    """``size × size`` boxcar (mean) filter, chunk-wise with overlap.

    Equals :func:`scipy.ndimage.uniform_filter` with ``mode="nearest"`` on the
    whole array: chunks overlap by ``size // 2`` pixels and the image edges
    repeat their nearest pixel.
    """
    if size < 1 or size % 2 == 0:
        raise DataError(f"boxcar size must be an odd number >= 1, got {size}")
    if size == 1:
        return array
    depth = size // 2
    return array.map_overlap(_uniform, depth=depth, boundary="nearest", size=size, dtype=array.dtype)


def block_mean(block: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping ``factor × factor`` blocks (multilooking); NaN-aware.

    The block's shape must be a multiple of ``factor`` on both axes.
    """
    if factor == 1:
        return block
    h, w = block.shape
    if h % factor or w % factor:
        raise DataError(f"array of shape {block.shape} is not a multiple of the multilook factor {factor}")
    view = block.reshape(h // factor, factor, w // factor, factor)
    if not np.isnan(block).any():
        return view.mean(axis=(1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        return np.nanmean(view, axis=(1, 3))
