"""Crop-type map processor: a trained model over a tile's monthly composites → map (COG) + per-parcel labels.

* :func:`predict_composite` classifies every pixel of a composite cube
  (chunk by chunk, so a full tile never sits in memory as one tensor);
* :func:`crop_map` writes the per-pixel classes as a COG (``uint8``, 255 = no data);
* :func:`parcel_majority` gives each parcel the majority class of its pixels,
  with the share of pixels that agree, written as GeoParquet by
  :func:`write_parcel_labels`.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from workbench import storage
from workbench.errors import DataError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = [
    "NODATA",
    "load_crop_model",
    "predict_composite",
    "crop_map",
    "parcel_majority",
    "write_parcel_labels",
    "class_colors",
    "crop_map_folium",
]

log = logging.getLogger(__name__)
NODATA = 255


def load_crop_model(
    source: str | os.PathLike[str],
    *,
    version: int | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    project: Any = None,
) -> Any:
    """Load a crop model: a ``.keras`` file, or a model name in the registry (``version``: number, alias, latest).

    The STAR cell is registered on import, so StarRNN models load too.
    """
    import keras

    import workbench.models.crops  # noqa: F401 - registers StarCell

    if not str(source).endswith(".keras"):
        if any(sep in str(source) for sep in ("/", "\\")) or str(source).endswith((".tif", ".h5", ".zip")):
            raise DataError(f"crop model {str(source)!r} must be a .keras file or a registered model name")
        from workbench import registry

        if isinstance(version, str) and not version.isdigit():
            return registry.get_model(str(source), alias=version, project=project).load()
        return registry.get_model(str(source), None if version in (None, "") else int(version), project=project).load()
    with storage.local_copy(source, storage_options=storage_options) as local:
        try:
            return keras.saving.load_model(local)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot load crop model {str(source)!r}: {exc}") from exc


def predict_composite(
    model: Any, composite: "xr.Dataset", *, bands: Sequence[str] | None = None, rows_per_batch: int = 64
) -> "xr.DataArray":
    """Class of every pixel of a composite ``reflectance (month, band, y, x)``.

    Parameters
    ----------
    model
        Keras model taking ``(n, months, bands)`` reflectances.
    composite
        Composite cube (see :func:`workbench.sentinel2.composite_tile`).
    bands
        Bands in the model's order (default: the composite's order).
    rows_per_batch
        Image rows classified per prediction call.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` uint8 classes, :data:`NODATA` where a pixel has no value;
        carries the composite's ``x``/``y`` coordinates and ``crs`` attribute.
    """
    import xarray as xr
    from tqdm.auto import tqdm

    if "reflectance" not in composite:
        raise DataError("the composite has no 'reflectance' variable")
    refl = composite["reflectance"]
    if tuple(refl.dims) != ("month", "band", "y", "x"):
        raise DataError(f"reflectance must have dims (month, band, y, x), got {tuple(refl.dims)}")
    if bands is not None:
        refl = refl.sel(band=list(bands))
    n_months, n_bands, ny, nx = refl.shape
    expected = tuple(model.input_shape[1:])
    if expected != (n_months, n_bands):
        raise DataError(f"the model takes series of shape {expected}, the composite gives {(n_months, n_bands)}")
    out = np.full((ny, nx), NODATA, dtype=np.uint8)
    for r0 in tqdm(range(0, ny, rows_per_batch), desc="crop map", disable=ny <= 4 * rows_per_batch):
        block = np.asarray(refl.isel(y=slice(r0, r0 + rows_per_batch)).values, dtype=np.float32)
        series = block.transpose(2, 3, 0, 1).reshape(-1, n_months, n_bands)
        ok = np.isfinite(series).all(axis=(1, 2))
        labels = np.full(series.shape[0], NODATA, dtype=np.uint8)
        if ok.any():
            probs = model.predict(series[ok], batch_size=4096, verbose=0)
            labels[ok] = np.asarray(probs).argmax(axis=-1).astype(np.uint8)
        out[r0:r0 + block.shape[2]] = labels.reshape(block.shape[2], nx)
    result = xr.DataArray(out, dims=("y", "x"), coords={"y": composite["y"], "x": composite["x"]}, name="crop")
    result.attrs.update(crs=composite.attrs.get("crs", ""), nodata=NODATA, tile=composite.attrs.get("tile", ""))
    return result


def crop_map(
    model: Any,
    composite_url: str | os.PathLike[str],
    out_url: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Classify a composite Zarr store and write the map as a COG; returns ``out_url``."""
    import rioxarray  # noqa: F401 - .rio accessor

    composite = storage.open_zarr(composite_url, storage_options=storage_options)
    labels = predict_composite(model, composite)
    crs = labels.attrs.get("crs")
    if not crs:
        raise DataError(f"composite {composite_url!r} has no 'crs' attribute")
    da = labels.rio.write_crs(crs).rio.write_nodata(NODATA)
    storage.write_cog(da, out_url, storage_options=storage_options)
    return str(out_url)


def parcel_majority(
    labels: "xr.DataArray",
    parcels: "gpd.GeoDataFrame",
    *,
    class_names: Sequence[str] = (),
    label_column: str | None = "crop_id",
) -> "gpd.GeoDataFrame":
    """Majority predicted class per parcel.

    Parameters
    ----------
    labels
        ``(y, x)`` class map from :func:`predict_composite` (or a COG opened
        with rioxarray, band dim squeezed), with a CRS.
    parcels
        Parcels with a ``parcel_id`` column.
    class_names
        Names of the classes (adds ``predicted_name``).
    label_column
        Column of the true class in ``parcels`` (adds ``correct``), or None.

    Returns
    -------
    geopandas.GeoDataFrame
        The parcels with ``n_pixels``, ``predicted_id``, ``predicted_name``,
        ``agreement`` (share of the parcel's pixels in the majority class) and
        ``correct``; parcels without classified pixels get ``predicted_id`` -1.
    """
    import xarray as xr

    from workbench.datasets.pixels import rasterize_parcels

    if "band" in labels.dims:
        labels = labels.squeeze("band", drop=True)
    crs = labels.attrs.get("crs") or (labels.rio.crs.to_string() if hasattr(labels, "rio") and labels.rio.crs else None)
    if not crs:
        raise DataError("the class map has no CRS")
    if "parcel_id" not in parcels.columns:
        raise DataError(f"parcels have no 'parcel_id' column; columns: {list(parcels.columns)}")
    grid = xr.Dataset(coords={"y": labels["y"], "x": labels["x"]}, attrs={"crs": str(crs)})
    frame = parcels.reset_index(drop=True).copy()
    frame["_row"] = np.arange(len(frame))
    _, index = rasterize_parcels(frame, grid, label_column="_row", erode=0)
    values = np.asarray(labels.values)
    ok = (index >= 0) & (values != NODATA)
    n_classes = max(len(class_names), int(values[ok].max()) + 1 if ok.any() else 1)
    counts = np.zeros((len(frame), n_classes), dtype=np.int64)
    np.add.at(counts, (index[ok], values[ok].astype(np.int64)), 1)
    n_pixels = counts.sum(axis=1)
    predicted = np.where(n_pixels > 0, counts.argmax(axis=1), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(n_pixels > 0, counts.max(axis=1) / np.maximum(n_pixels, 1), np.nan)
    frame = frame.drop(columns="_row")
    frame["n_pixels"] = n_pixels
    frame["predicted_id"] = predicted.astype(np.int32)
    if class_names:
        frame["predicted_name"] = [class_names[p] if p >= 0 else None for p in predicted]
    frame["agreement"] = agreement
    if label_column and label_column in frame.columns:
        frame["correct"] = frame[label_column].to_numpy() == predicted
    return frame


def write_parcel_labels(
    frame: "gpd.GeoDataFrame", out_url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write per-parcel labels (GeoParquet, atomic); returns ``out_url``."""
    return storage.write_geoparquet(frame, out_url, storage_options=storage_options)


def class_colors(n_classes: int) -> list[str]:
    """One hex colour per class (matplotlib's tab20 cycle)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    return [to_hex(cmap(i % 20)) for i in range(n_classes)]


def crop_map_folium(
    maps: Mapping[str, str],
    parcels: "gpd.GeoDataFrame | None" = None,
    *,
    class_names: Sequence[str],
    opacity: float = 0.8,
) -> Any:
    """A folium map with one crop-map layer per tile and the per-parcel labels on top.

    Parameters
    ----------
    maps
        Tile → crop-map COG path (local) from :func:`crop_map`.
    parcels
        Output of :func:`parcel_majority` (any CRS), drawn as outlines with a
        tooltip of the true and predicted crop; optional.
    class_names
        Class names (legend and tooltip).
    opacity
        Opacity of the raster layers.
    """
    import folium
    import rioxarray

    if not maps:
        raise DataError("no crop maps to show")
    colors = class_colors(len(class_names))
    rgba = np.zeros((256, 4), dtype=np.uint8)
    for i, c in enumerate(colors):
        rgba[i] = [int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16), 255]
    fmap = folium.Map(tiles=None, control_scale=True)
    folium.TileLayer("OpenStreetMap", name="OpenStreetMap").add_to(fmap)
    bounds = []
    for tile, path in maps.items():
        with storage.local_copy(path) as local:
            da = rioxarray.open_rasterio(local).squeeze("band", drop=True)
            ll = da.rio.reproject("EPSG:4326", nodata=NODATA)
            image = rgba[np.asarray(ll.values, dtype=np.uint8)]
            west, south, east, north = ll.rio.bounds()
        folium.raster_layers.ImageOverlay(image, bounds=[[south, west], [north, east]], opacity=opacity,
                                          name=f"crop map {tile}").add_to(fmap)
        bounds.append((west, south, east, north))
    if parcels is not None and len(parcels):
        shown = parcels.to_crs(4326).copy()
        fields = [c for c in ("parcel_id", "crop_name", "predicted_name", "agreement") if c in shown.columns]
        folium.GeoJson(
            shown[[*fields, "geometry"]].to_json(),
            name="parcels (majority label)",
            style_function=lambda _: {"color": "#222222", "weight": 1, "fillOpacity": 0.0},
            tooltip=folium.GeoJsonTooltip(fields=fields) if fields else None,
        ).add_to(fmap)
    b = np.array(bounds)
    fmap.fit_bounds([[b[:, 1].min(), b[:, 0].min()], [b[:, 3].max(), b[:, 2].max()]])
    legend = "".join(
        f'<div><span style="background:{c};width:12px;height:12px;display:inline-block"></span> {n}</div>'
        for n, c in zip(class_names, colors)
    )
    fmap.get_root().html.add_child(folium.Element(
        f'<div style="position:fixed;bottom:20px;left:20px;z-index:9999;background:white;'
        f'padding:6px;font-size:11px">{legend}</div>'
    ))
    folium.LayerControl().add_to(fmap)
    return fmap
