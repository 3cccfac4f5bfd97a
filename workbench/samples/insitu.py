"""LUCAS-like in-situ crop survey points for the sample parcels.

The Land Use/Cover Area frame Survey (LUCAS) records, at points usually seen
from a road, the land cover with its own codelist (``B11`` common wheat,
``B16`` maize, ``E20`` grassland ...). This module draws such points from the
sample parcels: each point lies inside a parcel a few metres from its border
(the surveyor's road side), carries the LUCAS code of the parcel's crop, and a
small share of points is mis-recorded, as in a real survey.

:func:`generate_lucas_points` draws the richer survey the validation of the crop
map runs on (:mod:`workbench.validation`): points inside fields and on the roads
beside them, GPS noise, a known share of wrong codes (another crop) and of absent
crops (bare soil, spontaneous vegetation, the road itself: codes no crop class maps
to), and no point within a small margin of the validation distance from any parcel,
so that the answer does not hinge on a projection's scale factor.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import DataError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["ABSENT_CROP_CODES", "CROP_TO_LUCAS", "LUCAS_CODES", "generate_insitu_points", "generate_lucas_points"]

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
    "A22": "Non built-up linear features",
    "E30": "Spontaneously re-vegetated surfaces",
    "F40": "Other bare soil",
}

#: Codes a surveyor records where the field holds no crop (no crop class maps to them).
ABSENT_CROP_CODES: tuple[str, ...] = ("A22", "E30", "F40")

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
    parcels: gpd.GeoDataFrame,
    *,
    fraction: float = 0.35,
    error_rate: float = 0.03,
    seed: int = 0,
    survey_year: int | None = None,
) -> gpd.GeoDataFrame:
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


#: Share of grassland points a surveyor records as temporary grassland (``B55``) instead of ``E20``.
_TEMPORARY_GRASSLAND = 0.3


def _outer_rings(geoms: np.ndarray) -> np.ndarray:
    import shapely

    first = shapely.get_geometry(geoms, 0)  # a Polygon's part 0 is the polygon itself
    return shapely.get_exterior_ring(first)


def _inward_normals(geoms: np.ndarray, points: np.ndarray, ahead: np.ndarray) -> np.ndarray:
    """Unit normals of the parcel border at ``points`` (tangent towards ``ahead``), pointing into the parcel."""
    import shapely

    xy = shapely.get_coordinates(points)
    tangent = shapely.get_coordinates(ahead) - xy
    length = np.hypot(tangent[:, 0], tangent[:, 1])
    length[length == 0] = 1.0
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]]) / length[:, None]
    probe = xy + normal * 0.25
    inside = shapely.contains_xy(geoms, probe[:, 0], probe[:, 1])
    return np.where(inside[:, None], normal, -normal)


def _clear_of_threshold(xy: np.ndarray, parcels: np.ndarray, *, threshold: float, margin: float,
                        rng: np.random.Generator, attempts: int = 25) -> np.ndarray:
    """Move points (a few centimetres at a time) until no parcel lies within ``threshold ± margin``.

    Returns the mask of points that got clear (the rest stay ambiguous and are dropped).
    """
    import shapely

    tree = shapely.STRtree(parcels)
    ok = np.zeros(len(xy), dtype=bool)
    todo = np.arange(len(xy))
    for _ in range(attempts):
        if not len(todo):
            break
        points = shapely.points(xy[todo])
        pi, gi = tree.query(points, predicate="dwithin", distance=threshold + margin)
        dist = shapely.distance(points[pi], parcels[gi])
        ambiguous = np.unique(pi[np.abs(dist - threshold) <= margin])
        clear = np.setdiff1d(np.arange(len(todo)), ambiguous)
        ok[todo[clear]] = True
        todo = todo[ambiguous]
        xy[todo] += rng.normal(0.0, 4 * margin, size=(len(todo), 2))
    return ok


def generate_lucas_points(
    parcels: gpd.GeoDataFrame,
    *,
    fraction: float = 0.5,
    road_share: float = 0.4,
    wrong_share: float = 0.05,
    absent_share: float = 0.05,
    gps_sigma: float = 2.0,
    threshold: float = 10.0,
    margin: float = 0.05,
    crop_column: str = "crop_name",
    seed: int = 0,
    survey_year: int | None = None,
) -> gpd.GeoDataFrame:
    """Draw a LUCAS-style in-situ survey from parcels (vectorised).

    Each chosen parcel gets one point: either in the field (5 to 15 m inside its
    border) or on the road beside it (1 to 8 m outside), then moved by GPS noise.
    Its code is the LUCAS code of the parcel's crop (grassland is sometimes recorded
    as temporary grassland ``B55``), another crop's code for a share ``wrong_share``
    (survey error), or a code no crop maps to (``ABSENT_CROP_CODES``) for a share
    ``absent_share`` (the crop is absent: bare soil, weeds, the road).

    Parameters
    ----------
    parcels
        GeoDataFrame with ``parcel_id`` and ``crop_column`` columns (crop class names of
        :data:`CROP_TO_LUCAS`) and polygons in a projected CRS in metres.
    fraction
        Share of parcels that receive a point (0 < fraction <= 1).
    road_share
        Share of points taken from the road beside the parcel.
    wrong_share, absent_share
        Shares of points recorded with another crop's code, and with a no-crop code.
    gps_sigma
        Standard deviation of the GPS error per axis, metres.
    threshold, margin
        No point is left within ``threshold ± margin`` metres of any parcel (points there
        are nudged, or dropped): the validation's answer does not depend on how a tool
        measures 10 m (planar UTM metres vs geodesic metres differ by 0.04 %).
    crop_column
        Column of ``parcels`` with the true crop.
    seed
        Seed of the random generator.
    survey_year
        Year of the survey dates (May to July); default 2024.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``point_id, parcel_id, lucas_code, lucas_label, survey_date, position
        ("field" | "road"), recorded ("right" | "wrong" | "absent"), geometry`` in
        EPSG:4326, the parcels' CRS kept in ``attrs["source_crs"]``.

    Raises
    ------
    DataError
        When ``parcels`` is empty, lacks a column, is not in a projected CRS in metres,
        holds crop names without a LUCAS code, or a share or distance is out of range.
    """
    import geopandas as gpd
    import shapely

    for column in ("parcel_id", crop_column):
        if column not in parcels.columns:
            raise DataError(f"parcels must have a {column!r} column; got {list(parcels.columns)}")
    if len(parcels) == 0:
        raise DataError("parcels is empty: no parcel to draw survey points from")
    crs = parcels.crs
    if crs is None or not crs.is_projected or (crs.axis_info and crs.axis_info[0].unit_name not in ("metre", "meter")):
        raise DataError(f"parcels must be in a projected CRS in metres, got {crs}")
    if not 0 < fraction <= 1:
        raise DataError(f"fraction must be in (0, 1], got {fraction}")
    for name, value in (("road_share", road_share), ("wrong_share", wrong_share), ("absent_share", absent_share)):
        if not 0 <= value <= 1:
            raise DataError(f"{name} must be in [0, 1], got {value}")
    if wrong_share + absent_share > 1:
        raise DataError(f"wrong_share + absent_share must be at most 1, got {wrong_share + absent_share}")
    if gps_sigma < 0 or threshold <= 0 or not 0 <= margin < threshold:
        raise DataError(f"need gps_sigma >= 0, threshold > 0 and 0 <= margin < threshold; got "
                        f"{gps_sigma}, {threshold}, {margin}")
    crops = parcels[crop_column]
    unknown = set(crops.dropna()) - set(CROP_TO_LUCAS)
    if unknown or crops.isna().any():
        raise DataError(f"parcels hold crop names without a LUCAS code: {sorted(map(str, unknown)) or ['<missing>']}")
    rng = np.random.default_rng(seed)
    chosen = parcels[rng.random(len(parcels)) < fraction]
    n = len(chosen)
    geoms = chosen.geometry.to_numpy()
    rings = _outer_rings(geoms)
    along = rng.uniform(0.0, 1.0, n) * shapely.length(rings)
    on_border = shapely.line_interpolate_point(rings, along)
    ahead = shapely.line_interpolate_point(rings, along + 0.5)
    normal = _inward_normals(geoms, on_border, ahead)
    road = rng.random(n) < road_share
    offset = np.where(road, -rng.uniform(1.0, 8.0, n), rng.uniform(5.0, 15.0, n))
    xy = shapely.get_coordinates(on_border) + normal * offset[:, None]
    field_outside = ~road & ~shapely.contains_xy(geoms, xy[:, 0], xy[:, 1])
    if field_outside.any():  # a narrow field: take a point that surely lies inside
        xy[field_outside] = shapely.get_coordinates(shapely.point_on_surface(geoms[field_outside]))
    xy += rng.normal(0.0, gps_sigma, size=xy.shape)
    clear = _clear_of_threshold(xy, parcels.geometry.to_numpy(), threshold=threshold, margin=margin, rng=rng)

    true_codes = crops.loc[chosen.index].map(CROP_TO_LUCAS).to_numpy(dtype=object)
    grass = true_codes == "E20"
    true_codes[grass & (rng.random(n) < _TEMPORARY_GRASSLAND)] = "B55"
    crop_codes = np.array(sorted(set(CROP_TO_LUCAS.values())), dtype=object)
    draw = rng.random(n)
    recorded = np.where(draw < wrong_share, "wrong", np.where(draw < wrong_share + absent_share, "absent", "right"))
    codes = true_codes.copy()
    wrong = recorded == "wrong"
    # another crop's code: a uniform pick among the codes other than the true one
    picks = rng.integers(0, len(crop_codes) - 1, n)
    base = np.searchsorted(crop_codes, np.where(true_codes == "B55", "E20", true_codes).astype(str))
    codes[wrong] = crop_codes[picks + (picks >= base)][wrong]
    absent = recorded == "absent"
    codes[absent] = np.asarray(ABSENT_CROP_CODES, dtype=object)[rng.integers(0, len(ABSENT_CROP_CODES), n)][absent]
    year = survey_year or 2024
    days = rng.integers(0, 92, n)
    dates = (np.datetime64(f"{year}-05-01") + days.astype("timedelta64[D]")).astype(str)

    keep = clear
    frame = gpd.GeoDataFrame(
        {
            "point_id": [f"LUCAS-{seed:02d}-{i:05d}" for i in range(int(keep.sum()))],
            "parcel_id": chosen["parcel_id"].to_numpy()[keep],
            "lucas_code": codes[keep],
            "lucas_label": [LUCAS_CODES[c] for c in codes[keep]],
            "survey_date": dates[keep],
            "position": np.where(road, "road", "field")[keep],
            "recorded": recorded[keep],
        },
        geometry=shapely.points(xy[keep]),
        crs=crs,
    )
    frame = frame.to_crs(4326)
    frame.attrs["source_crs"] = str(crs)
    return frame
