"""A reproducible sea-ice Sentinel-1 sample scene: real SAFE metadata, simulated pixels.

The geometry, calibration LUT (``sigmaNought``) and thermal-noise LUTs (range
and azimuth) are those of a real IW GRDH product shipped in the ``sarsen`` sdist
(fetched at install time by :mod:`workbench.samples.sarsen_assets`). That
product lies over central Italy and holds only VV; its VV LUTs serve for both
HH and HV here. **The pixels are simulated**, so that the five-class task is
about as ambiguous as the sea-ice SAR literature reports, not trivially
separable:

1. an ice chart (:func:`simulate_chart`): warped Voronoi regions of the five
   classes, a land area and narrow leads, polygonised and mapped to lon/lat
   through the real geolocation grid;
2. noise-free σ⁰ (:func:`simulate_sigma0`): per class a level at 30° incidence
   and a linear incidence-angle slope per polarisation (:data:`SIGMA0_MODELS`),
   a per-floe offset drawn from the class spread (a fine tessellation of ~2 km
   floes inside the chart's regions), and class-specific spatial texture —
   ridge networks (dense on deformed ice, sparse on level ice), bright
   frost-flower/rafting spots on young ice, granular texture on brash/pancake
   ice, km-scale wind variation and streaks on open water — so that the σ⁰
   distributions of the classes overlap pixel by pixel while the texture of a
   patch still tells them apart in part;
3. the thermal noise (:func:`noise_scaling`): the noise actually added is the
   real noise LUT times a per-sub-swath scaling error with an excess near the
   sub-swath seams, so the ESA-style subtraction of the LUT in preprocessing
   leaves a residue that shows in HV (whose σ⁰ is near the noise floor) and
   hardly in HH;
4. speckle (:func:`speckle`): multiplicative gamma with the ENL of the product
   (4.4 for IW GRDH), one value per 2 × 2-pixel resolution cell (GRDH: 10 m
   pixels, ~20 × 22 m resolution), applied to σ⁰ + noise; the 4 × 4 multilook
   and boxcar of :mod:`workbench.sentinel1.preprocess` then reduce it as they
   would on a real product (4 cells per 40 m pixel: ENL ≈ 17.6);
5. inverted through the real LUTs to digital numbers, ``DN = A_σ·sqrt(σ⁰ + η/A_σ²)``,
   rounded to uint16, written as the measurement GeoTIFFs of a SAFE-like
   product of full image size in which only the chosen window holds data
   (tiled, sparse, so the file stays small).

A STAC item of collection ``sentinel-1-grd`` is added to the local catalogue.

Sources of the numbers (winter, dry snow, C band)
-------------------------------------------------
* Incidence-angle slopes of level and deformed first-year ice: Mäkynen & Karvonen (2017),
  *Incidence angle dependence of first-year sea ice backscattering coefficient in Sentinel-1
  SAR imagery over the Kara Sea*, IEEE TGRS 55(11) — deformed FYI −0.24 dB/° (HH) and
  −0.16 dB/° (HV), level FYI −0.25 dB/° (HH); they found no reliable HV slope for level FYI
  (near the noise floor). C-band FYI −0.22 dB/° (HH): Mahmud et al. (2018), IEEE TGRS 56(11).
  That the slope is a class property (not one global correction): Lohse, Doulgeris &
  Dierking (2020), *Mapping sea-ice types from Sentinel-1 considering the surface-type
  dependent effect of incidence angle*, Annals of Glaciology 61(83), 260–270.
* Levels and overlaps: the ranges of winter C-band HH σ⁰ per ice type compiled by Dierking
  (2013), *Sea ice monitoring by synthetic aperture radar*, Oceanography 26(2) — new/young
  ice from very dark to very bright (frost flowers, rafting), level FYI around −20 dB,
  deformed ice several dB brighter, open water from below −25 dB (calm) to ice-like values
  when wind-roughened. Cross-polarised ocean backscatter rises with wind and depends little on
  incidence: Vachon & Wolfe (2011), *C-band cross-polarization wind speed retrieval*, IEEE
  GRSL 8(3). **The levels at 30°, the spreads, the texture parameters, the slopes of water,
  brash/pancake and young ice and the other HV slopes are assumptions of this simulation**
  chosen inside those ranges, not measurements.
* Thermal noise: residual noise after the ESA noise-vector subtraction, worst near the
  sub-swath boundaries and in the cross-polarised channel, is described by Park et al. (2018),
  *Efficient thermal noise removal for Sentinel-1 TOPSAR cross-polarization channel*, IEEE
  TGRS 56(3). The size of the scaling errors here (:data:`SWATH_NOISE_ERROR`,
  :data:`SEAM_NOISE_EXCESS`) is an assumption.
* ENL 4.4 of IW GRDH: ESA Sentinel-1 product definition (IW GRD high resolution, 10 m
  pixels).
* For scale: CNNs on real Sentinel-1 ice-type charts reach about 90 % overall accuracy
  (Boulze, Korosov & Brajard 2020, Remote Sensing 12(13), 2165: four classes, 90.5 %/91.6 %);
  texture features + random forest 87 % in winter (Park et al. 2020, The Cryosphere 14, 2629).
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
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from workbench.errors import DataError
from workbench.samples.sarsen_assets import GRD_SAFE_NAME, find_grd_safe
from workbench.sentinel1.calibration import AzimuthNoiseBlock, azimuth_noise, dn_from_sigma0, from_db
from workbench.sentinel1.safe import Sentinel1Metadata, Window, open_safe, read_metadata

__all__ = [
    "CLASS_NAMES",
    "LAND_CLASS",
    "SIGMA0_MODELS",
    "Sigma0Model",
    "SampleScene",
    "simulate_chart",
    "simulate_floes",
    "simulate_sigma0",
    "speckle",
    "noise_scaling",
    "subswath_seams",
    "simulate_dn",
    "build_sample_scene",
    "ensure_sample_scene",
    "COLLECTION_ID",
    "ENL",
    "SPECKLE_CELL",
    "SWATH_NOISE_ERROR",
    "SEAM_NOISE_EXCESS",
    "SEAM_WIDTH_PX",
    "FLOE_PX",
    "DEFAULT_SIZE",
]

log = logging.getLogger(__name__)

COLLECTION_ID = "sentinel-1-grd"
CLASS_NAMES = ("water", "brash_pancake_ice", "young_ice", "level_first_year_ice", "deformed_ice")
LAND_CLASS = 5
ENL = 4.4  # equivalent number of looks of IW GRDH (ESA Sentinel-1 product definition)
#: Side (pixels) of one speckle cell: GRDH has 10 m pixels but ~20 × 22 m resolution, so
#: neighbouring pixels share their speckle; one gamma value per 2 × 2 pixels.
SPECKLE_CELL = 2
#: Relative error of the noise LUT per sub-swath (IW1, IW2, IW3): the noise really present is
#: ``(1 + error) ×`` the LUT (assumption; sizes like the per-sub-swath rescaling of Park et al. 2018).
SWATH_NOISE_ERROR = (0.10, -0.06, 0.04)
#: Extra noise at a sub-swath seam, relative to the LUT, falling off as a Gaussian of
#: ``SEAM_WIDTH_PX`` pixels (≈1.5 km) on both sides (assumption).
SEAM_NOISE_EXCESS = 0.45
SEAM_WIDTH_PX = 150.0
#: Typical floe / ice-field size in full-resolution pixels (≈2 km): each floe has its own level.
FLOE_PX = 192
#: Default window side (full-resolution pixels) of a sample scene.
DEFAULT_SIZE = 3072
SAMPLE_PRODUCT_NAME = GRD_SAFE_NAME.replace("_1SDV_", "_1SDH_")


@dataclass(frozen=True)
class Sigma0Model:
    """σ⁰ model of one surface class.

    The noise-free σ⁰ (dB) of a pixel at incidence θ in a floe with standard-normal offsets
    ``z_hh, z_hv`` is ``db30 + slope · (θ − 30°) + floe_db · z + texture + ridges + spots``
    per polarisation.

    Attributes
    ----------
    hh_db30, hh_slope, hv_db30, hv_slope
        Level at 30° (dB) and incidence-angle slope (dB/°) of HH and HV.
    texture_db
        Std (dB) of the granular texture (HH; HV gets 0.7 of it).
    hh_floe_db, hv_floe_db
        Std (dB) of the level from floe to floe.
    texture_px
        Correlation length (full-resolution pixels) of the granular texture.
    ridge_px
        Correlation length of the field whose zero lines are the ridges (0: no ridges); ridges
        lie about ``3 × ridge_px`` apart.
    ridge_hh_db, ridge_hv_db
        Brightening (dB) on a ridge.
    spot_fraction, spot_hh_db, spot_hv_db
        Share of the area covered by bright spots (frost flowers, rafting) and their brightening.
    """

    hh_db30: float
    hh_slope: float
    hv_db30: float
    hv_slope: float
    texture_db: float = 0.0
    hh_floe_db: float = 0.0
    hv_floe_db: float = 0.0
    texture_px: float = 3.0
    ridge_px: float = 0.0
    ridge_hh_db: float = 0.0
    ridge_hv_db: float = 0.0
    spot_fraction: float = 0.0
    spot_hh_db: float = 0.0
    spot_hv_db: float = 0.0


# Winter C band; see the module docstring for what is measured (the FYI slopes) and what is assumed.
SIGMA0_MODELS: dict[str, Sigma0Model] = {
    # open water: calm and wind-roughened, mixed by a smooth wind field; steep HH slope, flat HV
    "water_calm": Sigma0Model(-26.0, -0.80, -35.0, -0.10, texture_db=0.3, texture_px=40.0),
    "water_windy": Sigma0Model(-17.0, -0.80, -29.0, -0.10, texture_db=0.8, texture_px=40.0),
    # brash / pancake ice: bright rims, granular texture, HV moderate
    "brash_pancake_ice": Sigma0Model(-14.0, -0.25, -23.0, -0.15, texture_db=2.2, hh_floe_db=1.3,
                                     hv_floe_db=1.0, texture_px=4.0),
    # young ice: wide spread (frost flowers, rafting), dark to bright; overlaps level FYI
    "young_ice": Sigma0Model(-18.0, -0.25, -26.0, -0.12, texture_db=0.8, hh_floe_db=1.6, hv_floe_db=1.0,
                             texture_px=6.0, spot_fraction=0.15, spot_hh_db=4.0, spot_hv_db=2.0),
    # level first-year ice: smooth, sparse ridges; HV near the noise floor
    "level_first_year_ice": Sigma0Model(-19.5, -0.25, -27.5, -0.11, texture_db=0.5, hh_floe_db=1.1,
                                        hv_floe_db=0.8, texture_px=6.0, ridge_px=70.0, ridge_hh_db=5.0,
                                        ridge_hv_db=4.0),
    # deformed ice: ridge network and rubble; overlaps brash/pancake ice in level
    "deformed_ice": Sigma0Model(-13.0, -0.24, -21.5, -0.16, texture_db=1.0, hh_floe_db=1.3, hv_floe_db=1.0,
                                texture_px=3.0, ridge_px=18.0, ridge_hh_db=6.0, ridge_hv_db=5.0),
    "land": Sigma0Model(-7.0, -0.10, -14.0, -0.10, texture_db=1.5, texture_px=8.0),
}

#: Width (full-resolution pixels) of a ridge line.
RIDGE_WIDTH_PX = 1.5


@dataclass(frozen=True)
class SampleScene:
    """Paths of one built sample scene."""

    scene_id: str
    safe: Path
    chart: Path
    window: Window
    item_id: str


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian-correlated noise of unit variance (made at a coarse scale for large ``sigma``)."""
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (2,))
    factor = max(1, int(sig.min() // 4))
    small = (-(-shape[0] // factor) + 1, -(-shape[1] // factor) + 1)
    field = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma=tuple(sig / factor),
                                    mode="reflect")
    if factor > 1:
        field = ndimage.zoom(field, factor, order=1)
    field = field[: shape[0], : shape[1]]
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


#: Share of the chart's regions drawn for each class beyond the first of each (water, brash/pancake,
#: young, level first-year, deformed); water also gets the leads.
REGION_CLASS_SHARES = (0.2, 0.2, 0.2, 0.2, 0.2)


def simulate_chart(shape: tuple[int, int], *, rng: np.random.Generator, n_regions: int | None = None) -> np.ndarray:
    """Class raster (``int16``): 0..4 the ice classes, :data:`LAND_CLASS` land.

    Warped Voronoi regions (each class present; ``n_regions`` default: 14 per 2048 × 2048
    pixels, at least 14), a land strip along one edge with a wavy coastline, and two narrow
    leads (water) across the ice.
    """
    h, w = shape
    if min(h, w) < 64:
        raise DataError(f"sample scene shape {shape} is too small; expected at least 64 × 64 pixels")
    if n_regions is None:
        n_regions = max(14, int(round(14 * h * w / 2048**2)))
    if n_regions < 5:
        raise DataError(f"n_regions must be >= 5 (one per class), got {n_regions}")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = 0.06 * min(h, w)
    wy = yy + warp * _smooth_noise(rng, shape, min(h, w) / 12)
    wx = xx + warp * _smooth_noise(rng, shape, min(h, w) / 12)
    seeds = rng.uniform([0, 0], [h, w], size=(n_regions, 2))
    classes = np.concatenate([np.arange(5), rng.choice(5, n_regions - 5, p=REGION_CLASS_SHARES)])
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


def simulate_floes(shape: tuple[int, int], *, rng: np.random.Generator, floe_px: float = FLOE_PX) -> np.ndarray:
    """Floe index per pixel (``int32``): a warped Voronoi tessellation of cells about ``floe_px`` wide.

    Made on a grid 4× coarser than ``shape`` (the 40 m grid of the preprocessed cube) and
    repeated, so it is cheap for large scenes.
    """
    if floe_px < 8:
        raise DataError(f"floe_px must be >= 8 pixels, got {floe_px}")
    h, w = shape
    f = 4
    ch, cw = -(-h // f), -(-w // f)
    n = max(4, int(round(h * w / floe_px**2)))
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    warp = 0.25 * floe_px / f
    wy = yy + warp * _smooth_noise(rng, (ch, cw), max(2.0, floe_px / f / 3))
    wx = xx + warp * _smooth_noise(rng, (ch, cw), max(2.0, floe_px / f / 3))
    seeds = rng.uniform([0, 0], [ch, cw], size=(n, 2)).astype(np.float32)
    coarse = np.empty((ch, cw), dtype=np.int32)
    for r0 in range(0, ch, 64):
        dist = (wy[r0 : r0 + 64, :, None] - seeds[:, 0]) ** 2 + (wx[r0 : r0 + 64, :, None] - seeds[:, 1]) ** 2
        coarse[r0 : r0 + 64] = np.argmin(dist, axis=-1)
    return np.repeat(np.repeat(coarse, f, axis=0), f, axis=1)[:h, :w]


def _ridges(rng: np.random.Generator, shape: tuple[int, int], length_px: float) -> np.ndarray:
    """Ridge profile in [0, 1]: thin lines along the zero set of a correlated random field."""
    field = _smooth_noise(rng, shape, length_px)
    eps = RIDGE_WIDTH_PX / (length_px * np.sqrt(2.0))  # |∇field| ≈ 1 / (√2 · length) for unit variance
    return np.exp(-((field / eps) ** 2)).astype(np.float32)


def simulate_sigma0(
    labels: np.ndarray,
    incidence: np.ndarray,
    *,
    rng: np.random.Generator,
    floes: np.ndarray | None = None,
    models: dict[str, Sigma0Model] | None = None,
) -> dict[str, np.ndarray]:
    """Noise-free σ⁰ (linear) of HH and HV for a class raster and incidence angles (degrees).

    Parameters
    ----------
    labels
        Class raster (0..4 the classes of :data:`CLASS_NAMES`, :data:`LAND_CLASS` land).
    incidence
        Incidence angle (degrees) per pixel, same shape.
    rng
        Random generator (floes, offsets, texture).
    floes
        Floe index per pixel (default: :func:`simulate_floes` with ``rng``).
    models
        Class models (default :data:`SIGMA0_MODELS`; keys ``water_calm``, ``water_windy``, the
        ice class names and ``land``).

    Returns
    -------
    dict
        ``{"hh": array, "hv": array}`` float32 linear σ⁰.
    """
    if labels.shape != incidence.shape:
        raise DataError(f"labels {labels.shape} and incidence {incidence.shape} differ in shape")
    models = SIGMA0_MODELS if models is None else models
    missing = {"water_calm", "water_windy", "land", *CLASS_NAMES[1:]} - set(models)
    if missing:
        raise DataError(f"models lacks the class model(s) {sorted(missing)}")
    shape = labels.shape
    if floes is None:
        floes = simulate_floes(shape, rng=rng)
    elif floes.shape != shape:
        raise DataError(f"floes {floes.shape} and labels {shape} differ in shape")
    n_floes = int(floes.max()) + 1
    z_hh = rng.standard_normal(n_floes).astype(np.float32)
    z_hv = (0.5 * z_hh + np.sqrt(0.75) * rng.standard_normal(n_floes)).astype(np.float32)  # HH/HV correlated
    dtheta = (incidence - 30.0).astype(np.float32)
    db = {"hh": np.zeros(shape, dtype=np.float32), "hv": np.zeros(shape, dtype=np.float32)}

    # open water: a km-scale wind field mixes the calm and windy models; wind streaks along azimuth
    water = labels == 0
    wind = np.clip(0.35 + 0.25 * _smooth_noise(rng, shape, min(shape) / 8), 0.0, 1.0)
    streaks = _smooth_noise(rng, shape, (40.0, 6.0))
    calm, windy = models["water_calm"], models["water_windy"]
    for pol, fac in (("hh", 1.0), ("hv", 0.7)):
        c30, c_slope = getattr(calm, f"{pol}_db30"), getattr(calm, f"{pol}_slope")
        w30, w_slope = getattr(windy, f"{pol}_db30"), getattr(windy, f"{pol}_slope")
        level = (1 - wind) * (c30 + c_slope * dtheta) + wind * (w30 + w_slope * dtheta)
        amp = fac * ((1 - wind) * calm.texture_db + wind * windy.texture_db)
        db[pol][water] = (level + amp * streaks)[water]

    for cls, name in enumerate(CLASS_NAMES[1:] + ("land",), start=1):
        code = LAND_CLASS if name == "land" else cls
        mask = labels == code
        if not mask.any():
            continue
        m = models[name]
        texture = _smooth_noise(rng, shape, m.texture_px)[mask] if m.texture_db else 0.0
        ridge = np.zeros(int(mask.sum()), dtype=np.float32)
        if m.ridge_px > 0:
            ridge = _ridges(rng, shape, m.ridge_px)[mask]
            if m.ridge_px < 30:  # dense ridging: a second, crossing family
                ridge = np.maximum(ridge, _ridges(rng, shape, m.ridge_px * 1.4)[mask])
        spots = np.zeros(int(mask.sum()), dtype=np.float32)
        if m.spot_fraction > 0:
            field = _smooth_noise(rng, shape, 10.0)[mask]
            threshold = float(np.quantile(field, 1.0 - m.spot_fraction))
            spots = np.clip((field - threshold) / 0.3, 0.0, 1.0)
        fl = floes[mask]
        for pol, z, fac in (("hh", z_hh, 1.0), ("hv", z_hv, 0.7)):
            db[pol][mask] = (
                getattr(m, f"{pol}_db30") + getattr(m, f"{pol}_slope") * dtheta[mask]
                + getattr(m, f"{pol}_floe_db") * z[fl] + fac * m.texture_db * texture
                + getattr(m, f"ridge_{pol}_db") * ridge + getattr(m, f"spot_{pol}_db") * spots
            )
    return {pol: from_db(v) for pol, v in db.items()}


def speckle(shape: tuple[int, int], *, rng: np.random.Generator, enl: float = ENL, cell: int = SPECKLE_CELL) -> np.ndarray:
    """Multiplicative speckle: ``Gamma(enl, 1/enl)`` (mean 1, ENL ``enl``) per ``cell × cell`` pixels.

    The per-pixel ENL is ``enl``; averaging ``k × k`` pixels (``k`` a multiple of ``cell``) gives
    ``enl · (k / cell)²`` looks.
    """
    if enl <= 0 or cell < 1:
        raise DataError(f"speckle needs enl > 0 and cell >= 1, got enl={enl}, cell={cell}")
    h, w = shape
    cells = rng.gamma(enl, 1.0 / enl, size=(-(-h // cell), -(-w // cell))).astype(np.float32)
    return np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[:h, :w]


def subswath_seams(blocks: Sequence[AzimuthNoiseBlock]) -> np.ndarray:
    """Pixel columns where one sub-swath ends and the next begins (from the azimuth-noise blocks)."""
    starts = sorted({int(b.first_pixel) for b in blocks})
    return np.asarray(starts[1:], dtype=np.float64) - 0.5


def noise_scaling(cols: np.ndarray, seams: Sequence[float]) -> np.ndarray:
    """Ratio of the thermal noise really present to the noise LUT, per image column.

    ``1 + SWATH_NOISE_ERROR[sub-swath] + SEAM_NOISE_EXCESS · exp(−d² / 2 SEAM_WIDTH_PX²)``
    with ``d`` the distance to the nearest seam: subtracting the LUT leaves a residue of
    ``(scaling − 1) · NESZ`` — a step between sub-swaths and a bright band at each seam.
    """
    cols = np.asarray(cols, dtype=np.float64)
    seams = np.sort(np.asarray(seams, dtype=np.float64))
    swath = np.searchsorted(seams, cols)
    errors = np.asarray(SWATH_NOISE_ERROR + (0.0,) * max(0, len(seams) + 1 - len(SWATH_NOISE_ERROR)))
    out = 1.0 + errors[swath]
    if seams.size:
        d = np.min(np.abs(cols[:, None] - seams[None, :]), axis=1)
        out = out + SEAM_NOISE_EXCESS * np.exp(-0.5 * (d / SEAM_WIDTH_PX) ** 2)
    return out.astype(np.float32)


def simulate_dn(
    sigma0: np.ndarray,
    *,
    a_sigma: np.ndarray,
    noise: np.ndarray,
    scaling: np.ndarray,
    rng: np.random.Generator,
    enl: float = ENL,
) -> np.ndarray:
    """Digital numbers (uint16) of noise-free ``sigma0`` as the instrument records them.

    ``DN² = A_σ² · (σ⁰ + scaling · η / A_σ²) · speckle``: the thermal noise (the LUT ``noise``
    times ``scaling``, broadcast over rows) adds to σ⁰ and both carry the speckle.
    """
    nesz = np.asarray(noise, dtype=np.float32) * np.asarray(scaling, dtype=np.float32) / (a_sigma * a_sigma)
    measured = (sigma0 + nesz) * speckle(sigma0.shape, rng=rng, enl=enl)
    return np.clip(np.rint(dn_from_sigma0(measured, a_sigma)), 1, 65534).astype(np.uint16)


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
    size: int = DEFAULT_SIZE,
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
        Window side in full-resolution (10 m) pixels; a multiple of 256 (default 3072: a
        768 × 768 cube at 40 m, about 1000 patches of 32 × 32, enough for a five-class
        validation split that holds every class).
    origin
        ``(row, col)`` of the window in the real product's image; multiples of 256. The
        default window holds the IW1/IW2 seam (pixel 8890) and its noise residue.
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
    scaling = noise_scaling(cols, subswath_seams(meta.noise_azimuth))[None, :]
    dn = {pol: simulate_dn(s0, a_sigma=a_sigma, noise=noise, scaling=scaling, rng=rng) for pol, s0 in sigma.items()}

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
    size: int = DEFAULT_SIZE,
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
