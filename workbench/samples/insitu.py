"""LUCAS-like in-situ crop survey points for the sample parcels.

The Land Use/Cover Area frame Survey (LUCAS) records, at points usually seen
from a road, the land cover with its own codelist (``B11`` common wheat,
``B16`` maize, ``E20`` grassland ...). This module draws such points from the
sample parcels: each point lies inside a parcel a few metres from its border
(the surveyor's road side), carries the LUCAS code of the parcel's crop, and a
small share of points is mis-recorded, as in a real survey.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import DataError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["LUCAS_CODES", "CROP_TO_LUCAS", "generate_insitu_points"]

#: LUCAS land-cover codes used by the sample (subset of the LUCAS 2022 codelist).
LUCAS_CODES: dict[str, str] = {
    "B11": "Common wheat",
    "B13": "Barley",
    "B14": "Rye",
    "B16": "Maize",
    "B18": "Triticale",
    "B19": "Other cereals",
    "B21": "Potatoes",
    "B22": "Sugar beet",
    "B31": "Sunflower",
    "B32": "Rape and turnip rape",
    "B33": "Soya",
    "B37": "Other non-permanent industrial crops",
    "B41": "Dry pulses",
    "B55": "Temporary grassland",
    "B70": "Permanent crops: fruit trees",
    "E20": "Grassland without tree/shrub cover",
}

#: Crop class of the sample (index into ``CROP_CLASSES``) -> LUCAS code.
CROP_TO_LUCAS: dict[str, str] = {
    "grassland": "E20",
    "maize": "B16",
    "legumes": "B41",
    "winter caraway": "B37",
    "winter wheat": "B11",
    "rapeseed": "B32",
    "potato": "B21",
    "rye": "B14",
    "winter barley": "B13",
    "beet": "B22",
    "spring barley": "B13",
    "soy": "B33",
    "sunflower": "B31",
    "permanent plantations": "B70",
    "triticale": "B18",
    "other": "B19",
}


def generate_insitu_points(
    parcels: "gpd.GeoDataFrame",
    *,
    fraction: float = 0.35,
    error_rate: float = 0.03,
    seed: int = 0,
    survey_year: int | None = None,
) -> "gpd.GeoDataFrame":
    """Draw LUCAS-like survey points from parcels.

    Parameters
    ----------
    parcels
        GeoDataFrame with ``parcel_id`` and ``crop_name`` columns and polygon
        geometries in a projected CRS (metres).
    fraction
        Share of parcels that receive a point (0 < fraction <= 1).
    error_rate
        Share of points whose recorded code is another crop's (survey error).
    seed
        Seed of the random generator.
    survey_year
        Year of the survey dates (May to July); default 2024.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``point_id, parcel_id, lucas_code, lucas_label, survey_date,
        geometry`` in EPSG:4326, the parcel's CRS kept in ``attrs["source_crs"]``.

    Raises
    ------
    DataError
        When ``parcels`` lacks a column, is not projected, or a fraction is out of range.
    """
    import geopandas as gpd

    for column in ("parcel_id", "crop_name", "geometry"):
        if column not in parcels.columns:
            raise DataError(f"parcels must have a {column!r} column; got {list(parcels.columns)}")
    if parcels.crs is None or not parcels.crs.is_projected:
        raise DataError(f"parcels must be in a projected CRS (metres), got {parcels.crs}")
    if not 0 < fraction <= 1:
        raise DataError(f"fraction must be in (0, 1], got {fraction}")
    if not 0 <= error_rate < 1:
        raise DataError(f"error_rate must be in [0, 1), got {error_rate}")
    unknown = set(parcels["crop_name"]) - set(CROP_TO_LUCAS)
    if unknown:
        raise DataError(f"parcels hold crop names without a LUCAS code: {sorted(unknown)}")
    rng = np.random.default_rng(seed)
    year = survey_year or 2024
    chosen = parcels[rng.random(len(parcels)) < fraction]
    codes = sorted(set(CROP_TO_LUCAS.values()))
    rows = []
    for i, (_, parcel) in enumerate(chosen.iterrows()):
        geom = parcel.geometry
        # a point 5 to 15 m inside the border of the parcel (seen from the road)
        inner = geom.buffer(-5.0)
        if inner.is_empty:
            continue
        ring = inner.exterior
        point = ring.interpolate(rng.uniform(0.0, ring.length))
        cx, cy = inner.centroid.x, inner.centroid.y
        step = rng.uniform(0.0, 10.0)
        dist = max(np.hypot(cx - point.x, cy - point.y), 1e-6)
        moved = type(point)(point.x + (cx - point.x) * step / dist, point.y + (cy - point.y) * step / dist)
        if not geom.contains(moved):
            moved = point
        code = CROP_TO_LUCAS[parcel["crop_name"]]
        if rng.random() < error_rate:
            code = str(rng.choice([c for c in codes if c != code]))
        day = dt.date(year, 5, 1) + dt.timedelta(days=int(rng.integers(0, 92)))
        rows.append(
            {
                "point_id": f"LUCAS-{seed:02d}-{i:05d}",
                "parcel_id": parcel["parcel_id"],
                "lucas_code": code,
                "lucas_label": LUCAS_CODES[code],
                "survey_date": day.isoformat(),
                "geometry": moved,
            }
        )
    frame = gpd.GeoDataFrame(
        rows,
        columns=["point_id", "parcel_id", "lucas_code", "lucas_label", "survey_date", "geometry"],
        geometry="geometry",
        crs=parcels.crs,
    )
    source_crs = str(parcels.crs)
    frame = frame.to_crs(4326)
    frame.attrs["source_crs"] = source_crs
    return frame
