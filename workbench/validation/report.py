"""The validation report: per-point status, per-class and total tables, a bar plot, a folium map, GeoParquet.

One :class:`ValidationReport` comes out of the geopandas truth
(:func:`workbench.validation.validate_crop_map`) and one out of the federated
GeoSPARQL query (:func:`workbench.validation.federated_validation`); on the same
data the two compare equal (``==``), and :meth:`ValidationReport.differences`
says what differs when they do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.errors import DataError

if TYPE_CHECKING:
    import folium
    import geopandas as gpd
    from matplotlib.figure import Figure

__all__ = ["CONFIRMED", "NEGATIVE", "POINT_COLUMNS", "ValidationError", "ValidationReport"]

CONFIRMED = "confirmed"
NEGATIVE = "negative"
#: Columns of :attr:`ValidationReport.points` (the geometry in EPSG:4326).
POINT_COLUMNS = ("point_id", "lucas_code", "lucas_label", "status", "confirmed", "n_parcels", "parcel_id", "geometry")
_TOLERANCE_DEG = 1e-7  # about 1 cm: WKT round trips and reprojections move a point by far less


class ValidationError(DataError):
    """The inputs of a validation are malformed (empty, missing columns, unknown codes, a CRS in degrees ...)."""


def _share(confirmed: pd.Series | int, points: pd.Series | int) -> Any:
    return np.where(np.asarray(points) > 0, np.asarray(confirmed) / np.maximum(np.asarray(points), 1), np.nan)


@dataclass(eq=False)
class ValidationReport:
    """Outcome of validating a crop-type map against in-situ points.

    Attributes
    ----------
    points
        One row per survey point (sorted by ``point_id``): its LUCAS code and label,
        ``status`` (``"confirmed"`` when a parcel of a crop its code maps to lies within
        ``distance_m``, else ``"negative"``), ``confirmed`` (bool), ``n_parcels`` (how
        many such parcels), ``parcel_id`` (the smallest of their ids, or None) and the
        point geometry (EPSG:4326).
    distance_m
        The validation distance in metres.
    method
        How the report was computed (``"geopandas"``, ``"federated"`` ...); not compared.
    """

    points: gpd.GeoDataFrame
    distance_m: float
    method: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in POINT_COLUMNS if c not in self.points.columns]
        if missing:
            raise ValidationError(f"report points lack column(s) {missing}; columns: {list(self.points.columns)}")
        frame = self.points[list(POINT_COLUMNS)].sort_values("point_id", kind="stable").reset_index(drop=True)
        frame["n_parcels"] = frame["n_parcels"].astype("int64")
        frame["confirmed"] = frame["confirmed"].astype(bool)
        frame["parcel_id"] = frame["parcel_id"].astype(object).where(frame["parcel_id"].notna(), None)
        self.points = frame

    # ------------------------------------------------------------------ tables

    @property
    def per_class(self) -> pd.DataFrame:
        """Per LUCAS class (the in-situ code): points, confirmed, negative, confirmed share."""
        grouped = self.points.groupby(["lucas_code", "lucas_label"], sort=True)["confirmed"]
        table = grouped.agg(points="size", confirmed="sum").reset_index()
        table["confirmed"] = table["confirmed"].astype("int64")
        table["negative"] = table["points"] - table["confirmed"]
        table["confirmed_share"] = _share(table["confirmed"], table["points"])
        return table[["lucas_code", "lucas_label", "points", "confirmed", "negative", "confirmed_share"]]

    @property
    def total(self) -> pd.DataFrame:
        """One row: points, confirmed, negative, confirmed share, and the distance used."""
        n = len(self.points)
        confirmed = int(self.points["confirmed"].sum())
        return pd.DataFrame({"points": [n], "confirmed": [confirmed], "negative": [n - confirmed],
                             "confirmed_share": [float(_share(confirmed, n))], "distance_m": [self.distance_m]})

    @property
    def negatives(self) -> gpd.GeoDataFrame:
        """The negative validation points."""
        return self.points[~self.points["confirmed"]]

    # ------------------------------------------------------------------ comparison

    def differences(self, other: ValidationReport) -> list[str]:
        """What differs between two reports (empty when they are equal)."""
        import shapely

        out: list[str] = []
        if not isinstance(other, ValidationReport):
            return [f"not a ValidationReport: {type(other).__name__}"]
        if not np.isclose(self.distance_m, other.distance_m):
            out.append(f"distance_m {self.distance_m} != {other.distance_m}")
        a, b = self.points, other.points
        ids_a, ids_b = set(a["point_id"]), set(b["point_id"])
        if ids_a != ids_b:
            out.append(f"points only in one report: {sorted(ids_a - ids_b)[:5]} / {sorted(ids_b - ids_a)[:5]}")
            return out
        for column in ("lucas_code", "lucas_label", "status", "confirmed", "n_parcels", "parcel_id"):
            left, right = a[column].to_numpy(dtype=object), b[column].to_numpy(dtype=object)
            bad = np.flatnonzero(left != right)
            if len(bad):
                shown = [f"{a['point_id'].iat[i]}: {left[i]!r} != {right[i]!r}" for i in bad[:5]]
                out.append(f"{column} differs for {len(bad)} point(s): {'; '.join(shown)}")
        moved = ~shapely.equals_exact(a.geometry.to_numpy(), b.geometry.to_numpy(), tolerance=_TOLERANCE_DEG)
        if moved.any():
            out.append(f"geometry differs for {int(moved.sum())} point(s), e.g. {a['point_id'][moved].iat[0]}")
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidationReport) and not self.differences(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        t = self.total.iloc[0]
        return (f"ValidationReport({self.method or 'report'}: {int(t.points)} points, {int(t.confirmed)} confirmed, "
                f"{int(t.negative)} negative within {self.distance_m:g} m)")

    # ------------------------------------------------------------------ outputs

    def plot_bars(self, ax: Any = None) -> Figure:
        """Stacked bars of confirmed and negative points per LUCAS class; returns the figure."""
        import matplotlib.pyplot as plt

        table = self.per_class
        if ax is None:
            fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(table) + 2), 3.6))
        else:
            fig = ax.figure
        labels = [f"{c} {lbl[:18]}" for c, lbl in zip(table["lucas_code"], table["lucas_label"])]
        x = np.arange(len(table))
        ax.bar(x, table["confirmed"], color="#2ca02c", label=CONFIRMED)
        ax.bar(x, table["negative"], bottom=table["confirmed"], color="#d62728", label=NEGATIVE)
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("survey points")
        total = self.total.iloc[0]
        ax.set_title(f"in-situ validation within {self.distance_m:g} m: {int(total.confirmed)}/{int(total.points)} "
                     f"confirmed", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def map(self, parcels: gpd.GeoDataFrame | None = None, *, crop_column: str | None = None) -> folium.Map:
        """A folium map of the points (green: confirmed, red: negative), optionally over the parcels."""
        import folium

        points = self.points
        if points.empty:
            raise ValidationError("the report has no points to map")
        minx, miny, maxx, maxy = points.total_bounds
        fmap = folium.Map(location=[(miny + maxy) / 2, (minx + maxx) / 2], zoom_start=15, tiles=None)
        if parcels is not None and len(parcels):
            shown = parcels.to_crs(4326)
            column = crop_column or ("predicted_name" if "predicted_name" in shown.columns else "crop_name")
            keep = [c for c in ("parcel_id", column) if c in shown.columns]
            folium.GeoJson(shown[[*keep, "geometry"]].to_json(), name="parcels",
                           style_function=lambda _: {"color": "#555555", "weight": 1, "fillOpacity": 0.15},
                           tooltip=folium.GeoJsonTooltip(fields=keep)).add_to(fmap)
        layer = folium.FeatureGroup(name="survey points")
        for row in points.itertuples(index=False):
            colour = "#2ca02c" if row.confirmed else "#d62728"
            tip = f"{row.point_id} {row.lucas_code} ({row.lucas_label}): {row.status}"
            if row.parcel_id is not None:
                tip += f" by {row.parcel_id}"
            folium.CircleMarker([row.geometry.y, row.geometry.x], radius=4, color=colour, fill=True,
                                fill_opacity=0.9, tooltip=tip).add_to(layer)
        layer.add_to(fmap)
        folium.LayerControl().add_to(fmap)
        fmap.fit_bounds([[miny, minx], [maxy, maxx]])
        return fmap

    def to_parquet(self, path: str | Path) -> str:
        """Write the per-point report as GeoParquet (atomically); returns the path."""
        from workbench import storage

        frame = self.points.copy()
        frame["distance_m"] = float(self.distance_m)
        return storage.write_geoparquet(frame, path)

    def tables_to_parquet(self, directory: str | Path) -> dict[str, str]:
        """Write ``per_class.parquet`` and ``total.parquet`` into ``directory`` (atomically); returns their paths."""
        from workbench import storage

        out = {}
        for name, table in (("per_class", self.per_class), ("total", self.total)):
            buffer = table.to_parquet(index=False)
            url = storage.join(str(directory), f"{name}.parquet")
            storage.write_bytes(url, buffer)
            out[name] = url
        return out

    @classmethod
    def read_parquet(cls, path: str | Path, *, method: str = "") -> ValidationReport:
        """Read a report written by :meth:`to_parquet`.

        Raises
        ------
        ValidationError
            If the file is not a report (columns missing).
        """
        from workbench import storage

        frame = storage.read_geoparquet(path)
        if "distance_m" not in frame.columns or "point_id" not in frame.columns:
            raise ValidationError(f"{path} is not a validation report (columns: {list(frame.columns)})")
        distance = float(frame["distance_m"].iloc[0]) if len(frame) else float("nan")
        return cls(frame.drop(columns="distance_m"), distance_m=distance, method=method or "parquet")
