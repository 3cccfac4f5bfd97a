"""Reproducible Sentinel-2 L2A-like sample time series for the food-security use case.

The sample mimics what a user gets from the Copernicus Data Space Ecosystem
(CDSE) for a few Sentinel-2 tiles over Slovenia/Austria during one agronomic
year (September to August):

* LPIS-like parcels (rectangular fields separated by one-pixel roads), each
  with one of the 16 crop classes of the ExtremeEarth food-security paper,
  drawn with a realistic, imbalanced class distribution;
* per-crop phenology: a double-logistic vegetation curve (with an autumn
  emergence for winter crops and mowing cuts for grassland) drives the
  reflectance of the ten 10 m / 20 m bands by linear mixing of a soil and a
  vegetation spectrum; every field has its own shifted, scaled curve and every
  pixel its own noise;
* irregular acquisition dates that differ per tile;
* clouds, cloud shadows, thin cirrus and winter snow, written into the SCL band
  with the real scene-classification codes and into the reflectances;
* bands as ``uint16`` DN with the L2A scale/offset (reflectance = DN·1e-4 − 0.1,
  DN 0 = no data), one Cloud-Optimised GeoTIFF per band and date, and one
  CDSE-style STAC 1.1 item per acquisition (``proj:code``, asset keys such as
  ``B04_10m`` and ``SCL_20m``), registered in the local catalogue.

Everything is simulated; only the metadata conventions are real.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pystac

from workbench import storage
from workbench.errors import DataError

__all__ = [
    "CROP_CLASSES",
    "CROP_FREQUENCIES",
    "BANDS",
    "BAND_RESOLUTION",
    "SCL_CLASSES",
    "COLLECTION_ID",
    "TILE_ORIGINS",
    "generate_sentinel2_samples",
    "sample_paths",
    "find_sample_parcels",
    "crop_reflectance",
    "vegetation_curve",
]

log = logging.getLogger(__name__)

COLLECTION_ID = "sentinel-2-l2a"
EPSG = 32633
SCALE = 1e-4
OFFSET = -0.1

#: The 16 crop classes of the paper (index = class id).
CROP_CLASSES: tuple[str, ...] = (
    "grassland",
    "maize",
    "legumes",
    "winter caraway",
    "winter wheat",
    "rapeseed",
    "potato",
    "rye",
    "winter barley",
    "beet",
    "spring barley",
    "soy",
    "sunflower",
    "permanent plantations",
    "triticale",
    "other",
)

#: Share of parcels per class (imbalanced, grassland and maize dominate).
CROP_FREQUENCIES: tuple[float, ...] = (
    0.28, 0.17, 0.025, 0.012, 0.12, 0.045, 0.025, 0.018,
    0.07, 0.018, 0.035, 0.045, 0.017, 0.05, 0.035, 0.035,
)

#: Spectral bands (order of the reflectance arrays) and their native resolution in metres.
BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
BAND_RESOLUTION: dict[str, int] = {
    "B02": 10, "B03": 10, "B04": 10, "B08": 10,
    "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20, "SCL": 20,
}
_BAND_INFO: dict[str, tuple[str | None, float, str]] = {
    "B02": ("blue", 0.490, "Blue"),
    "B03": ("green", 0.560, "Green"),
    "B04": ("red", 0.665, "Red"),
    "B05": ("rededge071", 0.705, "Red edge 1"),
    "B06": ("rededge075", 0.740, "Red edge 2"),
    "B07": ("rededge078", 0.783, "Red edge 3"),
    "B08": ("nir", 0.842, "NIR 1"),
    "B8A": ("nir08", 0.865, "NIR 2"),
    "B11": ("swir16", 1.610, "SWIR 1.6"),
    "B12": ("swir22", 2.190, "SWIR 2.2"),
}

#: Sentinel-2 L2A scene classification codes.
SCL_CLASSES: dict[int, str] = {
    0: "no data",
    1: "saturated or defective",
    2: "dark area pixels",
    3: "cloud shadows",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow",
}

#: MGRS tile name -> upper-left corner (easting, northing) in UTM 33N of the sample tile.
TILE_ORIGINS: dict[str, tuple[float, float]] = {
    "33TVM": (460000.0, 5110000.0),
    "33TWM": (540000.0, 5100000.0),
    "33TVN": (470000.0, 5180000.0),
    "33TWN": (530000.0, 5190000.0),
    "33TUL": (440000.0, 5060000.0),
    "33TXM": (565000.0, 5080000.0),
}
_ORBITS = {"33TVM": 122, "33TWM": 79, "33TVN": 22, "33TWN": 79, "33TUL": 122, "33TXM": 36}

_SOIL = np.array([0.06, 0.09, 0.12, 0.16, 0.18, 0.20, 0.22, 0.23, 0.28, 0.24], dtype=np.float32)
_VEG = np.array([0.03, 0.07, 0.03, 0.12, 0.30, 0.40, 0.45, 0.46, 0.22, 0.11], dtype=np.float32)
_SNOW = np.array([0.85, 0.84, 0.82, 0.80, 0.77, 0.75, 0.72, 0.70, 0.10, 0.08], dtype=np.float32)
_CLOUD = np.array([0.55, 0.54, 0.55, 0.56, 0.57, 0.58, 0.58, 0.58, 0.45, 0.35], dtype=np.float32)


@dataclass(frozen=True)
class _Phenology:
    """Double-logistic curve parameters, in days since 1 September."""

    vmin: float
    vmax: float
    sos: float
    eos: float
    autumn: float = 0.0  # amplitude of the autumn emergence of winter crops
    autumn_day: float = 45.0
    rise: float = 9.0
    fall: float = 9.0
    cuts: tuple[float, ...] = ()  # mowing days (grassland)
    flower: float = 0.0  # yellow-flowering strength (rapeseed, sunflower)
    flower_day: float = 0.0


_PHENOLOGY: tuple[_Phenology, ...] = (
    _Phenology(0.45, 0.82, 195, 520, cuts=(280, 325)),  # grassland
    _Phenology(0.12, 0.88, 282, 392, rise=8, fall=10),  # maize
    _Phenology(0.12, 0.76, 228, 318),  # legumes
    _Phenology(0.14, 0.70, 212, 330, autumn=0.22, autumn_day=55),  # winter caraway
    _Phenology(0.12, 0.86, 200, 308, autumn=0.20, autumn_day=48),  # winter wheat
    _Phenology(0.12, 0.85, 185, 290, autumn=0.35, autumn_day=22, flower=0.12, flower_day=245),  # rapeseed
    _Phenology(0.12, 0.80, 262, 345),  # potato
    _Phenology(0.12, 0.80, 194, 298, autumn=0.20, autumn_day=42),  # rye
    _Phenology(0.12, 0.82, 188, 293, autumn=0.23, autumn_day=40),  # winter barley
    _Phenology(0.12, 0.86, 250, 392),  # beet
    _Phenology(0.12, 0.80, 224, 314),  # spring barley
    _Phenology(0.12, 0.82, 276, 368),  # soy
    _Phenology(0.12, 0.78, 266, 352, flower=0.10, flower_day=318),  # sunflower
    _Phenology(0.35, 0.66, 228, 402, rise=14, fall=14),  # permanent plantations
    _Phenology(0.12, 0.83, 204, 312, autumn=0.20, autumn_day=46),  # triticale
    _Phenology(0.20, 0.52, 238, 330, rise=12, fall=12),  # other
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def vegetation_curve(
    crop: int, days: np.ndarray, *, shift: np.ndarray | float = 0.0, scale: np.ndarray | float = 1.0
) -> np.ndarray:
    """Vegetation fraction (0..1) of a crop on the given days since 1 September.

    Parameters
    ----------
    crop
        Class index into :data:`CROP_CLASSES`.
    days
        Days since 1 September of the agronomic year (any shape).
    shift
        Days added to the start and end of season (field-to-field variation);
        broadcast against ``days``.
    scale
        Factor on the seasonal amplitude; broadcast against ``days``.

    Returns
    -------
    numpy.ndarray
        Vegetation fraction, same shape as the broadcast inputs.
    """
    if not 0 <= crop < len(CROP_CLASSES):
        raise DataError(f"crop class {crop} is outside [0, {len(CROP_CLASSES)})")
    p = _PHENOLOGY[crop]
    t = np.asarray(days, dtype=np.float64) - shift
    amp = (p.vmax - p.vmin) * np.asarray(scale, dtype=np.float64)
    spring = _sigmoid((t - p.sos) / p.rise)
    autumn = p.autumn * _sigmoid((t - p.autumn_day) / 6.0) if p.autumn else 0.0
    green = np.maximum(autumn, amp * spring)
    v = p.vmin + green * (1.0 - _sigmoid((t - p.eos) / p.fall))
    for cut in p.cuts:
        v = v - 0.3 * np.exp(-np.clip(t - cut, 0, None) / 12.0) * (t >= cut)
    return np.clip(v, 0.02, 0.95)


def crop_reflectance(crop: int, days: np.ndarray, veg: np.ndarray) -> np.ndarray:
    """Surface reflectance of the ten bands for a vegetation fraction.

    Linear mixing of a soil and a vegetation spectrum, plus yellow flowering
    (higher green/red) for rapeseed and sunflower.

    Parameters
    ----------
    crop
        Class index.
    days
        Days since 1 September, shape ``S``.
    veg
        Vegetation fraction, shape ``S``.

    Returns
    -------
    numpy.ndarray
        Reflectance of shape ``S + (10,)`` (band last, order :data:`BANDS`).
    """
    veg = np.asarray(veg, dtype=np.float32)[..., None]
    refl = _SOIL * (1.0 - veg) + _VEG * veg
    p = _PHENOLOGY[crop]
    if p.flower:
        bloom = p.flower * np.exp(-0.5 * ((np.asarray(days, dtype=np.float32) - p.flower_day) / 9.0) ** 2)
        refl = refl + bloom[..., None] * np.array([0, 0.8, 1.0, 0.5, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    return refl


# --------------------------------------------------------------------------- geometry


def _split_fields(rng: np.random.Generator, size: int) -> list[tuple[int, int, int, int]]:
    """Split a ``size`` x ``size`` grid into rectangles (r0, r1, c0, c1) by recursive cuts."""
    out: list[tuple[int, int, int, int]] = []
    stack = [(0, size, 0, size)]
    while stack:
        r0, r1, c0, c1 = stack.pop()
        h, w = r1 - r0, c1 - c0
        limit = int(rng.integers(9, 20))
        if max(h, w) <= limit:
            out.append((r0, r1, c0, c1))
            continue
        if h >= w:
            cut = r0 + int(rng.integers(max(4, h // 4), max(5, h - h // 4) + 1))
            stack += [(r0, cut, c0, c1), (cut, r1, c0, c1)]
        else:
            cut = c0 + int(rng.integers(max(4, w // 4), max(5, w - w // 4) + 1))
            stack += [(r0, r1, c0, cut), (r0, r1, cut, c1)]
    return sorted(out)


def _parcels(
    rng: np.random.Generator, tile: str, size: int, origin: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Parcel raster (id per pixel, -1 = road), crop per parcel, and parcel records."""
    from shapely.geometry import box

    x0, y0 = origin
    ids = np.full((size, size), -1, dtype=np.int32)
    freq = np.asarray(CROP_FREQUENCIES) / np.sum(CROP_FREQUENCIES)
    records: list[dict[str, Any]] = []
    crops: list[int] = []
    fields = [f for f in _split_fields(rng, size) if min(f[1] - f[0], f[3] - f[2]) >= 3]
    n_classes = len(CROP_CLASSES)
    # every class at least once per tile when the tile holds enough fields (as in a real LPIS
    # extract of a region); the other fields follow the imbalanced class frequencies
    labels = rng.choice(n_classes, size=len(fields), p=freq)
    if len(fields) >= 2 * n_classes:
        labels[rng.choice(len(fields), n_classes, replace=False)] = rng.permutation(n_classes)
    for (r0, r1, c0, c1), crop in zip(fields, labels):
        # one-pixel road on the bottom and right side of every field
        r1e, c1e = (r1 - 1 if r1 < size else r1), (c1 - 1 if c1 < size else c1)
        crop = int(crop)
        pid = len(records)
        ids[r0:r1e, c0:c1e] = pid
        crops.append(crop)
        records.append(
            {
                "parcel_id": f"{tile}-{pid:04d}",
                "tile": tile,
                "crop_id": crop,
                "crop_name": CROP_CLASSES[crop],
                "geometry": box(x0 + 10 * c0, y0 - 10 * r1e, x0 + 10 * c1e, y0 - 10 * r0),
            }
        )
    return ids, np.asarray(crops, dtype=np.int32), records


# --------------------------------------------------------------------------- time series


def _acquisitions(rng: np.random.Generator, year: int, tile_index: int) -> list[dt.datetime]:
    """Irregular acquisition times over the agronomic year; the sampling differs per tile."""
    start = dt.datetime(year, 9, 1, 10, 0, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + 1, 9, 1, tzinfo=dt.timezone.utc)
    revisit = 5
    keep = 0.34 + 0.1 * (tile_index % 3)  # tiles differ in how many dates survive
    first = int(rng.integers(0, revisit))
    out = []
    day = first + tile_index  # tiles are on different orbits: different days
    while start + dt.timedelta(days=day) < end:
        if rng.random() < keep:
            t = start + dt.timedelta(days=day, minutes=int(rng.integers(0, 40)), seconds=int(rng.integers(0, 60)))
            out.append(t)
        day += revisit
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-9)


def _cloud_cover(month: int) -> float:
    """Mean cloud fraction per calendar month (cloudy winters, clear summers)."""
    return {9: 0.2, 10: 0.3, 11: 0.45, 12: 0.5, 1: 0.5, 2: 0.4, 3: 0.35, 4: 0.3,
            5: 0.25, 6: 0.2, 7: 0.15, 8: 0.15}[month]


def _scene_classification(
    rng: np.random.Generator, when: dt.datetime, half: int, veg20: np.ndarray, *, force_cloudy: bool
) -> np.ndarray:
    """SCL at 20 m for one date: vegetation/soil, clouds, shadows, cirrus, snow, no data."""
    scl = np.where(veg20 > 0.35, 4, 5).astype(np.uint8)
    cover = 1.0 if force_cloudy else float(np.clip(rng.normal(_cloud_cover(when.month), 0.2), 0.0, 1.0))
    if cover > 0.02:
        field = _smooth_field(rng, (half, half), sigma=max(2.0, half / 10))
        if cover >= 0.999:
            cloud = np.ones_like(field, dtype=bool)
            thr = field.min() - 1
        else:
            thr = np.quantile(field, 1.0 - cover)
            cloud = field > thr
        high = field > thr + 0.6
        scl[cloud] = 8
        scl[high] = 9
        shadow = np.roll(np.roll(cloud, 3, axis=0), 2, axis=1) & ~cloud
        scl[shadow] = 3
        cirrus = (_smooth_field(rng, (half, half), sigma=half / 6) > 1.3) & ~cloud & ~shadow
        scl[cirrus] = 10
    if when.month in (12, 1, 2) and rng.random() < 0.3:
        snow = _smooth_field(rng, (half, half), sigma=half / 5) > rng.uniform(0.0, 1.5)
        scl[snow & (scl != 8) & (scl != 9)] = 11
    if rng.random() < 0.05:  # a swath edge: no data on a corner
        k = int(rng.integers(1, half // 3 + 1))
        scl[:, :k] = 0
    if rng.random() < 0.05:
        scl[rng.random((half, half)) < 0.002] = 1
    return scl


def _cog_bytes(array: np.ndarray, *, transform: Any, nodata: int) -> bytes:
    from rasterio.io import MemoryFile

    profile = {
        "driver": "COG",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": f"EPSG:{EPSG}",
        "transform": transform,
        "nodata": nodata,
        "compress": "DEFLATE",
        "blocksize": 256,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(array, 1)
        return bytes(mem.read())


def _to_dn(refl: np.ndarray) -> np.ndarray:
    return np.clip(np.round((refl - OFFSET) / SCALE), 1, 65535).astype(np.uint16)


def _item_id(tile: str, when: dt.datetime, sat: str) -> str:
    stamp = when.strftime("%Y%m%dT%H%M%S")
    proc = (when + dt.timedelta(hours=3, minutes=7)).strftime("%Y%m%dT%H%M%S")
    return f"{sat}_MSIL2A_{stamp}_N0510_R{_ORBITS.get(tile, 122):03d}_T{tile}_{proc}"


def _item(
    *,
    item_id: str,
    tile: str,
    when: dt.datetime,
    sat: str,
    size: int,
    origin: tuple[float, float],
    hrefs: Mapping[str, str],
    cloud_cover: float,
    snow_cover: float,
) -> pystac.Item:
    from pyproj import Transformer
    from shapely.geometry import box, mapping
    from shapely.ops import transform as shp_transform

    x0, y0 = origin
    footprint_utm = box(x0, y0 - 10 * size, x0 + 10 * size, y0)
    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True).transform
    footprint = shp_transform(to_ll, footprint_utm)
    assets: dict[str, Any] = {}
    for key, href in hrefs.items():
        band = key.split("_")[0]
        res = BAND_RESOLUTION[band]
        n = size * 10 // res
        asset: dict[str, Any] = {
            "href": href,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "gsd": res,
            "proj:code": f"EPSG:{EPSG}",
            "proj:shape": [n, n],
            "proj:transform": [res, 0.0, x0, 0.0, -res, y0],
            "nodata": 0,
            "data_type": "uint8" if band == "SCL" else "uint16",
        }
        if band == "SCL":
            asset.update(
                title=f"Scene classification map ({res}m)",
                roles=["data"],
                bands=[{"name": "SCL"}],
                **{"classification:classes": [{"value": v, "description": d} for v, d in SCL_CLASSES.items()]},
            )
        else:
            common, wavelength, title = _BAND_INFO[band]
            asset.update(
                title=f"{title} - {res}m",
                roles=["data", "reflectance"],
                bands=[{"name": band, "eo:common_name": common, "eo:center_wavelength": wavelength}],
                **{"raster:scale": SCALE, "raster:offset": OFFSET},
            )
        assets[key] = asset
    data = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
            "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
            "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
            "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.1.0/schema.json",
        ],
        "id": item_id,
        "collection": COLLECTION_ID,
        "geometry": mapping(footprint),
        "bbox": list(footprint.bounds),
        "properties": {
            "datetime": when.isoformat().replace("+00:00", "Z"),
            "platform": "sentinel-2a" if sat == "S2A" else "sentinel-2b",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "gsd": 10,
            "eo:cloud_cover": round(cloud_cover, 2),
            "eo:snow_cover": round(snow_cover, 2),
            "proj:code": f"EPSG:{EPSG}",
            "grid:code": f"MGRS-{tile}",
            "processing:level": "L2",
            "processing:version": "05.10",
            "product:type": "S2MSI2A",
            "sat:relative_orbit": _ORBITS.get(tile, 122),
            "workbench:simulated": True,
        },
        "links": [],
        "assets": assets,
    }
    return pystac.Item.from_dict(data, preserve_dict=False)


def _absolute(url: str) -> str:
    return url if storage.is_remote(url) else str(Path(url).resolve())


def _tile_names(n_tiles: int) -> list[str]:
    names = list(TILE_ORIGINS)
    if isinstance(n_tiles, bool) or not isinstance(n_tiles, (int, np.integer)) or not 1 <= n_tiles <= len(names):
        raise DataError(f"n_tiles must be in [1, {len(names)}], got {n_tiles}")
    return names[:n_tiles]


def generate_sentinel2_samples(
    out_dir: str | os.PathLike[str],
    *,
    n_tiles: int = 3,
    size: int = 64,
    seed: int = 0,
    agronomic_year: int = 2023,
    catalog_path: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    register: bool = True,
) -> list[pystac.Item]:
    """Generate the Sentinel-2 L2A-like sample time series and register it.

    Writes, under ``out_dir/sentinel2``:

    * ``<tile>/<item id>/<band>_<res>m.tif``: one COG per band and acquisition
      (``uint16`` DN for the ten spectral bands, ``uint8`` SCL at 20 m);
    * ``parcels.parquet``: the LPIS-like parcels (GeoParquet, EPSG:32633) with
      columns ``parcel_id, tile, crop_id, crop_name, geometry``;
    * ``insitu.parquet``: LUCAS-like in-situ points
      (:func:`workbench.samples.insitu.generate_insitu_points`).

    and adds the STAC items to the ``sentinel-2-l2a`` collection of the local
    catalogue.

    Parameters
    ----------
    out_dir
        Root directory (or ``s3://`` URL) of the sample data.
    n_tiles
        Number of tiles (1 to 6), each on its own acquisition schedule.
    size
        Tile width and height in 10 m pixels (even, 16 to 2048).
    seed
        Seed of the random generator; the same seed gives the same data.
    agronomic_year
        Year in which the agronomic year starts (1 September).
    catalog_path
        Local STAC catalogue; default ``load_settings().local_catalog_path``.
    storage_options
        fsspec options for an ``s3://`` ``out_dir``.
    register
        Whether to add the items to the local catalogue.

    Returns
    -------
    list of pystac.Item
        The items, sorted by tile and time; asset hrefs are absolute.

    Raises
    ------
    DataError
        On an invalid ``n_tiles``, ``size`` or ``agronomic_year``.
    """
    from affine import Affine
    from tqdm.auto import tqdm

    tiles = _tile_names(n_tiles)
    if not isinstance(size, (int, np.integer)) or size < 16 or size > 2048 or size % 2:
        raise DataError(f"size must be an even number of pixels in [16, 2048], got {size!r}")
    if not isinstance(agronomic_year, (int, np.integer)) or not 2015 <= agronomic_year <= 2100:
        raise DataError(f"agronomic_year must be a year in [2015, 2100] (Sentinel-2 era), got {agronomic_year!r}")
    root = storage.join(_absolute(str(out_dir)), "sentinel2")
    rng = np.random.default_rng(seed)
    half = size // 2
    items: list[pystac.Item] = []
    all_parcels: list[dict[str, Any]] = []
    year_start = dt.datetime(agronomic_year, 9, 1, tzinfo=dt.timezone.utc)
    for t_index, tile in enumerate(tiles):
        origin = TILE_ORIGINS[tile]
        ids, crops, records = _parcels(rng, tile, size, origin)
        all_parcels += records
        n_parcels = len(records)
        shift = rng.normal(0.0, 5.0, n_parcels)
        scale = rng.uniform(0.85, 1.05, n_parcels)
        gain = rng.normal(1.0, 0.02, (n_parcels, len(BANDS))).astype(np.float32)
        road = ids < 0
        safe_ids = np.where(road, 0, ids)
        pixel_noise_scale = rng.uniform(0.005, 0.012)
        dates = _acquisitions(rng, agronomic_year, t_index)
        # one month of the first tile is fully cloudy: the compositing must fill it
        cloudy_month = 1 if t_index == 0 else None
        transform10 = Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1])
        transform20 = Affine(20.0, 0.0, origin[0], 0.0, -20.0, origin[1])
        for when in tqdm(dates, desc=f"sample tile {tile}", leave=False, disable=len(dates) < 50):
            day = (when - year_start).total_seconds() / 86400.0
            veg_field = np.array(
                [vegetation_curve(int(c), np.array(day), shift=s, scale=k) for c, s, k in zip(crops, shift, scale)]
            )
            refl_field = np.stack(
                [crop_reflectance(int(c), np.array(day), v) for c, v in zip(crops, veg_field)]
            ) * gain  # (parcel, band)
            veg = np.where(road, 0.05, veg_field[safe_ids])
            refl = np.where(road[..., None], _SOIL * 1.15, refl_field[safe_ids])
            refl = refl + rng.normal(0.0, pixel_noise_scale, refl.shape).astype(np.float32)
            veg20 = veg.reshape(half, 2, half, 2).mean(axis=(1, 3))
            scl = _scene_classification(
                rng, when, half, veg20, force_cloudy=(cloudy_month is not None and when.month == cloudy_month)
            )
            scl10 = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)
            cloud10 = np.isin(scl10, (8, 9))
            refl = np.where(cloud10[..., None], _CLOUD + rng.normal(0, 0.03, refl.shape), refl)
            refl = np.where((scl10 == 10)[..., None], refl + 0.08, refl)
            refl = np.where((scl10 == 3)[..., None], refl * 0.35, refl)
            refl = np.where((scl10 == 11)[..., None], _SNOW + rng.normal(0, 0.02, refl.shape), refl)
            dn = _to_dn(refl)
            dn[scl10 == 0] = 0
            sat = "S2A" if rng.random() < 0.5 else "S2B"
            item_id = _item_id(tile, when, sat)
            folder = storage.join(root, tile, item_id)
            hrefs: dict[str, str] = {}
            for b_index, band in enumerate(BANDS):
                res = BAND_RESOLUTION[band]
                plane = dn[..., b_index]
                if res == 20:
                    plane20 = plane.reshape(half, 2, half, 2).astype(np.float32).mean(axis=(1, 3))
                    plane = np.where(scl == 0, 0, np.round(plane20)).astype(np.uint16)
                key = f"{band}_{res}m"
                url = storage.join(folder, f"{key}.tif")
                data = _cog_bytes(plane, transform=transform10 if res == 10 else transform20, nodata=0)
                storage.write_bytes(url, data, storage_options=storage_options)
                hrefs[key] = url
            url = storage.join(folder, "SCL_20m.tif")
            storage.write_bytes(url, _cog_bytes(scl, transform=transform20, nodata=0), storage_options=storage_options)
            hrefs["SCL_20m"] = url
            items.append(
                _item(
                    item_id=item_id,
                    tile=tile,
                    when=when,
                    sat=sat,
                    size=size,
                    origin=origin,
                    hrefs=hrefs,
                    cloud_cover=100.0 * float(np.isin(scl, (3, 8, 9, 10)).mean()),
                    snow_cover=100.0 * float((scl == 11).mean()),
                )
            )
        log.info("sample tile %s: %d parcels, %d acquisitions", tile, n_parcels, len(dates))

    import geopandas as gpd

    parcels = gpd.GeoDataFrame(all_parcels, geometry="geometry", crs=f"EPSG:{EPSG}")
    storage.write_geoparquet(parcels, storage.join(root, "parcels.parquet"), storage_options=storage_options)
    from workbench.samples.insitu import generate_insitu_points

    points = generate_insitu_points(parcels, seed=seed + 1, survey_year=agronomic_year + 1)
    storage.write_geoparquet(points, storage.join(root, "insitu.parquet"), storage_options=storage_options)

    if register:
        from workbench.catalog.local import add_items
        from workbench.config import load_settings

        path = Path(catalog_path) if catalog_path is not None else load_settings().local_catalog_path
        add_items(
            path,
            COLLECTION_ID,
            items,
            description=(
                "Simulated Sentinel-2 L2A time series (agronomic year "
                f"{agronomic_year}/{agronomic_year + 1}, tiles {', '.join(tiles)}) with CDSE-style "
                "STAC items: COGs per band, SCL scene classification, parcels and in-situ points "
                "beside it (workbench.samples.sentinel2)."
            ),
        )
    return items


def sample_paths(out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Paths of the parcel and in-situ files that :func:`generate_sentinel2_samples` writes."""
    root = storage.join(_absolute(str(out_dir)), "sentinel2")
    return {"parcels": storage.join(root, "parcels.parquet"), "insitu": storage.join(root, "insitu.parquet")}


def find_sample_parcels(items: "list[pystac.Item]", *, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """Path of the parcels written beside sample items (``<root>/sentinel2/parcels.parquet``), or None.

    Sample assets live at ``<root>/sentinel2/<tile>/<item id>/<band>.tif``; real
    Sentinel-2 items have no parcels beside them (give an LPIS file instead).
    """
    for item in items:
        for asset in item.assets.values():
            href = str(asset.href)
            parts = href.rstrip("/").split("/")
            if len(parts) < 5 or parts[-4] != "sentinel2":
                continue
            candidate = "/".join(parts[:-3] + ["parcels.parquet"])
            if storage.exists(candidate, storage_options=storage_options):
                return candidate
    return None
