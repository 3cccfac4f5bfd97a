"""Processor ``crop_type_map``: Sentinel-2 L2A time series over a region → crop-type map + per-parcel labels.

1. catalogue search for Sentinel-2 L2A items over the region in the time range, grouped by tile;
2. per tile, the 12 monthly median composites of the agronomic year (Sep–Aug) with the SCL
   cloud mask (:func:`workbench.sentinel2.composite_tile`, chunked on Dask);
3. the per-pixel crop model on the Dask cluster, chunk by chunk — the exported model on the
   workers (embedded) or the model server (remote), both through ``predict_on_batch``;
   pixels outside the region get no data;
4. the per-parcel majority label (:func:`workbench.processors.crops.parcel_majority`) when the
   items have parcels beside them (the samples do), else the class polygons of the map;
5. the product (:func:`workbench.processors.products.publish_product`).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from workbench.processors.base import InputError, Processor, ProcessorInputs, ProgressCallback
from workbench.processors.products import NODATA, OUTPUTS_SCHEMA, Product, publish_product

__all__ = ["PROCESSOR", "classify_pixels", "run"]

log = logging.getLogger(__name__)

VERSION = "1.0.0"

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Options of the crop-type map processor.",
    "properties": {
        "collection": {"type": "string", "minLength": 1, "default": "sentinel-2-l2a",
                       "description": "Catalogue collection of the Sentinel-2 L2A items."},
        "agronomic_year": {"type": "integer", "minimum": 2015, "maximum": 2100,
                           "description": "Year of the September starting the 12 months (default: from start)."},
        "max_cloud_cover": {"type": "number", "minimum": 0, "maximum": 100, "default": 100,
                            "description": "Skip items cloudier than this (percent)."},
        "chunk": {"type": "integer", "minimum": 16, "maximum": 4096, "default": 256,
                  "description": "Chunk size (pixels) of the work on the cluster."},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 65536, "default": 4096,
                       "description": "Pixels per model call (per request to the server in remote mode)."},
        "serving_name": {"type": "string", "minLength": 1, "maxLength": 128,
                         "description": "Name of the serving on the model server (default: the model name)."},
        "publish": {"type": "boolean", "default": True,
                    "description": "Add the product to the catalogue and its polygons to the GeoSPARQL store."},
    },
}


def classify_pixels(block: np.ndarray, *, spec: Any, batch_size: int) -> np.ndarray:
    """Classes of a block of reflectances ``(month, band, y, x)`` on a worker; :data:`NODATA` where any is NaN."""
    from workbench.processors.models import predictor

    n_months, n_bands, ny, nx = block.shape
    series = np.ascontiguousarray(block.transpose(2, 3, 0, 1).reshape(-1, n_months, n_bands), dtype=np.float32)
    ok = np.isfinite(series).all(axis=(1, 2))
    labels = np.full(series.shape[0], NODATA, dtype=np.uint8)
    idx = np.flatnonzero(ok)
    if len(idx):
        model = predictor(spec)
        for start in range(0, len(idx), batch_size):
            take = idx[start:start + batch_size]
            labels[take] = np.asarray(model.predict_on_batch(series[take])).argmax(axis=-1).astype(np.uint8)
    return labels.reshape(1, 1, ny, nx)


def _agronomic_year(inputs: ProcessorInputs) -> int:
    year = inputs.options.get("agronomic_year")
    if year is not None:
        return int(year)
    return inputs.start.year if inputs.start.month >= 9 else inputs.start.year - 1


def _class_names(spec: Any) -> list[str]:
    from workbench.samples.sentinel2 import CROP_CLASSES

    names = list(spec.class_names)
    n_out = int(spec.output_shape[-1])
    if names == [str(i) for i in range(n_out)] and len(CROP_CLASSES) == n_out:
        return list(CROP_CLASSES)
    return names


def _tile_map(comp: Any, spec: Any, inputs: ProcessorInputs, *, client: Any, progress: ProgressCallback,
              tile: str) -> Any | None:
    import dask.array as da
    import rioxarray  # noqa: F401
    import shapely
    import xarray as xr
    from pyproj import Transformer

    from workbench.processors._compute import compute_blocks
    from workbench.processors.models import warm_workers

    refl = comp["reflectance"]
    if tuple(refl.dims) != ("month", "band", "y", "x"):
        raise InputError("model", f"composite of tile {tile} has dims {refl.dims}")
    expected = tuple(spec.input_shape)
    if expected != tuple(refl.shape[:2]):
        raise InputError("model", f"the model takes series of shape {expected}, the composites give {refl.shape[:2]}")
    crs = comp.attrs["crs"]
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    region = shapely.transform(inputs.region, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
    xs, ys = np.meshgrid(comp["x"].values, comp["y"].values)
    shapely.prepare(region)
    inside = shapely.contains_xy(region, xs, ys)
    if not inside.any():
        return None
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    ysl, xsl = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    sub = refl.isel(y=ysl, x=xsl)
    keep = xr.DataArray(inside[ysl, xsl], dims=("y", "x"))
    sub = sub.where(keep)
    chunk = inputs.options["chunk"]
    data = sub.data if isinstance(sub.data, da.Array) else da.from_array(np.asarray(sub.data))
    data = data.rechunk((-1, -1, chunk, chunk)).astype(np.float32)
    token = f"crop-classify-{tile}-{uuid.uuid4().hex[:8]}"
    lab = data.map_blocks(classify_pixels, spec=spec, batch_size=inputs.options["batch_size"], dtype=np.uint8,
                          chunks=((1,), (1,)) + data.chunks[2:], name=token)
    warm_workers(spec, client=client)
    labels = compute_blocks(lab, client=client, progress=progress, message=f"classify tile {tile}")[0, 0]
    out = xr.DataArray(labels, dims=("y", "x"), coords={"y": sub["y"].values, "x": sub["x"].values}, name="crop")
    return out.rio.write_crs(crs).rio.write_nodata(NODATA)


def run(inputs: ProcessorInputs, *, out_dir: Path, progress: ProgressCallback | None = None,
        client: Any = None) -> Product:
    """Run the crop-type map processor (see the module docstring)."""
    import geopandas as gpd
    import pandas as pd

    from workbench import catalog, storage
    from workbench.cluster import get_client
    from workbench.processors._compute import scaled
    from workbench.processors.crops import class_colors, parcel_majority
    from workbench.processors.models import resolve_model
    from workbench.samples.sentinel2 import find_sample_parcels
    from workbench.sentinel1.classify import polygonise
    from workbench.sentinel2.load import group_by_tile
    from workbench.sentinel2.tiles import composite_tile

    opts = inputs.options
    report = scaled(progress, 0.0, 1.0)
    report(0.0, "searching the catalogue")
    year = _agronomic_year(inputs)
    items = catalog.search(opts["collection"], inputs.bbox, inputs.start, inputs.end,
                           max_cloud_cover=opts["max_cloud_cover"])
    import shapely.geometry

    items = [i for i in items if i.geometry is not None
             and shapely.geometry.shape(i.geometry).intersects(inputs.region)]
    if not items:
        raise InputError("region", f"no {opts['collection']} item of the catalogue meets the region "
                                   f"{list(np.round(inputs.bbox, 4))} between {inputs.start} and {inputs.end}")
    spec = resolve_model(inputs.model, mode=inputs.mode, serving_url=inputs.serving_url, api_key=inputs.api_key,
                         serving_name=opts.get("serving_name"))
    if len(spec.input_shape) != 2:
        raise InputError("model", f"{spec.name or spec.path} is not a pixel time-series model "
                                  f"(input shape {spec.input_shape})")
    names = _class_names(spec)
    colors = class_colors(len(names))
    client = client or get_client()
    groups = group_by_tile(items)
    report(0.03, f"{len(items)} items on {len(groups)} tile(s); agronomic year {year}")
    work = Path(out_dir).absolute() / f".composites-{uuid.uuid4().hex[:8]}"
    maps, parcels_out, used = {}, [], []
    parcels_path = find_sample_parcels(items)
    parcels = storage.read_geoparquet(parcels_path) if parcels_path else None
    span = 0.8 / len(groups)
    try:
        for k, (tile, tile_items) in enumerate(sorted(groups.items())):
            lo = 0.05 + k * span
            report(lo, f"monthly composites of tile {tile} ({len(tile_items)} items)")
            url = composite_tile(tile_items, str(work / f"{tile}.zarr"), agronomic_year=year,
                                 chunk=opts["chunk"])
            comp = storage.open_zarr(url)
            labels = _tile_map(comp, spec, inputs, client=client, progress=scaled(progress, lo + span / 2, lo + span),
                               tile=tile)
            if labels is None:
                continue
            labels = labels.load()
            maps[tile] = labels
            clearest = min(tile_items, key=lambda i: (i.properties.get("eo:cloud_cover", 100.0), i.id))
            used.extend(tile_items)
            if parcels is not None and "tile" in parcels.columns:
                mine = parcels[parcels["tile"] == tile]
                region_utm = gpd.GeoSeries([inputs.region], crs=4326).to_crs(mine.crs).iloc[0]
                mine = mine[mine.intersects(region_utm)]
                if len(mine):
                    labelled = parcel_majority(labels, mine, class_names=names)
                    labelled = labelled[labelled["predicted_id"] >= 0]
                    labelled["image_id"] = clearest.id
                    parcels_out.append(labelled.to_crs(4326))
                    continue
            poly = polygonise(labels, names).set_crs(labels.rio.crs, allow_override=True).to_crs(4326)
            poly["image_id"] = clearest.id
            parcels_out.append(poly)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if not maps:
        raise InputError("region", "no pixel of the tiles found lies inside the region")
    report(0.86, "mosaic")
    if len(maps) == 1:
        mosaic = next(iter(maps.values()))
    else:
        from rioxarray.merge import merge_arrays

        crs0 = next(iter(maps.values())).rio.crs
        mosaic = merge_arrays([m if m.rio.crs == crs0 else m.rio.reproject(crs0, nodata=NODATA)
                               for m in maps.values()], nodata=NODATA)
    mosaic = mosaic.astype(np.uint8).rio.write_nodata(NODATA)
    polygons = gpd.GeoDataFrame(pd.concat(parcels_out, ignore_index=True), geometry="geometry", crs=4326)
    return publish_product(
        processor=PROCESSOR, inputs=inputs, model=spec, raster=mosaic, polygons=polygons, class_names=names,
        class_colors=colors, source_items=used, out_dir=out_dir, rdf_kind="crop_parcels", publish=opts["publish"],
        progress=scaled(progress, 0.88, 1.0),
    )


PROCESSOR = Processor(
    id="crop_type_map",
    title="Crop-type map from Sentinel-2 time series",
    description=(
        "Builds the 12 monthly median composites of the agronomic year from the Sentinel-2 L2A items of the "
        "catalogue over the region, classifies every pixel with a crop model from the registry (embedded) or the "
        "model server (remote), labels each parcel with its majority class, and publishes a crop map: a COG of "
        "classes, parcel labels (GeoParquet), a quicklook, an HTML map and a STAC item."
    ),
    version=VERSION,
    options_schema=OPTIONS_SCHEMA,
    outputs_schema=OUTPUTS_SCHEMA,
    run=run,
    keywords=("sentinel-2", "crop type", "food security", "time series"),
)
