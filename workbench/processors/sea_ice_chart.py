"""Processor ``sea_ice_chart``: Sentinel-1 scenes over a region and time → sea-ice chart product.

1. catalogue search for Sentinel-1 GRD scenes whose footprint meets the region in the time range;
2. per scene, σ⁰ preprocessing (:func:`workbench.sentinel1.preprocess`), the land mask of the
   scene's chart when it has one, and the pixels outside the region set to no data;
3. patch classification chunk by chunk on the Dask cluster — each worker builds the model
   once (:func:`workbench.processors.models.predictor`): the exported Keras model (embedded)
   or a client of the model server (remote), both used through ``predict_on_batch`` by
   :func:`workbench.sentinel1.classify.classify_array`;
4. geocoding to lon/lat, mosaic of the scenes (the latest on top), polygons per scene;
5. the product (:func:`workbench.processors.products.publish_product`).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from workbench.processors.base import InputError, Processor, ProcessorInputs, ProgressCallback
from workbench.processors.products import OUTPUTS_SCHEMA, Product, publish_product

__all__ = ["PROCESSOR", "run", "classify_block", "SEAICE_COLORS"]

log = logging.getLogger(__name__)

VERSION = "1.0.0"

#: Colours of the ice classes (water dark blue → deformed ice orange).
SEAICE_COLORS: dict[str, str] = {
    "water": "#1f4e9c",
    "ice": "#e8f1fa",
    "brash_pancake_ice": "#9ecae1",
    "young_ice": "#6baed6",
    "level_first_year_ice": "#deebf7",
    "deformed_ice": "#fd8d3c",
}

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Options of the sea-ice chart processor.",
    "properties": {
        "collection": {"type": "string", "minLength": 1, "default": "sentinel-1-grd",
                       "description": "Catalogue collection of the Sentinel-1 GRD scenes."},
        "max_scenes": {"type": "integer", "minimum": 1, "maximum": 20, "default": 4,
                       "description": "At most this many scenes (the ones covering most of the region)."},
        "multilook": {"type": "integer", "minimum": 1, "maximum": 16, "default": 4,
                      "description": "Multilook factor (10 m → 40 m for 4)."},
        "boxcar": {"type": "integer", "minimum": 1, "maximum": 15, "default": 3,
                   "description": "Boxcar speckle filter size (odd; 1: none)."},
        "stride": {"type": "integer", "minimum": 0, "maximum": 256, "default": 0,
                   "description": "Pixels per predicted tile (0: half the model's patch)."},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 8192, "default": 256,
                       "description": "Patches per model call (per request to the server in remote mode)."},
        "chunk": {"type": "integer", "minimum": 32, "maximum": 4096, "default": 256,
                  "description": "Chunk size (multilooked pixels) of the work on the cluster."},
        "mask_land": {"type": "boolean", "default": True,
                      "description": "Mask land with the scene's chart when the catalogue item has one."},
        "serving_name": {"type": "string", "minLength": 1, "maxLength": 128,
                         "description": "Name of the serving on the model server (default: the model name)."},
        "publish": {"type": "boolean", "default": True,
                    "description": "Add the product to the catalogue and its polygons to the GeoSPARQL store."},
    },
}


def classify_block(
    block: np.ndarray,
    *,
    spec: Any,
    patch: int,
    stride: int,
    margin: int,
    batch_size: int,
    fill: np.ndarray,
) -> np.ndarray:
    """Classify one overlapping block on a worker (embedded or remote model, same code path)."""
    from workbench.processors.models import predictor
    from workbench.sentinel1.classify import classify_array

    labels, _ = classify_array(
        block, predictor(spec), patch=patch, stride=stride, margin=margin, batch_size=batch_size, fill=fill
    )
    return labels[..., None]


def _region_crop(cube: Any, region: Any) -> Any | None:
    """The cube cut to the rows/columns touching the region, pixels outside it set to NaN (None: no overlap)."""
    import shapely
    import xarray as xr

    lat = np.asarray(cube["latitude"].values, dtype=np.float64)
    lon = np.asarray(cube["longitude"].values, dtype=np.float64)
    shapely.prepare(region)
    inside = shapely.contains_xy(region, lon, lat)
    if not inside.any():
        return None
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    sub = cube.isel(y=slice(int(rows[0]), int(rows[-1]) + 1), x=slice(int(cols[0]), int(cols[-1]) + 1))
    keep = xr.DataArray(inside[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], dims=("y", "x"))
    sar = sub["sar"]
    return sub.assign(sar=sar.where(keep).astype(sar.dtype), region_mask=keep)


def _scenes(inputs: ProcessorInputs, collection: str, max_scenes: int) -> list[Any]:
    import shapely.geometry

    from workbench import catalog

    items = catalog.search(collection, inputs.bbox, inputs.start, inputs.end)
    hits = []
    for item in items:
        if item.geometry is None or "safe" not in item.assets:
            continue
        overlap = shapely.geometry.shape(item.geometry).intersection(inputs.region).area
        if overlap > 0:
            hits.append((overlap, item))
    if not hits:
        raise InputError(
            "region", f"no {collection} scene of the catalogue meets the region {list(np.round(inputs.bbox, 4))} "
            f"between {inputs.start} and {inputs.end}"
        )
    hits.sort(key=lambda h: (-h[0], h[1].id))
    chosen = [item for _, item in hits[:max_scenes]]
    chosen.sort(key=lambda i: (i.datetime or i.common_metadata.start_datetime, i.id))
    return chosen


def _cube(item: Any, opts: dict[str, Any]) -> Any:
    from workbench import storage
    from workbench.sentinel1 import apply_land_mask, preprocess

    window = item.properties.get("workbench:window")
    cube = preprocess(item.assets["safe"].href, window=tuple(window) if window else None,
                      multilook=opts["multilook"], boxcar_size=opts["boxcar"], chunk=opts["chunk"])
    if opts["mask_land"] and "ice-chart" in item.assets:
        chart = storage.read_geoparquet(item.assets["ice-chart"].href)
        if "is_land" in chart.columns and chart["is_land"].any():
            cube = apply_land_mask(cube, chart[chart["is_land"]])
    return cube


def _labels(cube: Any, spec: Any, opts: dict[str, Any], *, client: Any, progress: ProgressCallback,
            name: str) -> np.ndarray:
    import dask.array as da

    from workbench.errors import DataError
    from workbench.processors._compute import compute_blocks

    patch, n_bands = int(spec.input_shape[0]), int(spec.input_shape[2])
    if cube.sizes["band"] != n_bands:
        raise InputError("model", f"the model takes {n_bands} bands but the scene's cube has {cube.sizes['band']}")
    stride = opts["stride"] or patch // 2
    if stride > patch or (patch - stride) % 2:
        raise InputError("options.stride", f"must be in 1..{patch} with (patch - stride) even, got {stride}")
    margin = (patch - stride) // 2
    chunk = max(stride, opts["chunk"] - opts["chunk"] % stride)
    fill = np.asarray(spec.fill if spec.fill is not None else np.zeros(n_bands), dtype=np.float32)[:n_bands]
    if fill.shape != (n_bands,):
        raise DataError(f"the model's standardisation has {fill.size} values for {n_bands} bands")
    sar = cube["sar"].data
    if not isinstance(sar, da.Array):
        sar = da.from_array(np.asarray(sar))
    sar = sar.rechunk((chunk, chunk, n_bands)).astype(np.float32)
    kwargs = dict(spec=spec, patch=patch, stride=stride, margin=margin, batch_size=opts["batch_size"], fill=fill)
    token = f"seaice-classify-{name}-{uuid.uuid4().hex[:8]}"
    if margin:
        lab = sar.map_overlap(
            classify_block, depth={0: margin, 1: margin, 2: 0}, boundary={0: "nearest", 1: "nearest", 2: "none"},
            trim=False, dtype=np.uint8, chunks=sar.chunks[:2] + ((1,),), name=token, **kwargs,
        )
    else:
        lab = sar.map_blocks(classify_block, dtype=np.uint8, chunks=sar.chunks[:2] + ((1,),), name=token, **kwargs)
    return compute_blocks(lab, client=client, progress=progress, message=f"classify {name}")[..., 0]


def run(inputs: ProcessorInputs, *, out_dir: Path, progress: ProgressCallback | None = None,
        client: Any = None) -> Product:
    """Run the sea-ice chart processor (see the module docstring)."""
    import geopandas as gpd
    import pandas as pd
    import rioxarray  # noqa: F401
    import shapely
    import xarray as xr

    from workbench.cluster import get_client
    from workbench.processors._compute import scaled
    from workbench.processors.models import resolve_model
    from workbench.sentinel1.classify import NODATA, geocode, polygonise

    opts = inputs.options
    report = scaled(progress, 0.0, 1.0)
    report(0.0, "searching the catalogue")
    items = _scenes(inputs, opts["collection"], opts["max_scenes"])
    report(0.02, f"{len(items)} scene(s): {', '.join(i.id for i in items)}")
    spec = resolve_model(inputs.model, mode=inputs.mode, serving_url=inputs.serving_url, api_key=inputs.api_key,
                         serving_name=opts.get("serving_name"))
    if len(spec.input_shape) != 3:
        raise InputError("model", f"{spec.name or spec.path} is not a patch model (input shape {spec.input_shape})")
    client = client or get_client()
    report(0.05, f"model {spec.name} v{spec.version} ({inputs.mode})")
    geocoded, frames, used = [], [], []
    span = 0.80 / len(items)
    for k, item in enumerate(items):
        step = scaled(progress, 0.05 + k * span, 0.05 + (k + 1) * span)
        cube = _region_crop(_cube(item, opts), inputs.region)
        if cube is None:
            log.info("scene %s has no pixel inside the region", item.id)
            continue
        labels = _labels(cube, spec, opts, client=client, progress=step, name=item.id)
        da_labels = xr.DataArray(labels, dims=("y", "x"), name="class_id")
        spacing = float(cube.attrs.get("pixel_spacing_m", 40.0))
        geo = geocode(da_labels, cube["latitude"].values, cube["longitude"].values, spacing_m=spacing)
        xs, ys = np.meshgrid(geo["x"].values, geo["y"].values)
        outside = ~shapely.contains_xy(inputs.region, xs, ys)
        geo = geo.where(~outside, NODATA).astype(np.uint8).rio.write_nodata(NODATA)
        poly = polygonise(geo, spec.class_names)
        poly["image_id"] = item.id
        geocoded.append(geo)
        frames.append(poly)
        used.append(item)
    if not used:
        raise InputError("region", "no pixel of the scenes found lies inside the region")
    report(0.87, "mosaic")
    if len(geocoded) == 1:
        mosaic = geocoded[0]
    else:
        from rioxarray.merge import merge_arrays

        mosaic = merge_arrays(list(reversed(geocoded)), nodata=NODATA)  # the latest scene on top
    mosaic = mosaic.astype(np.uint8).rio.write_crs("EPSG:4326").rio.write_nodata(NODATA)
    polygons = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=4326)
    colors = [SEAICE_COLORS.get(n, "#888888") for n in spec.class_names]
    return publish_product(
        processor=PROCESSOR, inputs=inputs, model=spec, raster=mosaic, polygons=polygons,
        class_names=list(spec.class_names), class_colors=colors, source_items=used, out_dir=out_dir,
        rdf_kind="sea_ice_chart", publish=opts["publish"], progress=scaled(progress, 0.88, 1.0),
    )


PROCESSOR = Processor(
    id="sea_ice_chart",
    title="Sea-ice chart from Sentinel-1",
    description=(
        "Classifies the Sentinel-1 SAR scenes of the catalogue that meet the region in the time range with a "
        "sea-ice CNN from the model registry (embedded) or the model server (remote), and publishes an ice chart: "
        "a COG of classes, class polygons (GeoParquet), a quicklook, an HTML map and a STAC item."
    ),
    version=VERSION,
    options_schema=OPTIONS_SCHEMA,
    outputs_schema=OUTPUTS_SCHEMA,
    run=run,
    keywords=("sentinel-1", "sar", "sea ice", "polar"),
)
