"""A processor's product: COG + polygons + quicklook + HTML map + STAC item, published to the catalogues.

:func:`publish_product` writes, under ``out_dir``:

* ``<id>.tif`` — Cloud-Optimised GeoTIFF of ``uint8`` classes (255 = no data) with a colour
  table and overviews (nearest, so overviews hold classes too);
* ``<id>_polygons.parquet`` — the class polygons (GeoParquet, with ``image_id``);
* ``<id>_quicklook.png`` — the classes in their colours;
* ``<id>_map.html`` — a folium map of the product (no web tiles: it works offline);
* ``<id>_item.json`` — the STAC item, with the ``processing:`` extension and the provenance
  (processor and version, model name and version, mode, input item ids, parameters);

then (``publish=True``) adds the item to the product collection of the local catalogue
(atomically, under the catalogue's lock) and maps the polygons to RDF with the shipped
ontologies and mappings — each observation linked to its source image by ``hasImageID`` —
into the GeoSPARQL store (``<project_dir>/workbench-data/rdf-store``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import geopandas as gpd
    import pystac
    import xarray as xr

    from workbench.processors.base import Processor, ProcessorInputs
    from workbench.processors.models import ModelSpec

__all__ = [
    "NODATA",
    "OUTPUTS_SCHEMA",
    "PRODUCT_COLLECTIONS",
    "Product",
    "load_product",
    "product_store_path",
    "publish_product",
    "with_product_store",
    "write_class_cog",
    "write_quicklook",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

NODATA = 255
#: Catalogue collection of each processor's products (``workbench search <collection>``).
PRODUCT_COLLECTIONS: dict[str, str] = {"sea_ice_chart": "sea-ice-charts", "crop_type_map": "crop-type-maps"}
PROCESSING_EXT = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
CLASSIFICATION_EXT = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"

_path = {"type": "string", "description": "Local path of the file"}
OUTPUTS_SCHEMA: dict[str, dict[str, Any]] = {
    "product": {
        "title": "Product",
        "description": "Paths of the product's files and its metadata.",
        "schema": {
            "type": "object",
            "required": ["id", "cog", "polygons", "quicklook", "map_html", "stac_item", "bbox", "class_names"],
            "properties": {
                "id": {"type": "string"},
                "collection": {"type": "string"},
                "cog": {**_path, "contentMediaType": "image/tiff; application=geotiff; profile=cloud-optimized"},
                "polygons": {**_path, "contentMediaType": "application/vnd.apache.parquet"},
                "quicklook": {**_path, "contentMediaType": "image/png"},
                "map_html": {**_path, "contentMediaType": "text/html"},
                "stac_item": {**_path, "contentMediaType": "application/geo+json"},
                "rdf": {**_path, "contentMediaType": "application/n-triples"},
                "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                "class_names": {"type": "array", "items": {"type": "string"}},
                "class_colors": {"type": "array", "items": {"type": "string"}},
                "class_pixels": {"type": "object", "additionalProperties": {"type": "integer"}},
                "source_items": {"type": "array", "items": {"type": "string"}},
                "model": {"type": "object"},
            },
        },
    },
}


@dataclass
class Product:
    """The files and metadata of one processor run (see the module docstring)."""

    id: str
    cog: str
    polygons: str
    quicklook: str
    map_html: str
    stac_item: str
    bbox: list[float]
    class_names: list[str]
    class_colors: list[str]
    collection: str = ""
    rdf: str | None = None
    class_pixels: dict[str, int] = field(default_factory=dict)
    source_items: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``product`` output of the OGC API)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Product:
        """Inverse of :meth:`to_dict`."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _colormap(colors: Sequence[str]) -> dict[int, tuple[int, int, int, int]]:
    cmap = {i: (0, 0, 0, 0) for i in range(256)}
    for i, c in enumerate(colors):
        cmap[i] = (*_rgb(c), 255)
    return cmap


def write_class_cog(raster: xr.DataArray, path: str | Path, *, colors: Sequence[str]) -> str:
    """Write ``uint8`` classes as a COG with a colour table and nearest-neighbour overviews, atomically."""
    import rasterio
    import rasterio.shutil
    import rioxarray  # noqa: F401
    from rasterio.enums import Resampling

    values = np.asarray(raster.values, dtype=np.uint8)
    if values.ndim != 2:
        raise ValueError(f"the class raster must be 2-D, got shape {values.shape}")
    crs = raster.rio.crs
    transform = raster.rio.transform()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        src = Path(tmp) / "src.tif"
        profile = dict(driver="GTiff", width=values.shape[1], height=values.shape[0], count=1, dtype="uint8",
                       crs=crs, transform=transform, nodata=NODATA, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", photometric="palette")
        with rasterio.open(src, "w", **profile) as dst:
            dst.write(values, 1)
            dst.write_colormap(1, _colormap(colors))
            factors = [f for f in (2, 4, 8, 16, 32) if min(values.shape) // f >= 8]
            if factors:
                dst.build_overviews(factors, Resampling.nearest)
                dst.update_tags(ns="rio_overview", resampling="nearest")
        staged = Path(tmp) / "cog.tif"
        rasterio.shutil.copy(src, staged, driver="COG", compress="DEFLATE", overviews="FORCE_USE_EXISTING",
                             blocksize=256)
        os.replace(staged, path)
    return str(path)


def write_quicklook(raster: xr.DataArray, path: str | Path, *, colors: Sequence[str], max_size: int = 1024) -> str:
    """Write the classes as an RGBA PNG (no data transparent), at most ``max_size`` pixels a side, atomically."""
    import matplotlib.image

    values = np.asarray(raster.values, dtype=np.uint8)
    step = max(1, int(np.ceil(max(values.shape) / max_size)))
    values = values[::step, ::step]
    lut = np.zeros((256, 4), dtype=np.uint8)
    for i, c in enumerate(colors):
        lut[i] = (*_rgb(c), 255)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.png")
    matplotlib.image.imsave(tmp, lut[values])
    os.replace(tmp, path)
    return str(path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _folium_map(raster: xr.DataArray, polygons: gpd.GeoDataFrame, *, colors: Sequence[str],
                class_names: Sequence[str], region: Any, title: str) -> Any:
    import folium
    import shapely.geometry

    ll = raster if raster.rio.crs and raster.rio.crs.to_epsg() == 4326 else raster.rio.reproject(
        "EPSG:4326", nodata=NODATA)
    values = np.asarray(ll.values, dtype=np.uint8)
    lut = np.zeros((256, 4), dtype=np.uint8)
    for i, c in enumerate(colors):
        lut[i] = (*_rgb(c), 255)
    west, south, east, north = ll.rio.bounds()
    fmap = folium.Map(tiles=None, control_scale=True)
    folium.raster_layers.ImageOverlay(lut[values], bounds=[[south, west], [north, east]], opacity=0.8,
                                      name=title).add_to(fmap)
    folium.GeoJson(shapely.geometry.mapping(region), name="region",
                   style_function=lambda _: {"color": "#d62728", "fill": False, "weight": 2}).add_to(fmap)
    if len(polygons):
        shown = polygons.to_crs(4326)
        fields = [c for c in ("class_name", "predicted_name", "parcel_id", "image_id") if c in shown.columns]
        folium.GeoJson(shown[[*fields, "geometry"]].to_json(), name="polygons",
                       style_function=lambda _: {"color": "#333333", "weight": 0.5, "fillOpacity": 0.0},
                       tooltip=folium.GeoJsonTooltip(fields=fields) if fields else None).add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]])
    legend = "".join(
        f'<div><span style="background:{c};width:12px;height:12px;display:inline-block"></span> {n}</div>'
        for n, c in zip(class_names, colors)
    )
    fmap.get_root().html.add_child(folium.Element(
        '<div style="position:fixed;bottom:20px;left:20px;z-index:9999;background:white;padding:6px;'
        f'font-size:11px">{legend}</div>'
    ))
    folium.LayerControl().add_to(fmap)
    return fmap


def product_store_path(settings: Any = None) -> Path:
    """Directory of the GeoSPARQL store the products are loaded into."""
    from workbench.config import load_settings

    settings = settings or load_settings()
    return Path(settings.project_dir) / "workbench-data" / "rdf-store"


def with_product_store(func: Callable[[Any], T], path: str | Path | None = None) -> T:
    """Call ``func(store)`` on the products' :class:`~workbench.linked.store.GeoStore` and close the store.

    The on-disk store admits one process at a time and stays locked while the store
    object lives, so it is opened for the call only, under an exclusive file lock that
    serialises the writers (processor runs) and the readers
    (:func:`workbench.catalog.semantic.semantic_search`) of every process. ``func`` must
    not keep the store (return plain results).
    """
    import gc

    from workbench.linked.store import GeoStore

    path = Path(path) if path is not None else product_store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            store = GeoStore(path)
            try:
                result = func(store)
                store.flush()
            finally:
                del store
                gc.collect()  # pyoxigraph releases the store's files when the object goes
            return result
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _rdf(polygons: gpd.GeoDataFrame, *, kind: str, product_id: str, out_dir: Path) -> tuple[Path, int]:
    """Map the product's polygons to N-Triples with the shipped mapping; returns (file, n features)."""
    import geopandas as gpd
    import pandas as pd

    from workbench.linked.mapping import load_mapping, map_to_file
    from workbench.linked.products import ice_chart_frame, parcel_frame

    adapt = ice_chart_frame if kind == "sea_ice_chart" else parcel_frame
    parts = []
    for image_id, group in polygons.groupby("image_id", sort=True):
        frame = adapt(gpd.GeoDataFrame(group, geometry="geometry", crs=polygons.crs), image_id=str(image_id))
        frame["id"] = [f"{product_id}_{i}" for i in range(sum(len(p) for p in parts), sum(len(p) for p in parts) + len(frame))]
        parts.append(frame)
    frame = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=polygons.crs).to_crs(4326)
    frame = frame[~frame.geometry.is_empty & frame.geometry.notna()]
    mapping_file = Path(__file__).resolve().parent.parent / "linked" / "mappings" / f"{kind}.rml.ttl"
    source = out_dir / f"{product_id}_rdf_source.parquet"
    frame.to_parquet(source)
    out = out_dir / f"{product_id}.nt"
    map_to_file(load_mapping(mapping_file, source=source), out, invalid="repair", dask=False)
    source.unlink(missing_ok=True)
    return out, len(frame)


def _stac_item(product: Product, *, processor: Processor, inputs: ProcessorInputs, model: ModelSpec,
               source_items: Sequence[pystac.Item], geometry: Any, created: dt.datetime,
               epsg: int | None) -> pystac.Item:
    import pystac
    import shapely.geometry

    import workbench

    start = dt.datetime.combine(inputs.start, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(inputs.end, dt.time.max, tzinfo=dt.UTC)
    params = inputs.to_raw()
    params.pop("region", None)
    item = pystac.Item(
        id=product.id,
        geometry=shapely.geometry.mapping(geometry),
        bbox=list(geometry.bounds),
        datetime=None,
        start_datetime=start,
        end_datetime=end,
        properties={
            "title": f"{processor.title} {inputs.start}..{inputs.end}",
            "created": created.isoformat(),
            "processing:level": "L4",
            "processing:facility": "ExtremeEarth Workbench",
            "processing:datetime": created.isoformat(),
            "processing:software": {"workbench": getattr(workbench, "__version__", "0"),
                                    processor.id: processor.version},
            "processing:lineage": (
                f"{processor.id} {processor.version} on {len(source_items)} input item(s) with model "
                f"{model.name} v{model.version} ({inputs.mode})"
            ),
            "workbench:processor": processor.id,
            "workbench:processor_version": processor.version,
            "workbench:model": model.provenance(),
            "workbench:input_items": [i.id for i in source_items],
            "workbench:input_collections": sorted({i.collection_id or "" for i in source_items}),
            "workbench:parameters": params,
            "workbench:region": json.loads(json.dumps(shapely.geometry.mapping(inputs.region))),
            "workbench:class_pixels": product.class_pixels,
        },
        stac_extensions=[PROCESSING_EXT, CLASSIFICATION_EXT],
        collection=product.collection,
    )
    if epsg:
        item.properties["proj:code"] = f"EPSG:{epsg}"
    classes = [{"value": i, "name": n, "color_hint": c.lstrip("#").upper()}
               for i, (n, c) in enumerate(zip(product.class_names, product.class_colors))]
    item.add_asset("cog", pystac.Asset(
        href=product.cog, media_type=pystac.MediaType.COG, roles=["data"], title="classes",
        extra_fields={"classification:classes": classes, "nodata": NODATA}))
    item.add_asset("polygons", pystac.Asset(href=product.polygons, media_type="application/vnd.apache.parquet",
                                            roles=["data"], title="class polygons (GeoParquet)"))
    item.add_asset("thumbnail", pystac.Asset(href=product.quicklook, media_type=pystac.MediaType.PNG,
                                             roles=["thumbnail", "overview"], title="quicklook"))
    item.add_asset("map", pystac.Asset(href=product.map_html, media_type="text/html", roles=["visual"],
                                       title="interactive map"))
    if product.rdf:
        item.add_asset("rdf", pystac.Asset(href=product.rdf, media_type="application/n-triples", roles=["metadata"],
                                           title="polygons as GeoSPARQL RDF"))
    for source in source_items:
        href = source.get_self_href()
        if href:
            item.add_link(pystac.Link(rel="derived_from", target=href, media_type="application/json",
                                      title=source.id))
    return item


def publish_product(
    *,
    processor: Processor,
    inputs: ProcessorInputs,
    model: ModelSpec,
    raster: xr.DataArray,
    polygons: gpd.GeoDataFrame,
    class_names: Sequence[str],
    class_colors: Sequence[str],
    source_items: Sequence[pystac.Item],
    out_dir: str | Path,
    rdf_kind: str,
    publish: bool = True,
    progress: Callable[[float, str], None] | None = None,
    store_path: str | Path | None = None,
) -> Product:
    """Write a product's files and publish it (see the module docstring).

    Parameters
    ----------
    processor, inputs, model
        What ran, on what, with which model (provenance).
    raster
        ``uint8`` class raster with a CRS (rioxarray), :data:`NODATA` where no class.
    polygons
        Polygons with an ``image_id`` column (the source item of each).
    class_names, class_colors
        One name and ``#rrggbb`` colour per class value.
    source_items
        The catalogue items read.
    out_dir
        Folder of the files (created).
    rdf_kind
        ``sea_ice_chart`` or ``crop_parcels`` (the shipped mapping to use).
    publish
        Add the STAC item to the catalogue and the RDF to the store.
    progress
        Progress callback (0–1, message).
    store_path
        GeoSPARQL store directory (default :func:`product_store_path`).

    Returns
    -------
    Product
    """
    import shapely
    import shapely.geometry

    from workbench import storage
    from workbench.config import load_settings

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction, message)

    created = dt.datetime.now(dt.UTC)
    product_id = f"{processor.id}-{created:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    out = Path(out_dir).absolute() / product_id
    out.mkdir(parents=True, exist_ok=True)
    report(0.0, "writing the COG")
    cog = write_class_cog(raster, out / f"{product_id}.tif", colors=class_colors)
    values = np.asarray(raster.values)
    counts = {name: int((values == i).sum()) for i, name in enumerate(class_names)}
    poly_path = storage.write_geoparquet(polygons.reset_index(drop=True), str(out / f"{product_id}_polygons.parquet"))
    quicklook = write_quicklook(raster, out / f"{product_id}_quicklook.png", colors=class_colors)
    report(0.3, "writing the map")
    fmap = _folium_map(raster, polygons, colors=class_colors, class_names=class_names, region=inputs.region,
                       title=processor.title)
    map_html = out / f"{product_id}_map.html"
    _write_text(map_html, fmap.get_root().render())
    report(0.5, "mapping the polygons to RDF")
    rdf_path, _ = _rdf(polygons, kind=rdf_kind, product_id=product_id, out_dir=out)
    ll = raster if raster.rio.crs.to_epsg() == 4326 else raster.rio.reproject("EPSG:4326", nodata=NODATA)
    footprint = shapely.geometry.box(*ll.rio.bounds()).intersection(inputs.region)
    if footprint.is_empty:
        footprint = inputs.region
    collection = PRODUCT_COLLECTIONS.get(processor.id, f"{processor.id}-products")
    product = Product(
        id=product_id, cog=cog, polygons=poly_path, quicklook=quicklook, map_html=str(map_html),
        stac_item=str(out / f"{product_id}_item.json"), bbox=[float(v) for v in footprint.bounds],
        class_names=list(class_names), class_colors=list(class_colors), collection=collection,
        rdf=str(rdf_path), class_pixels=counts, source_items=[i.id for i in source_items],
        model=model.provenance(),
    )
    item = _stac_item(product, processor=processor, inputs=inputs, model=model, source_items=source_items,
                      geometry=footprint, created=created, epsg=raster.rio.crs.to_epsg())
    _write_text(Path(product.stac_item), json.dumps(item.to_dict(include_self_link=False), indent=1))
    if publish:
        from workbench.catalog.local import add_items

        report(0.7, f"adding the item to the catalogue collection {collection}")
        add_items(load_settings().local_catalog_path, collection, [item],
                  description=f"Products of the {processor.id} processor ({processor.title})")
        report(0.85, "loading the RDF into the GeoSPARQL store")
        with_product_store(lambda store: store.load(rdf_path, format="ntriples", progress=False), store_path)
    report(1.0, f"product {product_id}")
    log.info("product %s written to %s", product_id, out)
    return product


def load_product(path: str | Path) -> Product:
    """A :class:`Product` from its STAC item file (``<id>_item.json``)."""
    import pystac

    item = pystac.Item.from_file(str(path))
    classes = item.assets["cog"].extra_fields.get("classification:classes", [])
    return Product(
        id=item.id, cog=item.assets["cog"].href, polygons=item.assets["polygons"].href,
        quicklook=item.assets["thumbnail"].href, map_html=item.assets["map"].href, stac_item=str(path),
        bbox=list(item.bbox or []), class_names=[c["name"] for c in classes],
        class_colors=[f"#{c['color_hint'].lower()}" for c in classes], collection=item.collection_id or "",
        rdf=item.assets["rdf"].href if "rdf" in item.assets else None,
        class_pixels=dict(item.properties.get("workbench:class_pixels", {})),
        source_items=list(item.properties.get("workbench:input_items", [])),
        model=dict(item.properties.get("workbench:model", {})),
    )
