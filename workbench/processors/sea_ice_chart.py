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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.processors.base import InputError, Processor, ProcessorInputs, ProgressCallback
from workbench.processors.products import OUTPUTS_SCHEMA, Product, publish_product

__all__ = ["PROCESSOR", "SEAICE_COLORS", "BlockTask", "classify_block", "run"]

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


@dataclass(frozen=True)
class BlockTask:
    """One block of a scene's classification, self-contained for a Dask worker.

    The block covers cube rows ``y0:y1`` and columns ``x0:x1`` of the region's cut. ``cube``
    is the pickled lazy cube (:func:`workbench.sentinel1.preprocess`, built in the driver with the
    scene's parsed metadata) of the full-resolution window under the block, its patch margin
    (clipped to the cut; ``pads`` rows/columns are added with the edge values, as
    ``map_overlap``'s ``nearest`` boundary does) and the boxcar's margin (clipped to the scene;
    dropped again through ``inner``), so a block needs no other block's data.
    """

    cube: bytes
    inner: tuple[int, int, int, int]
    pads: tuple[int, int, int, int]
    y0: int
    y1: int
    x0: int
    x1: int
    patch: int
    stride: int
    batch_size: int
    fill: tuple[float, ...]


def _span(lo: int, hi: int, margin: int, lim_lo: int, lim_hi: int) -> tuple[int, int, int, int]:
    """``[lo - margin, hi + margin)`` clipped to ``[lim_lo, lim_hi)``, and the missing margins (before, after)."""
    a, b = max(lim_lo, lo - margin), min(lim_hi, hi + margin)
    return a, b, a - (lo - margin), (hi + margin) - b


def _block_task(item: Any, cube: Any, cut: tuple[int, int, int, int], y0: int, y1: int, x0: int, x1: int, *,
                opts: dict[str, Any], patch: int, stride: int, fill: np.ndarray) -> BlockTask:
    """The :class:`BlockTask` of block ``y0:y1, x0:x1`` of the cut ``cut`` of a scene's ``cube``."""
    import cloudpickle

    from workbench.sentinel1.preprocess import preprocess

    margin = (patch - stride) // 2
    r0, r1, c0, c1 = cut
    ya, yb, pad_top, pad_bottom = _span(r0 + y0, r0 + y1, margin, r0, r1)
    xa, xb, pad_left, pad_right = _span(c0 + x0, c0 + x1, margin, c0, c1)
    half = opts["boxcar"] // 2
    pa, pb, _, _ = _span(ya, yb, half, 0, cube.sizes["y"])
    qa, qb, _, _ = _span(xa, xb, half, 0, cube.sizes["x"])
    row, col = (int(v) for v in cube.attrs["window"][:2])
    ml = opts["multilook"]
    window = (row + pa * ml, col + qa * ml, (pb - pa) * ml, (qb - qa) * ml)
    lazy = preprocess(item.assets["safe"].href, window=window, multilook=ml, boxcar_size=opts["boxcar"],
                      chunk=max(pb - pa, qb - qa))
    return BlockTask(cube=cloudpickle.dumps(lazy), inner=(ya - pa, yb - pa, xa - qa, xb - qa),
                     pads=(pad_top, pad_bottom, pad_left, pad_right), y0=y0, y1=y1, x0=x0, x1=x1, patch=patch,
                     stride=stride, batch_size=opts["batch_size"], fill=tuple(float(v) for v in fill))


def classify_block(task: BlockTask, spec: Any, land: Any, region: Any) -> np.ndarray:
    """Labels ``(y1 - y0, x1 - x0)`` of one block, computed on a worker (embedded or remote model)."""
    import pickle

    import dask
    import shapely

    from workbench.processors.models import predictor
    from workbench.sentinel1.classify import classify_array
    from workbench.sentinel1.landmask import rasterize_on_swath

    with dask.config.set(scheduler="synchronous"):
        cube = pickle.loads(task.cube).compute()
    i0, i1, j0, j1 = task.inner
    sar = np.asarray(cube["sar"].values, dtype=np.float32)[i0:i1, j0:j1]
    lat = np.asarray(cube["latitude"].values, dtype=np.float64)[i0:i1, j0:j1]
    lon = np.asarray(cube["longitude"].values, dtype=np.float64)[i0:i1, j0:j1]
    is_db = np.array([str(b).endswith("_db") for b in cube["band"].values])
    if land is not None and len(land):
        on_land = rasterize_on_swath(lat, lon, land, fill=0) == 1
        sar[on_land[:, :, None] & is_db[None, None, :]] = np.nan
    sar[~shapely.contains_xy(region, lon, lat)] = np.nan
    top, bottom, left, right = task.pads
    if top or bottom or left or right:
        sar = np.pad(sar, ((top, bottom), (left, right), (0, 0)), mode="edge")
    labels, _ = classify_array(sar, predictor(spec), patch=task.patch, stride=task.stride,
                               margin=(task.patch - task.stride) // 2, batch_size=task.batch_size,
                               fill=np.asarray(task.fill, dtype=np.float32))
    return labels


def _scene_cube(item: Any, opts: dict[str, Any]) -> tuple[Any, np.ndarray, np.ndarray]:
    """The scene's (lazy) cube and its geolocation grid (numpy: small, read by the cut and the geocoding)."""
    import dask

    from workbench.sentinel1.preprocess import preprocess

    window = item.properties.get("workbench:window")
    cube = preprocess(item.assets["safe"].href, window=tuple(window) if window else None,
                      multilook=opts["multilook"], boxcar_size=opts["boxcar"], chunk=opts["chunk"])
    lat, lon = dask.compute(cube["latitude"].data, cube["longitude"].data, scheduler="threads")
    return cube, np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)


def _region_cut(lat: np.ndarray, lon: np.ndarray, region: Any) -> tuple[int, int, int, int] | None:
    """``(row0, row1, col0, col1)`` of the cube pixels touching the region (None: none does)."""
    import shapely

    shapely.prepare(region)
    inside = shapely.contains_xy(region, lon, lat)
    if not inside.any():
        return None
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


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


def _land(item: Any, opts: dict[str, Any]) -> Any:
    from workbench import storage

    if not opts["mask_land"] or "ice-chart" not in item.assets:
        return None
    chart = storage.read_geoparquet(item.assets["ice-chart"].href)
    if "is_land" not in chart.columns or not chart["is_land"].any():
        return None
    land = chart[chart["is_land"]]
    return land.to_crs(4326) if land.crs is not None and land.crs.to_epsg() != 4326 else land


def _labels(item: Any, cube: Any, cut: tuple[int, int, int, int], spec: Any, inputs: ProcessorInputs, *,
            client: Any, progress: ProgressCallback) -> np.ndarray:
    from workbench.errors import DataError
    from workbench.processors._compute import gather_tasks
    from workbench.processors.models import warm_workers

    opts = inputs.options
    patch, n_bands = int(spec.input_shape[0]), int(spec.input_shape[2])
    if cube.sizes["band"] != n_bands:
        raise InputError("model", f"the model takes {n_bands} bands but the scene's cube has {cube.sizes['band']}")
    stride = opts["stride"] or patch // 2
    if stride > patch or (patch - stride) % 2:
        raise InputError("options.stride", f"must be in 1..{patch} with (patch - stride) even, got {stride}")
    chunk = max(stride, opts["chunk"] - opts["chunk"] % stride)
    fill = np.asarray(spec.fill if spec.fill is not None else np.zeros(n_bands), dtype=np.float32)[:n_bands]
    if fill.shape != (n_bands,):
        raise DataError(f"the model's standardisation has {fill.size} values for {n_bands} bands")
    r0, r1, c0, c1 = cut
    land = _land(item, opts)
    tasks = [_block_task(item, cube, cut, y, min(y + chunk, r1 - r0), x, min(x + chunk, c1 - c0), opts=opts,
                         patch=patch, stride=stride, fill=fill)
             for y in range(0, r1 - r0, chunk) for x in range(0, c1 - c0, chunk)]
    warm_workers(spec, client=client, imports=("workbench.sentinel1.preprocess", "workbench.sentinel1.classify",
                                               "workbench.sentinel1.landmask", "rasterio"))
    futures = [client.submit(classify_block, t, spec, land, inputs.region, pure=False,
                             key=f"seaice-block-{item.id}-{t.y0}-{t.x0}-{uuid.uuid4().hex[:8]}") for t in tasks]
    results = gather_tasks(futures, client=client, progress=progress, message=f"classify {item.id}")
    labels = np.empty((r1 - r0, c1 - c0), dtype=np.uint8)
    for t, block in zip(tasks, results):
        labels[t.y0:t.y1, t.x0:t.x1] = block
    return labels


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
        cube, lat, lon = _scene_cube(item, opts)
        cut = _region_cut(lat, lon, inputs.region)
        if cut is None:
            log.info("scene %s has no pixel inside the region", item.id)
            continue
        labels = _labels(item, cube, cut, spec, inputs, client=client, progress=step)
        da_labels = xr.DataArray(labels, dims=("y", "x"), name="class_id")
        spacing = float(cube.attrs.get("pixel_spacing_m", 40.0))
        r0, r1, c0, c1 = cut
        geo = geocode(da_labels, lat[r0:r1, c0:c1], lon[r0:r1, c0:c1], spacing_m=spacing)
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
