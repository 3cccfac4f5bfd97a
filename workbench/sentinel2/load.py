"""Load Sentinel-2 L2A STAC items into a lazy ``(time, band, y, x)`` Dask cube (odc-stac).

Works on CDSE-style items (asset keys ``B04_10m``, ``SCL_20m``, ``proj:code``)
and on Earth-Search-style items (``red``/``B04``, ``scl``/``SCL``), from local
paths or ``s3://`` URLs. The only I/O of the package is here.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pystac

from workbench.errors import DataError

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["DEFAULT_BANDS", "asset_key", "item_epsg", "item_tile", "group_by_tile", "load_cube", "scale_offset"]

log = logging.getLogger(__name__)

#: The ten 10 m / 20 m spectral bands used by the crop models.
DEFAULT_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
_ALIASES = {
    "B02": ("blue",), "B03": ("green",), "B04": ("red",), "B05": ("rededge1",), "B06": ("rededge2",),
    "B07": ("rededge3",), "B08": ("nir",), "B8A": ("nir08",), "B11": ("swir16",), "B12": ("swir22",),
    "SCL": ("scl",),
}
_RES_KEY = re.compile(r"^(?P<band>[A-Z0-9]+)_(?P<res>\d+)m$")


def asset_key(item: pystac.Item, band: str) -> str:
    """Key of the asset of ``band`` in ``item``: the finest ``<band>_<res>m``, else ``<band>`` or an alias.

    Raises
    ------
    DataError
        When the item has no asset for the band (e.g. a missing SCL).
    """
    candidates = []
    for key in item.assets:
        m = _RES_KEY.match(key)
        if m and m.group("band") == band:
            candidates.append((int(m.group("res")), key))
    if candidates:
        return min(candidates)[1]
    for key in (band, band.lower(), *_ALIASES.get(band, ())):
        if key in item.assets:
            return key
    raise DataError(
        f"item {item.id!r} has no asset for band {band!r}; its assets are {sorted(item.assets)}"
    )


def item_epsg(item: pystac.Item, key: str | None = None) -> int | None:
    """EPSG code of an item (asset-level first): ``proj:code`` (STAC 1.1) or ``proj:epsg``."""
    sources: list[Mapping[str, Any]] = []
    if key is not None:
        sources.append(item.assets[key].extra_fields)
    sources.append(item.properties)
    for src in sources:
        code = src.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            return int(code.split(":", 1)[1])
        if src.get("proj:epsg") is not None:
            return int(src["proj:epsg"])
    return None


def _asset_resolution(item: pystac.Item, key: str) -> float | None:
    fields = item.assets[key].extra_fields
    transform = fields.get("proj:transform")
    if transform:
        return abs(float(transform[0]))
    if fields.get("gsd"):
        return float(fields["gsd"])
    return None


def item_tile(item: pystac.Item) -> str:
    """Tile name of an item: ``grid:code`` / ``s2:mgrs_tile`` / ``mgrs:*``, else the ``_T..._`` part of its id."""
    props = item.properties
    if props.get("grid:code"):
        return str(props["grid:code"]).removeprefix("MGRS-")
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    if props.get("mgrs:utm_zone") and props.get("mgrs:latitude_band") and props.get("mgrs:grid_square"):
        return f"{props['mgrs:utm_zone']}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}"
    m = re.search(r"_T(\d{2}[A-Z]{3})_", item.id)
    if m:
        return m.group(1)
    raise DataError(f"item {item.id!r}: cannot tell its tile (no grid:code, s2:mgrs_tile or _T..._ in the id)")


def group_by_tile(items: Iterable[pystac.Item]) -> dict[str, list[pystac.Item]]:
    """Items per tile, each list sorted by time."""
    groups: dict[str, list[pystac.Item]] = defaultdict(list)
    for item in items:
        groups[item_tile(item)].append(item)
    return {k: sorted(v, key=lambda i: (i.datetime, i.id)) for k, v in sorted(groups.items())}


def scale_offset(item: pystac.Item, key: str) -> tuple[float, float]:
    """``raster:scale`` / ``raster:offset`` of an asset (STAC 1.1 asset or ``bands`` level, or raster v1).

    Default: the L2A convention of processing baseline 04.00+ (1e-4, -0.1).
    """
    fields = item.assets[key].extra_fields
    scale, offset = fields.get("raster:scale"), fields.get("raster:offset")
    for band in fields.get("bands", []) + fields.get("raster:bands", []):
        scale = band.get("raster:scale", band.get("scale", scale))
        offset = band.get("raster:offset", band.get("offset", offset))
    return (1e-4 if scale is None else float(scale)), (-0.1 if offset is None else float(offset))


def _rio_options(storage_options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """GDAL options and a rasterio AWS session spec that make rasterio read ``s3://`` from the endpoint."""
    from workbench.config import load_settings

    opts = dict(storage_options) if storage_options is not None else load_settings().storage_options()
    gdal: dict[str, Any] = {}
    aws: dict[str, Any] = {}
    endpoint = opts.get("endpoint_url")
    if endpoint:
        scheme, _, host = str(endpoint).partition("://")
        aws["endpoint_url"] = host.rstrip("/")
        gdal["AWS_HTTPS"] = "YES" if scheme == "https" else "NO"
        gdal["AWS_VIRTUAL_HOSTING"] = "FALSE"
    if opts.get("key"):
        aws["aws_access_key_id"] = opts["key"]
    if opts.get("secret"):
        aws["aws_secret_access_key"] = opts["secret"]
    region = (opts.get("client_kwargs") or {}).get("region_name")
    if region:
        aws["region_name"] = region
    return gdal, aws


def _dask_client() -> Any:
    """The current distributed client (its workers need the rasterio settings too), or None."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def load_cube(
    items: Sequence[pystac.Item],
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    crs: str | int | None = None,
    resolution: float | None = None,
    chunk: int = 512,
    storage_options: Mapping[str, Any] | None = None,
) -> "xr.Dataset":
    """Open items lazily as DN and SCL cubes on one grid.

    Parameters
    ----------
    items
        Sentinel-2 L2A items of one tile (or of tiles on one grid).
    bands
        Spectral band names (``B02`` … ``B12``).
    crs, resolution
        Target grid. Required when the items differ in CRS or resolution;
        otherwise the items' own CRS and finest resolution are used.
    chunk
        Spatial chunk size in pixels.
    storage_options
        fsspec-style options (``endpoint_url``, ``key``, ``secret``) for
        ``s3://`` hrefs; default from the workbench settings.

    Returns
    -------
    xarray.Dataset
        ``dn`` ``(time, band, y, x)`` uint16 (0 = no data), ``scl``
        ``(time, y, x)`` uint8, and per-time ``scale`` and ``offset``; lazy
        (Dask), sorted by time.

    Raises
    ------
    DataError
        On no items, a missing band or SCL asset, or items of different CRS or
        resolution without a target grid.
    """
    import odc.stac
    import xarray as xr

    items = sorted(items, key=lambda i: (i.datetime, i.id))
    if not items:
        raise DataError("no items to load: the item list given for this tile/time is empty")
    if not bands:
        raise DataError("bands must name at least one spectral band, e.g. ('B04', 'B08')")
    keys_per_item = [{b: asset_key(item, b) for b in (*bands, "SCL")} for item in items]
    epsgs = {item_epsg(item, keys[bands[0]]) for item, keys in zip(items, keys_per_item)}
    resolutions = {
        _asset_resolution(item, keys[b]) for item, keys in zip(items, keys_per_item) for b in bands
    }
    finest = {_asset_resolution(item, keys[bands[0]]) for item, keys in zip(items, keys_per_item)}
    if crs is None and len(epsgs) > 1:
        raise DataError(
            f"the items are in different CRS ({sorted(str(e) for e in epsgs)}); give a target grid "
            "(crs= and resolution=) or load each tile separately"
        )
    if resolution is None and len(finest) > 1:
        raise DataError(
            f"the items have different resolutions ({sorted(r for r in finest if r)} m for {bands[0]}); "
            "give a target resolution= (and crs=)"
        )
    if crs is None:
        epsg = next(iter(epsgs))
        if epsg is None:
            raise DataError(f"item {items[0].id!r} has no proj:code/proj:epsg; give crs=")
        crs = f"EPSG:{epsg}"
    elif isinstance(crs, int):
        crs = f"EPSG:{crs}"
    if resolution is None:
        known = [r for r in resolutions if r]
        if not known:
            raise DataError("the items carry no proj:transform or gsd; give resolution=")
        resolution = min(known)
    if resolution <= 0:
        raise DataError(f"resolution must be > 0 metres, got {resolution}")

    # odc-stac wants one asset key per band name across items: rename to the band names.
    renamed = []
    for item, keys in zip(items, keys_per_item):
        clone = item.clone()
        clone.assets = {band: item.assets[key].clone() for band, key in keys.items()}
        renamed.append(clone)
    if any(str(a.href).startswith("s3://") for i in renamed for a in i.assets.values()):
        gdal, aws = _rio_options(storage_options)
        odc.stac.configure_rio(cloud_defaults=True, aws=aws, client=_dask_client(), **gdal)
    try:
        ds = odc.stac.load(
            renamed,
            bands=[*bands, "SCL"],
            crs=crs,
            resolution=resolution,
            chunks={"x": chunk, "y": chunk},
            groupby="id",
            preserve_original_order=True,
            resampling={"SCL": "nearest", "*": "nearest"},
            dtype="uint16",
        )
    except (ValueError, KeyError) as exc:
        raise DataError(f"cannot load the items as one cube: {exc}") from exc
    scale = np.array([scale_offset(i, k[bands[0]])[0] for i, k in zip(items, keys_per_item)])
    offset = np.array([scale_offset(i, k[bands[0]])[1] for i, k in zip(items, keys_per_item)])
    dn = xr.concat([ds[b] for b in bands], dim="band").assign_coords(band=list(bands))
    dn = dn.transpose("time", "band", "y", "x")
    out = xr.Dataset(
        {
            "dn": dn,
            "scl": ds["SCL"].astype("uint8"),
            "scale": ("time", scale.astype(np.float32)),
            "offset": ("time", offset.astype(np.float32)),
        },
        attrs={"crs": str(crs), "resolution": float(resolution), "item_ids": [i.id for i in items]},
    )
    return out
