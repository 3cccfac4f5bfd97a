"""Read the two sides of an interlinking run into one model: ids, shapely geometries, one CRS.

A side is given as a GeoParquet / GeoJSON / GeoPackage / CSV (``lon``/``lat`` or ``wkt``
columns) path, a GeoDataFrame or GeoSeries, a dask-geopandas GeoDataFrame (computed
here), or a :class:`StoreSelection` (a SPARQL SELECT over a :class:`~workbench.linked.store.GeoStore`
that binds a feature and its WKT/GML literal). Geometries that are missing or empty are
dropped and counted; invalid ones are repaired (``shapely.make_valid``), skipped, or refused,
as ``invalid=`` says. Both sides end in the same CRS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely

from workbench.linked.interlink.errors import InterlinkError

if TYPE_CHECKING:
    import geopandas as gpd

    from workbench.linked.store import GeoStore

__all__ = ["INVALID_POLICIES", "Side", "StoreSelection", "read_side", "read_sides"]

log = logging.getLogger(__name__)

#: What to do with an invalid geometry.
INVALID_POLICIES = ("error", "repair", "skip")

_VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb")


@dataclass(frozen=True)
class StoreSelection:
    """Features selected from a GeoSPARQL store by a SPARQL SELECT query.

    Parameters
    ----------
    store
        The store to query.
    query
        A SELECT binding ``feature`` (an IRI, the link's id) and ``wkt`` (a ``geo:wktLiteral``
        or ``geo:gmlLiteral``); other names through ``feature_var`` / ``geometry_var``.
    """

    store: GeoStore
    query: str
    feature_var: str = "feature"
    geometry_var: str = "wkt"


@dataclass
class Side:
    """One side of an interlinking run, ready for filtering.

    Attributes
    ----------
    name
        ``"source"`` or ``"target"`` (used in messages).
    ids
        The feature ids (strings, IRIs or integers, in their column's dtype), one per geometry.
    geoms
        Shapely geometries (valid, non-empty).
    crs
        The CRS (a pyproj-understood string, e.g. ``"EPSG:4326"``) or ``None`` when the input had none.
    repaired, skipped, empty
        How many invalid geometries were repaired or skipped, and how many missing/empty ones dropped.
    """

    name: str
    ids: np.ndarray
    geoms: np.ndarray
    crs: str | None
    repaired: int = 0
    skipped: int = 0
    empty: int = 0
    bounds: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.bounds = shapely.bounds(self.geoms).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.geoms)


def _from_store(selection: StoreSelection) -> gpd.GeoDataFrame:
    import geopandas as gpd
    import pyoxigraph as ox

    from workbench.linked.geometry import GeometryLiteralError, parse_literal

    result = selection.store.query(selection.query)
    if isinstance(result, (ox.QueryBoolean, ox.QueryTriples)):  # solutions: pyoxigraph's or the spatial engine's
        raise InterlinkError("the store selection must be a SELECT query binding a feature and its geometry literal")
    names = [v.value for v in result.variables]
    for var in (selection.feature_var, selection.geometry_var):
        if var not in names:
            raise InterlinkError(
                f"the store selection binds {', '.join('?' + n for n in names) or 'no variable'}; "
                f"expected ?{selection.feature_var} (feature) and ?{selection.geometry_var} (geometry literal)"
            )
    ids: list[str] = []
    geoms: list[Any] = []
    for row in result:
        feature, literal = row[selection.feature_var], row[selection.geometry_var]
        if feature is None or literal is None:
            continue
        if not isinstance(literal, ox.Literal):
            raise InterlinkError(f"?{selection.geometry_var} of {feature} is {literal}, not a geometry literal")
        try:
            value = parse_literal(literal.value, literal.datatype.value)
        except GeometryLiteralError as exc:
            raise InterlinkError(f"the geometry of {feature.value} in the store selection: {exc}") from None
        ids.append(feature.value)
        geoms.append(value.geom)  # parse_literal gives CRS84 lon/lat
    return gpd.GeoDataFrame({"id": ids}, geometry=geoms, crs="OGC:CRS84")


def _read_path(path: Path) -> gpd.GeoDataFrame:
    import geopandas as gpd

    if not path.exists():
        raise InterlinkError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".geoparquet") or path.is_dir():
            return gpd.read_parquet(path)
        if suffix == ".csv":
            frame = pd.read_csv(path)
            if {"lon", "lat"} <= set(frame.columns):
                geometry = gpd.points_from_xy(frame["lon"], frame["lat"])
                return gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")
            if "wkt" in frame.columns:
                return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries.from_wkt(frame["wkt"], on_invalid="ignore"),
                                        crs="EPSG:4326")
            raise InterlinkError(f"CSV input {path} has neither lon/lat nor wkt columns (it has {list(frame.columns)})")
        if suffix in _VECTOR_SUFFIXES:
            return gpd.read_file(path)
    except InterlinkError:
        raise
    except Exception as exc:  # noqa: BLE001 - a reader's own error, reported with the path
        raise InterlinkError(f"cannot read input {path}: {exc}") from None
    raise InterlinkError(
        f"input {path} has an unknown format {suffix!r}: expected GeoParquet (.parquet), GeoJSON, GeoPackage, "
        f"Shapefile, FlatGeobuf or CSV with lon/lat or wkt columns"
    )


def _as_frame(data: Any, name: str) -> gpd.GeoDataFrame:
    import geopandas as gpd

    if isinstance(data, StoreSelection):
        return _from_store(data)
    if isinstance(data, (str, Path)):
        return _read_path(Path(data))
    if isinstance(data, gpd.GeoDataFrame):
        return data
    if isinstance(data, gpd.GeoSeries):
        return gpd.GeoDataFrame(geometry=data)
    try:
        import dask_geopandas

        if isinstance(data, dask_geopandas.GeoDataFrame):
            return data.compute()
    except ImportError:  # pragma: no cover - dask-geopandas is a core dependency
        pass
    raise InterlinkError(
        f"the {name} is a {type(data).__name__}: expected a path (GeoParquet, GeoJSON, GeoPackage, CSV), "
        f"a GeoDataFrame or GeoSeries, a dask-geopandas GeoDataFrame or a StoreSelection"
    )


def _crs_string(crs: Any) -> str | None:
    if crs is None:
        return None
    authority = crs.to_authority() if hasattr(crs, "to_authority") else None
    return ":".join(authority) if authority else crs.to_string()


def read_side(data: Any, *, name: str = "source", id_column: str | None = None, invalid: str = "error") -> Side:
    """Read one side of an interlinking run.

    Parameters
    ----------
    data
        Path, GeoDataFrame, GeoSeries, dask-geopandas GeoDataFrame or :class:`StoreSelection`.
    name
        ``"source"`` or ``"target"``, for messages.
    id_column
        Column holding the feature ids; default ``id`` when there is one, else the frame's index.
    invalid
        ``"error"`` (refuse an invalid geometry), ``"repair"`` (``shapely.make_valid``) or ``"skip"``.

    Raises
    ------
    InterlinkError
        On an unreadable input, an unknown id column or policy, an invalid geometry under
        ``invalid="error"``, or a side left without geometries.
    """
    if invalid not in INVALID_POLICIES:
        raise InterlinkError(f"unknown invalid-geometry policy {invalid!r}: expected one of {', '.join(INVALID_POLICIES)}")
    frame = _as_frame(data, name)
    if id_column is not None and id_column not in frame.columns:
        raise InterlinkError(f"the {name} has no id column {id_column!r}; its columns: {list(frame.columns)}")
    column = id_column or ("id" if "id" in frame.columns else None)
    ids = (frame[column] if column else frame.index.to_series()).to_numpy()
    if column and pd.Series(ids).duplicated().any():
        raise InterlinkError(f"the {name}'s id column {column!r} holds duplicate ids; links need one id per feature")
    geoms = np.asarray(frame.geometry.to_numpy(), dtype=object)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    empty = int((~present).sum())
    ids, geoms = ids[present], geoms[present]
    valid = shapely.is_valid(geoms)
    repaired = skipped = 0
    if not valid.all():
        bad = np.flatnonzero(~valid)
        if invalid == "error":
            reason = shapely.is_valid_reason(geoms[bad[0]])
            raise InterlinkError(
                f"the {name} has {len(bad)} invalid geometries (first: id {ids[bad[0]]!r}: {reason}); "
                f"pass invalid='repair' or invalid='skip'"
            )
        if invalid == "repair":
            geoms = geoms.copy()
            geoms[bad] = shapely.make_valid(geoms[bad])
            repaired = len(bad)
        else:
            ids, geoms = ids[valid], geoms[valid]
            skipped = len(bad)
        log.info("%s: %d invalid geometries %s", name, len(bad), "repaired" if repaired else "skipped")
    if len(geoms) == 0:
        raise InterlinkError(f"the {name} is empty: it has no (valid, non-empty) geometry to link"
                             + (f" ({empty} missing/empty, {skipped} invalid skipped)" if empty or skipped else ""))
    return Side(name, ids, geoms, _crs_string(frame.crs), repaired=repaired, skipped=skipped, empty=empty)


def _reproject(side: Side, crs: str) -> Side:
    import geopandas as gpd

    series = gpd.GeoSeries(side.geoms, crs=side.crs).to_crs(crs)
    return Side(side.name, side.ids, np.asarray(series.to_numpy(), dtype=object), crs,
                repaired=side.repaired, skipped=side.skipped, empty=side.empty)


def read_sides(source: Any, target: Any, *, crs: str | None = None, source_id: str | None = None,
               target_id: str | None = None, invalid: str = "error") -> tuple[Side, Side, str | None]:
    """Read both sides and bring them to one CRS.

    The CRS is ``crs`` when given, else the source's; the other side is reprojected.

    Returns
    -------
    (source, target, crs)
        The sides and the CRS they are now in (``None`` only when neither input had one).

    Raises
    ------
    InterlinkError
        When one side has a CRS and the other none (mixed CRS: which is right cannot be
        told), or as :func:`read_side`.
    """
    src = read_side(source, name="source", id_column=source_id, invalid=invalid)
    tgt = read_side(target, name="target", id_column=target_id, invalid=invalid)
    if (src.crs is None) != (tgt.crs is None):
        have, lack = (src, tgt) if src.crs is not None else (tgt, src)
        raise InterlinkError(
            f"mixed CRS: the {have.name} is in {have.crs} but the {lack.name} has no CRS; "
            f"set the {lack.name}'s CRS (GeoDataFrame.set_crs) so both can be brought to one"
        )
    if crs is None:
        crs = src.crs
    elif src.crs is None:
        raise InterlinkError(f"cannot reproject to {crs}: neither side has a CRS")
    if crs is not None:
        try:
            from pyproj import CRS

            crs = _crs_string(CRS.from_user_input(crs))
        except Exception as exc:  # noqa: BLE001 - pyproj's CRSError
            raise InterlinkError(f"unknown CRS {crs!r}: {exc}") from None
        assert crs is not None
        if src.crs != crs:
            src = _reproject(src, crs)
        if tgt.crs != crs:
            tgt = _reproject(tgt, crs)
    return src, tgt, crs
