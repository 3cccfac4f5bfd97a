"""Sentinel-1 GRD → analysis-ready cube (y, x, band = HH_db, HV_db, incidence), lazy with Dask.

Per chunk of the measurement rasters (never a whole band in memory):

1. read the window of digital numbers;
2. σ⁰ = (DN² − η_r·η_a) / A_σ² with the LUTs bilinearly interpolated to each pixel;
3. multilook: mean over ``multilook × multilook`` pixels (10 m GRDH → 40 m for 4);
4. boxcar speckle filter (``boxcar × boxcar``, ``map_overlap`` across chunks);
5. clip at ``floor_db`` and convert to dB.

The incidence angle, latitude and longitude of each output pixel centre are
interpolated from the annotation's geolocation grid.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Mapping, Sequence

import dask.array as da
import numpy as np
import xarray as xr

from workbench import storage
from workbench.errors import DataError
from workbench.sentinel1.calibration import DEFAULT_FLOOR_DB, azimuth_noise, sigma0_linear, to_db
from workbench.sentinel1.filters import block_mean, boxcar
from workbench.sentinel1.safe import Sentinel1Metadata, Window, open_safe, raster_shape, read_metadata, read_window

__all__ = ["preprocess", "write_cube", "open_cube", "output_centres", "BANDS"]

log = logging.getLogger(__name__)

BANDS = ("HH_db", "HV_db", "incidence")


def output_centres(start: int, n_out: int, factor: int) -> np.ndarray:
    """Full-resolution coordinate of the centre of each multilooked pixel."""
    return start + factor * np.arange(n_out, dtype=np.float64) + (factor - 1) / 2.0


def _sigma0_block(
    block: np.ndarray,
    *,
    url: str,
    metadata: Sentinel1Metadata,
    window: Window,
    factor: int,
    storage_options: Mapping[str, Any] | None,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    raw = Window(window.row + y0 * factor, window.col + x0 * factor, (y1 - y0) * factor, (x1 - x0) * factor)
    dn = read_window(url, raw, storage_options=storage_options)
    rows = np.arange(raw.row, raw.row + raw.height, dtype=np.float64)
    cols = np.arange(raw.col, raw.col + raw.width, dtype=np.float64)
    a_sigma = metadata.sigma_nought.at(rows, cols)
    noise = metadata.noise_range.at(rows, cols) * azimuth_noise(metadata.noise_azimuth, rows, cols)
    return block_mean(sigma0_linear(dn, a_sigma, noise), factor).astype(np.float32)


def _grid_block(
    block: np.ndarray,
    *,
    lut: Any,
    window: Window,
    factor: int,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    rows = output_centres(window.row + y0 * factor, y1 - y0, factor)
    cols = output_centres(window.col + x0 * factor, x1 - x0, factor)
    return lut.at(rows, cols).astype(np.float32)


def _check_window(window: Window | None, shape: tuple[int, int], url: str, factor: int) -> Window:
    if window is None:
        window = Window(0, 0, shape[0], shape[1])
    if window.row + window.height > shape[0] or window.col + window.width > shape[1]:
        raise DataError(
            f"window {window} reaches outside measurement raster {url} ({shape[0]} lines × {shape[1]} pixels)"
        )
    height = window.height - window.height % factor
    width = window.width - window.width % factor
    if height == 0 or width == 0:
        raise DataError(f"window {window} is smaller than the multilook factor {factor}")
    return Window(window.row, window.col, height, width)


def preprocess(
    safe_url: str | os.PathLike[str],
    *,
    polarisations: Sequence[str] = ("HH", "HV"),
    window: Window | tuple[int, int, int, int] | None = None,
    multilook: int = 4,
    boxcar_size: int = 3,
    floor_db: float = DEFAULT_FLOOR_DB,
    chunk: int = 256,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build the lazy analysis-ready cube of one GRD product.

    Parameters
    ----------
    safe_url
        The ``.SAFE`` folder, local or ``s3://``.
    polarisations
        Polarisations to calibrate, in band order.
    window
        ``(row, col, height, width)`` in full-resolution lines/pixels; ``None``: the whole image.
        Cropped down to a multiple of ``multilook``.
    multilook
        Block-averaging factor (4: 10 m GRDH pixels → 40 m).
    boxcar_size
        Boxcar filter size on the multilooked grid (odd; 1 disables it).
    floor_db
        σ⁰ floor (dB) applied after noise removal and filtering.
    chunk
        Output chunk size (multilooked pixels) on both axes.
    storage_options
        fsspec options for ``s3://`` (``None``: from the settings).

    Returns
    -------
    xarray.Dataset
        ``sar`` (y, x, band) float32 Dask array with bands ``<POL>_db`` and
        ``incidence``; coordinates ``line``, ``pixel`` (full-resolution centres),
        ``latitude`` and ``longitude`` (y, x).

    Raises
    ------
    DataError
        Missing polarisation or file, malformed XML, window outside the image.
    """
    if multilook < 1:
        raise DataError(f"multilook must be >= 1, got {multilook}")
    if chunk < 1:
        raise DataError(f"chunk must be >= 1, got {chunk}")
    if not polarisations:
        raise DataError("polarisations must name at least one polarisation")
    product = open_safe(str(safe_url), storage_options=storage_options)
    pols = [str(p).upper() for p in polarisations]
    for pol in pols:
        product.pol(pol)
    metas = {pol: read_metadata(product, pol) for pol in pols}
    first = product.pol(pols[0]).measurement
    shape = raster_shape(first, storage_options=storage_options)
    if shape != metas[pols[0]].shape:
        raise DataError(
            f"measurement raster {first} has {shape[0]}×{shape[1]} pixels but its annotation says "
            f"{metas[pols[0]].shape[0]}×{metas[pols[0]].shape[1]}"
        )
    win = _check_window(None if window is None else Window.coerce(window), shape, first, multilook)
    ny, nx = win.height // multilook, win.width // multilook
    template = da.zeros((ny, nx), chunks=(chunk, chunk), dtype=np.float32)

    layers = []
    for pol in pols:
        lin = template.map_blocks(
            _sigma0_block,
            url=product.pol(pol).measurement,
            metadata=metas[pol],
            window=win,
            factor=multilook,
            storage_options=storage_options,
            dtype=np.float32,
            name=f"sigma0-{pol}-{product.name}-{win.row}-{win.col}-{win.height}-{win.width}-{multilook}",
        )
        filtered = boxcar(lin, boxcar_size)
        layers.append(filtered.map_blocks(to_db, floor_db=floor_db, dtype=np.float32))
    meta0 = metas[pols[0]]
    grid_kw = dict(window=win, factor=multilook, dtype=np.float32)
    incidence = template.map_blocks(_grid_block, lut=meta0.incidence, **grid_kw)
    latitude = template.map_blocks(_grid_block, lut=meta0.latitude, **grid_kw)
    longitude = template.map_blocks(_grid_block, lut=meta0.longitude, **grid_kw)
    sar = da.stack(layers + [incidence], axis=-1)

    bands = [f"{p}_db" for p in pols] + ["incidence"]
    coords = {
        "y": np.arange(ny),
        "x": np.arange(nx),
        "band": bands,
        "line": ("y", output_centres(win.row, ny, multilook)),
        "pixel": ("x", output_centres(win.col, nx, multilook)),
        "latitude": (("y", "x"), latitude),
        "longitude": (("y", "x"), longitude),
    }
    spacing = meta0.attrs["range_pixel_spacing"] * multilook
    attrs = {
        "product": product.name,
        "source": product.url,
        "polarisations": pols,
        "window": [win.row, win.col, win.height, win.width],
        "multilook": multilook,
        "boxcar": boxcar_size,
        "floor_db": floor_db,
        "pixel_spacing_m": spacing,
        "mission": meta0.attrs["mission"],
        "start_time": meta0.attrs["start_time"],
        "stop_time": meta0.attrs["stop_time"],
        "processing": "sigma0 = (DN^2 - noise_range*noise_azimuth) / A_sigma^2; multilook; boxcar; dB",
    }
    ds = xr.Dataset({"sar": (("y", "x", "band"), sar)}, coords=coords, attrs=attrs)
    ds["sar"].attrs.update({"long_name": "sigma0 (dB) and incidence angle (deg)"})
    log.info("cube of %s: %d × %d pixels at %.0f m, bands %s", product.name, ny, nx, spacing, bands)
    return ds


def write_cube(
    cube: xr.Dataset, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write a cube to Zarr atomically (chunk by chunk on the current Dask scheduler)."""
    if "sar" not in cube:
        raise DataError("cube has no 'sar' variable; build it with workbench.sentinel1.preprocess")
    with warnings.catch_warnings():  # fixed-length band names: readable by zarr-python, noted as unstable
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
        return storage.write_zarr(cube, url, storage_options=storage_options)


def open_cube(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Open a cube written by :func:`write_cube` (lazy)."""
    cube = storage.open_zarr(url, storage_options=storage_options)
    if "sar" not in cube or cube["sar"].dims != ("y", "x", "band"):
        raise DataError(f"{url} is not a Sentinel-1 cube: expected a 'sar' variable with dims (y, x, band)")
    return cube
