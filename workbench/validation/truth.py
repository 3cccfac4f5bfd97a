"""The geopandas truth of the in-situ validation: pure computation on two GeoDataFrames.

A survey point is **confirmed** when a parcel whose (mapped) crop class is one its
LUCAS code maps to lies within ``distance_m`` metres of it, and a **negative**
validation point otherwise (paper §VIII-B). Distances are planar, in the parcels'
projected CRS in metres (a CRS in degrees is refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.samples.insitu import LUCAS_CODES
from workbench.samples.sentinel2 import CROP_CLASSES
from workbench.validation.codelist import DEFAULT_CODE_MAP, normalise_code_map
from workbench.validation.report import CONFIRMED, NEGATIVE, ValidationError, ValidationReport

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["check_distance", "metric_crs", "parcel_crop_column", "validate_crop_map"]


def check_distance(distance_m: float) -> float:
    """``distance_m`` as a float, or a :class:`ValidationError` if it is not a finite number >= 0."""
    try:
        value = float(distance_m)
    except (TypeError, ValueError):
        raise ValidationError(f"distance_m must be a number of metres, got {distance_m!r}") from None
    if not np.isfinite(value) or value < 0:
        raise ValidationError(f"distance_m must be a finite distance >= 0 metres, got {distance_m!r}")
    return value


def parcel_crop_column(parcels: gpd.GeoDataFrame, crop_column: str | None = None) -> str:
    """The column holding the map's crop class: ``crop_column``, else ``predicted_name``, else ``crop_name``."""
    if crop_column is not None:
        if crop_column not in parcels.columns:
            raise ValidationError(f"parcels lack the crop column {crop_column!r}; columns: {list(parcels.columns)}")
        return crop_column
    for name in ("predicted_name", "crop_name"):
        if name in parcels.columns:
            return name
    raise ValidationError(f"parcels need a 'predicted_name' (crop map) or 'crop_name' column; columns: "
                          f"{list(parcels.columns)}")


def metric_crs(frame: gpd.GeoDataFrame, what: str) -> None:
    """Refuse a frame whose CRS is missing, geographic (degrees) or not in metres."""
    crs = frame.crs
    if crs is None:
        raise ValidationError(f"{what} have no CRS: distances in metres need a projected CRS in metres")
    units = {a.unit_name for a in crs.axis_info}
    if not crs.is_projected or not units <= {"metre", "meter"}:
        raise ValidationError(f"{what} are in {crs.name} (units {sorted(units)}): distances in metres need a "
                              "projected CRS in metres (e.g. UTM); reproject with .to_crs()")


def _check_columns(frame: object, columns: tuple[str, ...], what: str) -> None:
    import geopandas as gpd

    if not isinstance(frame, gpd.GeoDataFrame):
        raise ValidationError(f"{what} must be a GeoDataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(f"{what} lack column(s) {missing}; columns: {list(frame.columns)}")


def validate_crop_map(
    parcels: gpd.GeoDataFrame,
    points: gpd.GeoDataFrame,
    *,
    code_map: Mapping[str, str | Iterable[str] | None] = DEFAULT_CODE_MAP,
    distance_m: float = 10.0,
    crop_column: str | None = None,
    codes: Mapping[str, str] = LUCAS_CODES,
    classes: Iterable[str] = CROP_CLASSES,
) -> ValidationReport:
    """Validate a crop-type map against in-situ points with geopandas (the truth).

    Parameters
    ----------
    parcels
        The map: polygons with ``parcel_id`` and a crop class column (``crop_column``;
        default ``predicted_name``, the crop map's label, else ``crop_name``), in a
        projected CRS in metres. Parcels without a label are left out.
    points
        The survey: ``point_id``, ``lucas_code`` and point geometries in any CRS.
    code_map
        LUCAS code -> crop class(es) it maps to (empty: none); every code of the points
        must be a key.
    distance_m
        A point is confirmed when a parcel of a mapped crop lies within this many metres.
    crop_column
        Parcels' crop class column (see ``parcels``).
    codes
        The code list: code -> label (the report's ``lucas_label``).
    classes
        The crop classes the map and the code map may name.

    Returns
    -------
    ValidationReport
        ``method="geopandas"``.

    Raises
    ------
    ValidationError
        For an empty point set, missing columns, duplicate point ids, points without a
        geometry, codes that the code map or the code list lacks, crop classes outside
        ``classes``, a CRS in degrees (or none) for the parcels, or a negative distance.
    """
    import geopandas as gpd

    distance = check_distance(distance_m)
    _check_columns(points, ("point_id", "lucas_code"), "points")
    _check_columns(parcels, ("parcel_id",), "parcels")
    if len(points) == 0:
        raise ValidationError("the point set is empty: nothing to validate the map with")
    column = parcel_crop_column(parcels, crop_column)
    mapping = normalise_code_map(code_map, classes=classes)
    metric_crs(parcels, "parcels")
    if points.crs is None:
        raise ValidationError("points have no CRS: say in which CRS their coordinates are (e.g. EPSG:4326)")
    if points["point_id"].duplicated().any():
        dups = points.loc[points["point_id"].duplicated(), "point_id"].head(5).tolist()
        raise ValidationError(f"point ids must be unique; duplicated: {dups}")
    geoms = points.geometry
    if geoms.isna().any() or geoms.is_empty.any() or (geoms.geom_type != "Point").any():
        bad = points.loc[geoms.isna() | geoms.is_empty | (geoms.geom_type != "Point"), "point_id"].head(5).tolist()
        raise ValidationError(f"every survey point needs a point geometry; not so for {bad}")
    point_codes = points["lucas_code"].astype(object)
    unknown = sorted(set(point_codes.dropna()) - set(mapping)) + (["<missing>"] if point_codes.isna().any() else [])
    if unknown:
        raise ValidationError(f"points carry LUCAS code(s) {unknown} that the code map does not know "
                              f"(it maps {sorted(mapping)})")
    unlabelled = sorted(set(point_codes) - set(codes))
    if unlabelled:
        raise ValidationError(f"points carry LUCAS code(s) {unlabelled} that the code list does not label")
    labelled = parcels[parcels[column].notna()]
    bad_classes = sorted(set(labelled[column]) - set(classes))
    if bad_classes:
        raise ValidationError(f"parcels' {column!r} holds unknown crop class(es) {bad_classes}")

    work = gpd.GeoDataFrame({"point_id": points["point_id"].to_numpy(), "lucas_code": point_codes.to_numpy()},
                            geometry=points.geometry.to_crs(parcels.crs).to_numpy(), crs=parcels.crs)
    mapped = pd.DataFrame([(code, crop) for code, crops in mapping.items() for crop in crops],
                          columns=["lucas_code", "crop"])
    target = gpd.GeoDataFrame({"parcel_id": labelled["parcel_id"].astype(str).to_numpy(),
                               "crop": labelled[column].to_numpy()},
                              geometry=labelled.geometry.to_numpy(), crs=parcels.crs)
    pi, gi = target.sindex.query(work.geometry.to_numpy(), predicate="dwithin", distance=distance)
    pairs = pd.DataFrame({"point": pi, "parcel": gi})
    pairs["lucas_code"] = work["lucas_code"].to_numpy()[pi]
    pairs["crop"] = target["crop"].to_numpy()[gi]
    pairs["parcel_id"] = target["parcel_id"].to_numpy()[gi]
    pairs = pairs.merge(mapped, on=["lucas_code", "crop"], how="inner")
    found = pairs.groupby("point").agg(n_parcels=("parcel_id", "nunique"), parcel_id=("parcel_id", "min"))
    n_parcels = found["n_parcels"].reindex(range(len(work)), fill_value=0).to_numpy()
    first = found["parcel_id"].reindex(range(len(work))).to_numpy(dtype=object)
    confirmed = n_parcels > 0
    frame = gpd.GeoDataFrame({
        "point_id": work["point_id"].astype(str).to_numpy(),
        "lucas_code": work["lucas_code"].astype(str).to_numpy(),
        "lucas_label": [codes[c] for c in work["lucas_code"]],
        "status": np.where(confirmed, CONFIRMED, NEGATIVE),
        "confirmed": confirmed,
        "n_parcels": n_parcels.astype("int64"),
        "parcel_id": np.where(confirmed, first, None),
    }, geometry=points.geometry.to_crs(4326).to_numpy(), crs=4326)
    return ValidationReport(frame, distance_m=distance, method="geopandas",
                            meta={"parcels": len(target), "crop_column": column, "crs": str(parcels.crs.name)})
