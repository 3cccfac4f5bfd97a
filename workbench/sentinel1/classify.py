"""Scene classification: a sea-ice CNN over a preprocessed cube → class raster (COG) + polygons.

:func:`classify_scene` slides the model's patch over the cube with a step of
``stride`` pixels, chunk by chunk (``map_overlap`` gives each chunk the margin
its edge patches need), predicts in batches, and gives each ``stride × stride``
tile the class of the patch centred on it. Pixels whose inputs are NaN (land,
no data) get :data:`NODATA`. :func:`geocode` resamples the radar-geometry
labels onto a regular lon/lat grid (nearest neighbour) for the COG, and
:func:`polygonise` turns that raster into class polygons.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import dask.array as da
import numpy as np
import xarray as xr

from workbench import storage
from workbench.errors import DataError

if TYPE_CHECKING:
    import geopandas as gpd
    import keras

__all__ = ["NODATA", "SceneClassification", "classify_scene", "classify_array", "geocode", "polygonise"]

log = logging.getLogger(__name__)

NODATA = 255


@dataclass
class SceneClassification:
    """Result of :func:`classify_scene`.

    Attributes
    ----------
    labels
        Class per cube pixel (radar geometry, ``uint8``; :data:`NODATA` where no class).
    geocoded
        The labels on a lon/lat grid (EPSG:4326), ready for a COG.
    polygons
        One row per class: ``class_id``, ``class_name``, geometry (EPSG:4326).
    n_patches
        Number of patches the model classified.
    cog, parquet
        Where the raster and polygons were written (``None`` if not written).
    """

    labels: xr.DataArray
    geocoded: xr.DataArray
    polygons: "gpd.GeoDataFrame"
    n_patches: int
    cog: str | None = None
    parquet: str | None = None


def _fill_values(model: "keras.Model", n_bands: int) -> np.ndarray:
    """Per-band value replacing NaN before prediction: the model's training mean (0 after standardising)."""
    try:
        layer = model.get_layer("standardise")
        return np.asarray(layer.mean, dtype=np.float32).reshape(-1)[:n_bands]
    except ValueError:
        return np.zeros(n_bands, dtype=np.float32)


def classify_array(
    block: np.ndarray,
    model: "keras.Model",
    *,
    patch: int,
    stride: int,
    margin: int,
    batch_size: int,
    fill: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Classify one block ``(h + 2·margin, w + 2·margin, bands)``; returns ``(h, w)`` labels and patch count."""
    h, w = block.shape[0] - 2 * margin, block.shape[1] - 2 * margin
    ty, tx = -(-h // stride), -(-w // stride)
    pad_y = ty * stride + 2 * margin - block.shape[0]
    pad_x = tx * stride + 2 * margin - block.shape[1]
    centre_nan = np.isnan(block[margin : margin + h, margin : margin + w]).any(axis=-1)
    data = np.where(np.isnan(block), fill, block).astype(np.float32)
    if pad_y > 0 or pad_x > 0:
        data = np.pad(data, ((0, max(pad_y, 0)), (0, max(pad_x, 0)), (0, 0)), mode="edge")
    from numpy.lib.stride_tricks import sliding_window_view

    windows = sliding_window_view(data, (patch, patch), axis=(0, 1))[::stride, ::stride][:ty, :tx]
    patches = np.ascontiguousarray(windows.reshape(ty * tx, data.shape[2], patch, patch).transpose(0, 2, 3, 1))
    classes = np.empty(len(patches), dtype=np.uint8)
    for start in range(0, len(patches), batch_size):
        probs = model.predict_on_batch(patches[start : start + batch_size])
        classes[start : start + batch_size] = np.argmax(np.asarray(probs), axis=-1)
    tiles = classes.reshape(ty, tx)
    labels = np.repeat(np.repeat(tiles, stride, axis=0), stride, axis=1)[:h, :w]
    labels[centre_nan] = NODATA
    return labels, len(patches)


def geocode(
    labels: xr.DataArray, latitude: np.ndarray, longitude: np.ndarray, *, spacing_m: float, n_gcps: int = 12
) -> xr.DataArray:
    """Nearest-neighbour resampling of radar-geometry labels onto a lon/lat grid (EPSG:4326).

    GDAL warps with ground control points taken from the per-pixel lat/lon on an
    ``n_gcps × n_gcps`` grid (polynomial GCP transform); cells outside the swath
    get :data:`NODATA`.
    """
    import rioxarray  # noqa: F401 - .rio accessor
    from affine import Affine
    from rasterio.control import GroundControlPoint
    from rasterio.warp import Resampling, reproject

    lat = np.asarray(latitude, dtype=np.float64)
    lon = np.asarray(longitude, dtype=np.float64)
    if lat.shape != labels.shape or lon.shape != labels.shape:
        raise DataError(f"latitude/longitude {lat.shape} do not match the labels {labels.shape}")
    if not (np.isfinite(lat).any() and np.isfinite(lon).any()):
        raise DataError("the cube has no finite latitude/longitude")
    h, w = labels.shape
    gcps = [
        GroundControlPoint(row=r + 0.5, col=c + 0.5, x=lon[r, c], y=lat[r, c])
        for r in np.unique(np.linspace(0, h - 1, min(n_gcps, h)).round().astype(int))
        for c in np.unique(np.linspace(0, w - 1, min(n_gcps, w)).round().astype(int))
        if np.isfinite(lat[r, c]) and np.isfinite(lon[r, c])
    ]
    if len(gcps) < 3:
        raise DataError("fewer than 3 finite lat/lon points to geocode the labels")
    dlat = spacing_m / 111_320.0
    dlon = dlat / np.cos(np.radians(float(np.nanmean(lat))))
    west, north = float(np.nanmin(lon)), float(np.nanmax(lat))
    nx = int(np.ceil((np.nanmax(lon) - west) / dlon)) + 1
    ny = int(np.ceil((north - np.nanmin(lat)) / dlat)) + 1
    transform = Affine(dlon, 0.0, west - dlon / 2, 0.0, -dlat, north + dlat / 2)
    out = np.full((ny, nx), NODATA, dtype=np.uint8)
    reproject(
        source=np.asarray(labels.values, dtype=np.uint8), destination=out, gcps=gcps, src_crs="EPSG:4326",
        src_nodata=NODATA, dst_transform=transform, dst_crs="EPSG:4326", dst_nodata=NODATA,
        resampling=Resampling.nearest,
    )
    xs = west + dlon * np.arange(nx)
    ys = north - dlat * np.arange(ny)
    result = xr.DataArray(out, dims=("y", "x"), coords={"y": ys, "x": xs}, name="class_id")
    result = result.rio.write_crs("EPSG:4326").rio.write_transform(transform).rio.write_nodata(NODATA)
    result.attrs.update(labels.attrs)
    return result


def polygonise(geocoded: xr.DataArray, class_names: Sequence[str]) -> "gpd.GeoDataFrame":
    """Polygons of each class of a geocoded label raster (one multipolygon row per class)."""
    import geopandas as gpd
    import rasterio.features
    import shapely.geometry

    values = np.asarray(geocoded.values).astype(np.uint8)
    transform = geocoded.rio.transform()
    geoms: list[Any] = []
    ids: list[int] = []
    for geom, value in rasterio.features.shapes(values, mask=values != NODATA, transform=transform):
        geoms.append(shapely.geometry.shape(geom))
        ids.append(int(value))
    frame = gpd.GeoDataFrame({"class_id": ids}, geometry=geoms, crs=4326)
    if len(frame):
        frame = frame.dissolve(by="class_id", as_index=False)
    frame["class_name"] = [class_names[i] if i < len(class_names) else str(i) for i in frame["class_id"]]
    return frame[["class_id", "class_name", "geometry"]]


def classify_scene(
    model: "keras.Model",
    cube: xr.Dataset,
    *,
    class_names: Sequence[str] | None = None,
    stride: int | None = None,
    batch_size: int = 256,
    chunk: int = 256,
    cog_url: str | os.PathLike[str] | None = None,
    polygons_url: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> SceneClassification:
    """Classify every pixel of a cube with a patch CNN.

    Parameters
    ----------
    model
        Keras model taking ``(patch, patch, bands)`` raw patches (with its own standardisation).
    cube
        Preprocessed cube (``sar`` (y, x, band), ``latitude``, ``longitude``).
    class_names
        Names of the model's output classes (default ``"0"``, ``"1"``...; for a model
        saved by :func:`workbench.training.seaice.save_model` its metadata has them).
    stride
        Tile size receiving one prediction (default half the patch size).
    batch_size
        Patches per model call.
    chunk
        Cube chunk size (rounded to a multiple of ``stride``).
    cog_url, polygons_url
        Where to write the geocoded class raster (COG) and the class polygons (GeoParquet).
    storage_options
        fsspec options for ``s3://`` outputs.

    Returns
    -------
    SceneClassification
    """
    if "sar" not in cube:
        raise DataError("cube has no 'sar' variable; build it with workbench.sentinel1.preprocess")
    shape = model.input_shape
    patch, n_bands = int(shape[1]), int(shape[3])
    if cube.sizes["band"] != n_bands:
        raise DataError(f"the model takes {n_bands} bands but the cube has {cube.sizes['band']}")
    n_out = int(model.output_shape[-1])
    class_names = [str(i) for i in range(n_out)] if class_names is None else list(class_names)
    if len(class_names) != n_out:
        raise DataError(f"{len(class_names)} class names for a model with {n_out} outputs")
    stride = patch // 2 if stride is None else int(stride)
    if stride < 1 or stride > patch or (patch - stride) % 2:
        raise DataError(f"stride must be in 1..{patch} with (patch - stride) even, got {stride}")
    margin = (patch - stride) // 2
    chunk = max(stride, chunk - chunk % stride)
    sar = cube["sar"].data
    if not isinstance(sar, da.Array):
        sar = da.from_array(np.asarray(sar))
    sar = sar.rechunk((chunk, chunk, n_bands)).astype(np.float32)
    fill = _fill_values(model, n_bands)
    counts: list[int] = []

    def _block(block: np.ndarray) -> np.ndarray:
        labels, n = classify_array(
            block, model, patch=patch, stride=stride, margin=margin, batch_size=batch_size, fill=fill
        )
        counts.append(n)
        return labels[..., None]

    # an explicit name: dask would otherwise hash the closure, i.e. pickle the whole Keras model
    name = f"classify-scene-{uuid.uuid4().hex}"
    if margin:
        lab = sar.map_overlap(
            _block, depth={0: margin, 1: margin, 2: 0}, boundary={0: "nearest", 1: "nearest", 2: "none"},
            trim=False, dtype=np.uint8, chunks=sar.chunks[:2] + ((1,),), name=name,
        )[..., 0]
    else:
        lab = sar.map_blocks(_block, dtype=np.uint8, chunks=sar.chunks[:2] + ((1,),), name=name)[..., 0]
    values = lab.compute(scheduler="synchronous")  # one model, used from this thread only
    labels = xr.DataArray(
        values, dims=("y", "x"), coords={k: cube.coords[k] for k in ("y", "x") if k in cube.coords}, name="class_id",
        attrs={"class_names": list(class_names), "patch": patch, "stride": stride, "nodata": NODATA},
    )
    spacing = float(cube.attrs.get("pixel_spacing_m", 40.0))
    geocoded = geocode(labels, cube["latitude"].values, cube["longitude"].values, spacing_m=spacing)
    polygons = polygonise(geocoded, class_names)
    result = SceneClassification(labels=labels, geocoded=geocoded, polygons=polygons, n_patches=int(sum(counts)))
    if cog_url is not None:
        result.cog = storage.write_cog(geocoded, cog_url, storage_options=storage_options)
    if polygons_url is not None:
        result.parquet = storage.write_geoparquet(polygons, polygons_url, storage_options=storage_options)
    log.info("classified %d patches of %s", result.n_patches, cube.attrs.get("product", "the cube"))
    return result
