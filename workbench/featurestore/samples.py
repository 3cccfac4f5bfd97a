"""Small sample feature data for the feature-store and experiments notebooks.

Pixel time series of crop fields (12 monthly composites of the ten
Sentinel-2 bands over the agronomic year) built with the phenology model of
:mod:`workbench.samples.sentinel2`, on a few tiles, with per-pixel tabular
NDVI features. Pure computation: returns a DataFrame and an array.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from workbench.errors import DataError

__all__ = ["crop_pixel_samples", "MONTH_DAYS"]

# mid-month day of the agronomic year (days since 1 September), September to August
MONTH_DAYS = np.array([15, 45, 76, 106, 137, 168, 196, 227, 257, 288, 318, 349], dtype=np.float64)


def crop_pixel_samples(
    *,
    n_pixels: int = 2000,
    tiles: Sequence[str] = ("33TWM", "33TWN", "33UVP", "33UWP"),
    crops: Sequence[int] = (0, 1, 4, 5),
    seed: int = 0,
    start_id: int = 0,
    noise: float = 0.02,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Simulated crop pixels: a table of keys, tabular features and labels, and their monthly series.

    Parameters
    ----------
    n_pixels
        Number of pixels.
    tiles
        Sentinel-2 tile ids the pixels are spread over (round robin).
    crops
        Crop class indices of :data:`workbench.samples.sentinel2.CROP_CLASSES` used;
        the label is the position in this list.
    seed
        Random seed.
    start_id
        First ``pixel_id``.
    noise
        Standard deviation of the reflectance noise.

    Returns
    -------
    frame
        Columns ``pixel_id``, ``tile``, ``observed`` (datetime), ``ndvi_mean``, ``ndvi_max``,
        ``ndvi_peak_month``, ``noise_feature`` (uninformative), ``label``.
    series
        ``(n_pixels, 12, 10)`` float32 reflectance, months September..August, bands B02..B12.
    """
    from workbench.samples.sentinel2 import crop_reflectance, vegetation_curve

    if isinstance(n_pixels, bool) or not isinstance(n_pixels, int) or n_pixels < 1:
        raise DataError(f"n_pixels must be a positive integer, got {n_pixels!r}")
    if not tiles or not crops:
        raise DataError("tiles and crops must be non-empty")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(crops), n_pixels)
    series = np.empty((n_pixels, len(MONTH_DAYS), 10), dtype=np.float32)
    for i, crop in enumerate(crops):
        rows = np.nonzero(labels == i)[0]
        if not len(rows):
            continue
        shift = rng.normal(0, 8, (len(rows), 1))
        scale = rng.uniform(0.8, 1.1, (len(rows), 1))
        veg = vegetation_curve(int(crop), MONTH_DAYS[None, :], shift=shift, scale=scale)
        series[rows] = crop_reflectance(int(crop), np.broadcast_to(MONTH_DAYS, veg.shape), veg)
    series += rng.normal(0, noise, series.shape).astype(np.float32)
    red, nir = series[..., 2], series[..., 6]
    ndvi = (nir - red) / np.clip(nir + red, 1e-3, None)
    ids = np.arange(start_id, start_id + n_pixels)
    frame = pd.DataFrame(
        {
            "pixel_id": ids.astype("int64"),
            "tile": np.asarray(list(tiles), dtype=object)[ids % len(tiles)].astype(str),
            "observed": pd.Timestamp("2024-08-31") + pd.to_timedelta(rng.integers(0, 30, n_pixels), "D"),
            "ndvi_mean": ndvi.mean(axis=1).astype("float32"),
            "ndvi_max": ndvi.max(axis=1).astype("float32"),
            "ndvi_peak_month": ndvi.argmax(axis=1).astype("int64"),
            "noise_feature": rng.random(n_pixels).astype("float32"),
            "label": labels.astype("int64"),
        }
    )
    return frame, series
