"""A reproducible sea-ice Sentinel-1 sample scene: real SAFE metadata, simulated pixels.

The geometry, calibration LUT (``sigmaNought``) and thermal-noise LUTs (range
and azimuth) are those of a real IW GRDH product shipped in the ``sarsen`` sdist
(fetched at install time by :mod:`workbench.samples.sarsen_assets`). That
product lies over central Italy and holds only VV; its VV LUTs serve for both
HH and HV here. **The pixels are simulated**:

1. an ice chart: warped Voronoi regions of the five classes, a land area and
   narrow leads, polygonised and mapped to lon/lat through the real
   geolocation grid;
2. σ⁰ per class from a mean at 30° incidence and a linear incidence-angle slope
   (:data:`SIGMA0_MODELS`), a calm-to-windy wind field over water, spatial
   texture for deformed ice;
3. the thermal noise of the real noise LUTs added (σ⁰ + NESZ, which gives HV its
   noise floor) and multiplicative gamma speckle with ENL 4.4 (IW GRDH);
4. inverted through the real LUTs to digital numbers, ``DN = A_σ·sqrt(σ⁰ + η/A_σ²)``,
   rounded to uint16, written as the measurement GeoTIFFs of a SAFE-like
   product of full image size in which only the chosen window holds data
   (tiled, sparse, so the file stays small).

A STAC item of collection ``sentinel-1-grd`` is added to the local catalogue.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from workbench.errors import DataError
from workbench.samples.sarsen_assets import GRD_SAFE_NAME, find_grd_safe
from workbench.sentinel1.calibration import GridLUT, azimuth_noise, dn_from_sigma0, from_db
from workbench.sentinel1.safe import Sentinel1Metadata, Window, open_safe, read_metadata

__all__ = [
    "CLASS_NAMES",
    "LAND_CLASS",
    "SIGMA0_MODELS",
    "Sigma0Model",
    "SampleScene",
    "simulate_chart",
    "simulate_sigma0",
    "build_sample_scene",
    "ensure_sample_scene",
    "COLLECTION_ID",
    "ENL",
]

log = logging.getLogger(__name__)

COLLECTION_ID = "sentinel-1-grd"
CLASS_NAMES = ("water", "brash_pancake_ice", "young_ice", "level_first_year_ice", "deformed_ice")
LAND_CLASS = 5
ENL = 4.4  # equivalent number of looks of IW GRDH (ESA Sentinel-1 product definition)
SAMPLE_PRODUCT_NAME = GRD_SAFE_NAME.replace("_1SDV_", "_1SDH_")


@dataclass(frozen=True)
class Sigma0Model:
    """σ⁰ (dB) = ``db30 + slope · (θ − 30°)`` per polarisation, plus texture std (dB)."""

    hh_db30: float
    hh_slope: float
    hv_db30: float
    hv_slope: float
    texture_db: float = 0.0


# Winter C-band values. Slopes: level first-year ice HH -0.25 dB/deg and deformed
# first-year ice -0.24 HH / -0.16 HV (Makynen & Karvonen 2017, IEEE Trans. Geosci. Remote
# Sens., Sentinel-1 over the Kara Sea); multi-year ice about -0.16 dB/deg HH (Mahmud et al.
# 2018, IEEE Trans. Geosci. Remote Sens.) is not one of the five classes. The steep open-water
# HH slope reflects the strong incidence dependence of open water in C-band. All levels at
# 30 deg, the water, brash/pancake and young-ice slopes and the other HV slopes are chosen
# for this simulation (typical winter C-band figures), not taken from a measurement.
SIGMA0_MODELS: dict[str, Sigma0Model] = {
    "water_calm": Sigma0Model(-24.0, -0.80, -33.0, -0.20),
    "water_windy": Sigma0Model(-15.5, -0.80, -30.5, -0.20),
    "brash_pancake_ice": Sigma0Model(-13.0, -0.30, -21.5, -0.20),
    "young_ice": Sigma0Model(-16.5, -0.28, -25.0, -0.15),
    "level_first_year_ice": Sigma0Model(-19.0, -0.25, -27.5, -0.11),
    "deformed_ice": Sigma0Model(-11.0, -0.24, -20.5, -0.16, texture_db=1.5),
    "land": Sigma0Model(-7.0, -0.10, -14.0, -0.10),
}


@dataclass(frozen=True)
class SampleScene:
    """Paths of one built sample scene."""

    scene_id: str
    safe: Path
    chart: Path
    window: Window
    item_id: str


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-correlated noise of unit variance (made at a coarse scale for large ``sigma``)."""
    factor = max(1, int(sigma // 4))
    small = (-(-shape[0] // factor) + 1, -(-shape[1] // factor) + 1)
    field = ndimage.gaussian_filter(rng.standard_normal(small), sigma=sigma / factor, mode="reflect")
    if factor > 1:
        field = ndimage.zoom(field, factor, order=1)
    field = field[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-12)


def simulate_chart(shape: tuple[int, int], *, rng: np.random.Generator, n_regions: int = 14) -> np.ndarray:
    """Class raster (``int16``): 0..4 the ice classes, :data:`LAND_CLASS` land.

    Warped Voronoi regions (each class present), a land strip along one edge
    with a wavy coastline, and two narrow leads (water) across the ice.
    """
    h, w = shape
    if min(h, w) < 64:
        raise DataError(f"sample scene shape {shape} is too small; expected at least 64 × 64 pixels")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = 0.06 * min(h, w)
    wy = yy + warp * _smooth_noise(rng, shape, min(h, w) / 12)
    wx = xx + warp * _smooth_noise(rng, shape, min(h, w) / 12)
    seeds = rng.uniform([0, 0], [h, w], size=(n_regions, 2))
    classes = np.concatenate([np.arange(5), rng.choice(5, n_regions - 5, p=[0.4, 0.12, 0.14, 0.18, 0.16])])
    rng.shuffle(classes)
    nearest = np.empty(shape, dtype=np.intp)
    for r0 in range(0, h, 256):  # in row blocks: bounded memory for large windows
        dist = (wy[r0 : r0 + 256, :, None] - seeds[:, 0]) ** 2 + (wx[r0 : r0 + 256, :, None] - seeds[:, 1]) ** 2
        nearest[r0 : r0 + 256] = np.argmin(dist, axis=-1)
    labels = classes[nearest].astype(np.int16)
    # leads: narrow water channels along random lines
    for _ in range(2):
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        angle = rng.uniform(0, np.pi)
        d = np.abs((wy - y0) * np.cos(angle) - (wx - x0) * np.sin(angle))
        along = (wy - y0) * np.sin(angle) + (wx - x0) * np.cos(angle)
        labels[(d < 0.012 * min(h, w)) & (np.abs(along) < 0.35 * max(h, w))] = 0
    coast = 0.1 * w + 0.04 * w * np.sin(yy[:, 0] / h * 3 * np.pi) + 0.02 * w * _smooth_noise(rng, (h, 1), h / 20)[:, 0]
    labels[xx < coast[:, None]] = LAND_CLASS
    return labels


def simulate_sigma0(
    labels: np.ndarray, incidence: np.ndarray, *, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Noise-free σ⁰ (linear) of HH and HV for a class raster and incidence angles (degrees)."""
    if labels.shape != incidence.shape:
        raise DataError(f"labels {labels.shape} and incidence {incidence.shape} differ in shape")
    wind = np.clip(0.5 + 0.35 * _smooth_noise(rng, labels.shape, min(labels.shape) / 10), 0.0, 1.0)
    texture = _smooth_noise(rng, labels.shape, 2.0)
    out: dict[str, np.ndarray] = {}
    dtheta = incidence - 30.0
    for pol in ("hh", "hv"):
        db = np.zeros(labels.shape, dtype=np.float32)
        calm, windy = SIGMA0_MODELS["water_calm"], SIGMA0_MODELS["water_windy"]
        water = labels == 0
        db30 = (1 - wind) * getattr(calm, f"{pol}_db30") + wind * getattr(windy, f"{pol}_db30")
        db[water] = (db30 + getattr(calm, f"{pol}_slope") * dtheta)[water]
        for cls, name in enumerate(CLASS_NAMES[1:] + ("land",), start=1):
            m = SIGMA0_MODELS[name]
            mask = labels == cls
            db[mask] = (getattr(m, f"{pol}_db30") + getattr(m, f"{pol}_slope") * dtheta + m.texture_db * texture)[mask]
        out[pol] = from_db(db)
    return out


def _lonlat(meta: Sentinel1Metadata, pixel: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return meta.longitude.at_points(line, pixel), meta.latitude.at_points(line, pixel)


def _chart_polygons(labels: np.ndarray, window: Window, meta: Sentinel1Metadata) -> Any:
    import geopandas as gpd
    import rasterio.features
    import shapely
    from affine import Affine

    transform = Affine(1.0, 0.0, window.col, 0.0, 1.0, window.row)  # x = pixel, y = line
    records = []
    for geom, value in rasterio.features.shapes(labels, transform=transform, connectivity=4):
        poly = shapely.geometry.shape(geom).simplify(1.0)

        def to_lonlat(coords: np.ndarray) -> np.ndarray:
            lon, lat = _lonlat(meta, coords[:, 0], coords[:, 1])
            return np.column_stack([lon, lat])

        records.append({"class_id": int(value), "geometry": shapely.transform(poly, to_lonlat)})
    frame = gpd.GeoDataFrame(records, geometry="geometry", crs=4326)
    frame = frame.dissolve(by="class_id", as_index=False)
    frame["class_name"] = [CLASS_NAMES[c] if c < len(CLASS_NAMES) else "land" for c in frame["class_id"]]
    frame["is_land"] = frame["class_id"] == LAND_CLASS
    return frame[["class_id", "class_name", "is_land", "geometry"]]


def _write_measurement(path: Path, dn: np.ndarray, shape: tuple[int, int], window: Window) -> None:
    import rasterio
    from rasterio.windows import Window as RioWindow

    profile = {
        "driver": "GTiff", "dtype": "uint16", "count": 1, "height": shape[0], "width": shape[1],
        "nodata": 0, "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
        "sparse_ok": True,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn, 1, window=RioWindow(window.col, window.row, window.width, window.height))


def _copy_xml(src: Path, dst: Path, pol: str) -> None:
    text = src.read_text(encoding="utf-8")
    text = text.replace("<polarisation>VV</polarisation>", f"<polarisation>{pol.upper()}</polarisation>")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text, encoding="utf-8")


def _write_safe(
    target: Path, real: Path, meta: Sentinel1Metadata, dn: dict[str, np.ndarray], window: Window
) -> None:
    """Write the SAFE-like product: real XML (VV → HH/HV), sparse full-size measurement TIFFs."""
    shutil.copyfile(real / "manifest.safe", target / "manifest.safe")
    ann = next(p for p in (real / "annotation").glob("s1?-iw-grd-vv-*.xml"))
    for pol, values in dn.items():
        stem = ann.stem.replace("-vv-", f"-{pol}-")
        _copy_xml(ann, target / "annotation" / f"{stem}.xml", pol)
        for kind in ("calibration", "noise"):
            _copy_xml(real / "annotation" / "calibration" / f"{kind}-{ann.stem}.xml",
                      target / "annotation" / "calibration" / f"{kind}-{stem}.xml", pol)
        (target / "measurement").mkdir(parents=True, exist_ok=True)
        _write_measurement(target / "measurement" / f"{stem}.tiff", values, meta.shape, window)


def _stac_item(scene_id: str, safe: Path, chart: Path, meta: Sentinel1Metadata, window: Window) -> Any:
    import pystac
    import shapely.geometry

    r0, c0, r1, c1 = window.row, window.col, window.row + window.height - 1, window.col + window.width - 1
    lon, lat = _lonlat(meta, np.array([c0, c1, c1, c0, c0], float), np.array([r0, r0, r1, r1, r0], float))
    footprint = shapely.geometry.Polygon(zip(lon, lat))
    start = dt.datetime.fromisoformat(meta.attrs["start_time"]).replace(tzinfo=dt.timezone.utc)
    item = pystac.Item(
        id=scene_id,
        geometry=shapely.geometry.mapping(footprint),
        bbox=list(footprint.bounds),
        datetime=start,
        properties={
            "platform": "sentinel-1b",
            "constellation": "sentinel-1",
            "instruments": ["c-sar"],
            "sar:instrument_mode": "IW",
            "sar:product_type": "GRD",
            "sar:polarizations": ["HH", "HV"],
            "sar:frequency_band": "C",
            "workbench:simulated": True,
            "workbench:window": [window.row, window.col, window.height, window.width],
            "workbench:source_metadata": f"sarsen sdist: {GRD_SAFE_NAME}",
        },
    )
    measurement = safe / "measurement"
    item.add_asset("safe", pystac.Asset(href=str(safe), media_type="application/x-directory", roles=["data"],
                                        title="SAFE-like product (real metadata, simulated pixels)"))
    for tif in sorted(measurement.glob("*.tiff")):
        pol = tif.name.split("-")[3]
        item.add_asset(pol, pystac.Asset(href=str(tif), media_type=pystac.MediaType.GEOTIFF, roles=["data"],
                                         title=f"{pol.upper()} digital numbers"))
    item.add_asset("ice-chart", pystac.Asset(href=str(chart), media_type="application/x-parquet",
                                             roles=["labels"], title="Ice chart (5 classes + land)"))
    return item


def build_sample_scene(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    size: int = 2048,
    origin: tuple[int, int] = (8192, 8192),
    register: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> SampleScene:
    """Build one sample scene (SAFE-like product + ice chart) and register its STAC item.

    Parameters
    ----------
    out_dir
        Folder for the scene (default ``<project_dir>/workbench-data/samples/sentinel1``);
        the scene goes to ``out_dir/s1-sample-<seed>/``.
    seed
        Random seed: the same seed gives the same scene.
    size
        Window side in full-resolution (10 m) pixels; a multiple of 256.
    origin
        ``(row, col)`` of the window in the real product's image; multiples of 256.
    register
        Add the item to the local STAC catalogue (collection ``sentinel-1-grd``).
    cache_dir
        Where the sarsen SAFE metadata was extracted (default: see
        :func:`workbench.samples.sarsen_assets.find_grd_safe`).

    Returns
    -------
    SampleScene

    Raises
    ------
    DataError
        Bad size/origin, or the sarsen metadata is not in the cache.
    """
    from workbench.config import load_settings

    if size < 256 or size % 256:
        raise DataError(f"size must be a positive multiple of 256, got {size}")
    if origin[0] < 0 or origin[1] < 0 or origin[0] % 256 or origin[1] % 256:
        raise DataError(f"origin must be non-negative multiples of 256, got {origin}")
    settings = load_settings()
    real = find_grd_safe(cache_dir)
    meta = read_metadata(open_safe(str(real), require_measurement=False), "VV")
    if origin[0] + size > meta.shape[0] or origin[1] + size > meta.shape[1]:
        raise DataError(f"window {origin} + {size} reaches outside the real image {meta.shape}")
    window = Window(origin[0], origin[1], size, size)
    rng = np.random.default_rng(seed)
    scene_id = f"s1-sample-{seed}"
    root = (Path(out_dir) if out_dir is not None else Path(settings.project_dir) / "workbench-data" / "samples" / "sentinel1").resolve()
    final = root / scene_id

    rows = np.arange(window.row, window.row + size, dtype=np.float64)
    cols = np.arange(window.col, window.col + size, dtype=np.float64)
    incidence = meta.incidence.at(rows, cols)
    labels = simulate_chart((size, size), rng=rng)
    sigma = simulate_sigma0(labels, incidence, rng=rng)
    a_sigma = meta.sigma_nought.at(rows, cols)
    noise = meta.noise_range.at(rows, cols) * azimuth_noise(meta.noise_azimuth, rows, cols)
    dn: dict[str, np.ndarray] = {}
    for pol, s0 in sigma.items():
        nesz = noise / (a_sigma * a_sigma)
        speckle = rng.gamma(ENL, 1.0 / ENL, size=s0.shape).astype(np.float32)
        measured = (s0 + nesz) * speckle  # σ⁰ + thermal noise, both speckled
        dn[pol] = np.clip(np.rint(dn_from_sigma0(measured, a_sigma)), 1, 65534).astype(np.uint16)

    tmp = root / f".{scene_id}.{uuid.uuid4().hex}.tmp"
    safe_tmp = tmp / SAMPLE_PRODUCT_NAME
    safe_tmp.mkdir(parents=True)
    try:
        _write_safe(safe_tmp, real, meta, dn, window)
        chart = _chart_polygons(labels, window, meta)
        chart.to_parquet(tmp / "ice_chart.parquet", index=False)
        (tmp / "scene.json").write_text(json.dumps({
            "scene_id": scene_id, "product": SAMPLE_PRODUCT_NAME, "seed": seed,
            "window": [window.row, window.col, window.height, window.width],
            "simulated": True, "source_metadata": GRD_SAFE_NAME,
        }, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    scene = SampleScene(
        scene_id=scene_id, safe=final / SAMPLE_PRODUCT_NAME, chart=final / "ice_chart.parquet",
        window=window, item_id=scene_id,
    )
    if register:
        from workbench.catalog.local import add_items

        item = _stac_item(scene_id, scene.safe, scene.chart, meta, window)
        add_items(settings.local_catalog_path, COLLECTION_ID, [item],
                  description="Sentinel-1 IW GRD (sample scenes: real metadata from the sarsen sdist, simulated pixels)")
    log.info("sample scene %s written to %s", scene_id, final)
    return scene


def ensure_sample_scene(
    data_dir: str | os.PathLike[str] = "workbench-data",
    *,
    seed: int = 0,
    size: int = 2048,
    rebuild: bool = False,
) -> SampleScene:
    """The sample scene of ``seed`` under ``<data_dir>/samples/sentinel1``: reused when built, else built.

    A scene built earlier with another ``size`` is rebuilt.
    """
    root = Path(data_dir) / "samples" / "sentinel1"
    folder = root / f"s1-sample-{seed}"
    info_path = folder / "scene.json"
    if not rebuild and info_path.is_file():
        info = json.loads(info_path.read_text())
        window = Window(*info["window"])
        safe = folder / info["product"]
        if window.height == size and safe.is_dir() and (folder / "ice_chart.parquet").is_file():
            return SampleScene(scene_id=info["scene_id"], safe=safe.resolve(), chart=(folder / "ice_chart.parquet").resolve(),
                               window=window, item_id=info["scene_id"])
    return build_sample_scene(root.resolve(), seed=seed, size=size)
