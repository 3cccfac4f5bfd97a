"""Polygons (lon/lat) onto the swath grid (lat/lon per pixel): land masks and ice charts."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import shapely

from workbench import storage
from workbench.errors import DataError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["rasterize_on_swath", "land_mask", "apply_land_mask", "read_polygons"]


def read_polygons(
    polygons: "gpd.GeoDataFrame | str | os.PathLike[str]", *, storage_options: Mapping[str, Any] | None = None
) -> "gpd.GeoDataFrame":
    """A GeoDataFrame in EPSG:4326 from itself or a GeoParquet path/URL."""
    import geopandas as gpd

    frame = polygons if isinstance(polygons, gpd.GeoDataFrame) else storage.read_geoparquet(
        polygons, storage_options=storage_options
    )
    if frame.crs is None:
        raise DataError("polygons have no CRS; expected EPSG:4326 (lon/lat)")
    return frame.to_crs(4326) if frame.crs.to_epsg() != 4326 else frame


def rasterize_on_swath(
    latitude: np.ndarray,
    longitude: np.ndarray,
    polygons: "gpd.GeoDataFrame",
    *,
    column: str | None = None,
    fill: int = -1,
) -> np.ndarray:
    """Value of the polygon holding each pixel centre (later rows win on overlap).

    Parameters
    ----------
    latitude, longitude
        Arrays of the same shape: the pixel centres.
    polygons
        GeoDataFrame in EPSG:4326.
    column
        Integer column to burn; ``None`` burns 1 (a mask).
    fill
        Value of pixels outside every polygon.

    Returns
    -------
    numpy.ndarray
        ``int16`` raster of the shape of ``latitude``.
    """
    lat = np.asarray(latitude, dtype=np.float64)
    lon = np.asarray(longitude, dtype=np.float64)
    if lat.shape != lon.shape:
        raise DataError(f"latitude {lat.shape} and longitude {lon.shape} differ in shape")
    if column is not None and column not in polygons.columns:
        raise DataError(f"polygons have no column {column!r}; columns: {list(polygons.columns)}")
    out = np.full(lat.shape, fill, dtype=np.int16)
    values = np.ones(len(polygons), dtype=np.int16) if column is None else polygons[column].to_numpy(np.int16)
    finite = np.isfinite(lat) & np.isfinite(lon)
    for geom, value in zip(polygons.geometry.values, values):
        if geom is None or geom.is_empty:
            continue
        xmin, ymin, xmax, ymax = geom.bounds
        cand = finite & (lon >= xmin) & (lon <= xmax) & (lat >= ymin) & (lat <= ymax)
        if not cand.any():
            continue
        shapely.prepare(geom)
        inside = shapely.contains_xy(geom, lon[cand], lat[cand])
        idx = np.flatnonzero(cand.ravel())[inside]
        out.ravel()[idx] = value
    return out


def land_mask(cube: "xr.Dataset", land: "gpd.GeoDataFrame") -> np.ndarray:
    """Boolean land mask of a preprocessed cube (True on land)."""
    return rasterize_on_swath(cube["latitude"].values, cube["longitude"].values, land, fill=0) == 1


def apply_land_mask(cube: "xr.Dataset", land: "gpd.GeoDataFrame | str | os.PathLike[str]") -> "xr.Dataset":
    """Set the σ⁰ bands of land pixels to NaN and add a ``land`` variable (y, x)."""
    import xarray as xr

    mask = land_mask(cube, read_polygons(land))
    sar = cube["sar"]
    is_db = xr.DataArray([str(b).endswith("_db") for b in sar["band"].values], dims="band")
    masked = sar.where(~(xr.DataArray(mask, dims=("y", "x")) & is_db))
    out = cube.assign(sar=masked.astype(sar.dtype), land=(("y", "x"), mask))
    out["sar"].attrs.update(sar.attrs)
    return out
