"""Per-pixel crop samples from monthly composites and parcels.

* :func:`rasterize_parcels` burns parcels into a composite's grid and erodes
  their borders (mixed pixels) by a pixel;
* :func:`extract_pixels` turns a composite cube and its parcels into a flat
  table, one row per labelled pixel, features ``<band>_m<month>``;
* :func:`select_reliable` is the paper's automatic selection of reliable
  labels: pixels whose profile lies far from their class's typical (median)
  profile are dropped;
* :func:`tile_split` assigns whole tiles to train / validation / test;
* :func:`to_arrays` gives the ``(n, months, bands)`` tensor the models take.

Pure computation apart from :func:`extract_tile` (reads a Zarr cube).
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.errors import DataError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = [
    "feature_columns",
    "rasterize_parcels",
    "extract_pixels",
    "extract_tile",
    "select_reliable",
    "tile_split",
    "to_arrays",
    "build_pixel_samples",
    "write_samples",
    "read_samples",
    "to_training_dataset",
    "split_arrays",
    "SPLITS",
]

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
_FEATURE = re.compile(r"^(?P<band>[A-Za-z0-9]+)_m(?P<month>\d{2})$")


def feature_columns(bands: Sequence[str], n_months: int = 12) -> list[str]:
    """Feature column names ``<band>_m<month>`` in (month, band) order."""
    return [f"{b}_m{m:02d}" for m in range(n_months) for b in bands]


def _grid(composite: "xr.Dataset") -> tuple[Any, tuple[int, int], str]:
    from affine import Affine

    for dim in ("x", "y"):
        if dim not in composite.coords or composite.sizes.get(dim, 0) < 2:
            raise DataError(f"the composite needs an {dim!r} coordinate with at least 2 values")
    x = composite["x"].values
    y = composite["y"].values
    dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
    transform = Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2)
    crs = composite.attrs.get("crs")
    if not crs:
        raise DataError("the composite has no 'crs' attribute (expected e.g. 'EPSG:32633')")
    return transform, (len(y), len(x)), str(crs)


def rasterize_parcels(
    parcels: "gpd.GeoDataFrame",
    composite: "xr.Dataset",
    *,
    label_column: str = "crop_id",
    erode: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Burn parcels into the composite's grid.

    Parameters
    ----------
    parcels
        Polygons with a ``label_column`` (integer class) column, any CRS.
    composite
        Dataset with ``x``/``y`` pixel-centre coordinates and a ``crs`` attribute.
    label_column
        Column holding the class index.
    erode
        Pixels removed along every parcel border (0 keeps all).

    Returns
    -------
    labels, parcel_index
        ``(y, x)`` arrays: class per pixel and row index into ``parcels``, -1 outside.
    """
    from rasterio.features import rasterize
    from scipy.ndimage import maximum_filter, minimum_filter

    if label_column not in parcels.columns:
        raise DataError(f"parcels have no {label_column!r} column; columns: {list(parcels.columns)}")
    if erode < 0:
        raise DataError(f"erode must be >= 0 pixels, got {erode}")
    transform, shape, crs = _grid(composite)
    if parcels.crs is None:
        raise DataError("parcels have no CRS")
    frame = parcels.to_crs(crs).reset_index(drop=True)
    shapes = [(geom, i) for i, geom in enumerate(frame.geometry) if geom is not None and not geom.is_empty]
    index = rasterize(shapes, out_shape=shape, transform=transform, fill=-1, dtype="int32") if shapes else (
        np.full(shape, -1, dtype=np.int32)
    )
    if erode:
        size = 2 * erode + 1
        same = (minimum_filter(index, size=size, mode="nearest") == index) & (
            maximum_filter(index, size=size, mode="nearest") == index
        )
        index = np.where(same, index, -1)
    labels = np.full(shape, -1, dtype=np.int32)
    inside = index >= 0
    labels[inside] = frame[label_column].to_numpy()[index[inside]]
    return labels, index


def extract_pixels(
    composite: "xr.Dataset",
    parcels: "gpd.GeoDataFrame",
    *,
    tile: str,
    label_column: str = "crop_id",
    erode: int = 1,
    bands: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per labelled pixel of a composite: ids, label, position and ``<band>_m<month>`` features.

    Columns: ``tile, parcel_id, label, row, col, x, y, n_filled`` then the
    features (float32). Pixels with a NaN feature (no valid observation at all
    in the year) are dropped.
    """
    for var in ("reflectance",):
        if var not in composite:
            raise DataError(f"the composite has no {var!r} variable")
    refl = composite["reflectance"]
    if tuple(refl.dims) != ("month", "band", "y", "x"):
        raise DataError(f"reflectance must have dims (month, band, y, x), got {tuple(refl.dims)}")
    if "parcel_id" not in parcels.columns:
        raise DataError(f"parcels have no 'parcel_id' column; columns: {list(parcels.columns)}")
    if bands is not None:
        missing = set(bands) - set(refl["band"].values.tolist())
        if missing:
            raise DataError(f"bands {sorted(missing)} are not in the composite ({list(refl['band'].values)})")
        refl = refl.sel(band=list(bands))
    band_names = [str(b) for b in refl["band"].values]
    labels, index = rasterize_parcels(parcels, composite, label_column=label_column, erode=erode)
    rows, cols = np.nonzero(labels >= 0)
    values = np.asarray(refl.values, dtype=np.float32)  # (month, band, y, x)
    n_months = values.shape[0]
    feats = values[:, :, rows, cols].transpose(2, 0, 1).reshape(len(rows), -1)
    filled = composite["filled"].values[:, rows, cols].sum(axis=0) if "filled" in composite else np.zeros(len(rows))
    frame = pd.DataFrame(
        {
            "tile": tile,
            "parcel_id": parcels.reset_index(drop=True)["parcel_id"].to_numpy()[index[rows, cols]],
            "label": labels[rows, cols].astype(np.int32),
            "row": rows.astype(np.int32),
            "col": cols.astype(np.int32),
            "x": composite["x"].values[cols],
            "y": composite["y"].values[rows],
            "n_filled": np.asarray(filled, dtype=np.int16),
        }
    )
    features = pd.DataFrame(feats, columns=feature_columns(band_names, n_months))
    frame = pd.concat([frame, features], axis=1)
    ok = np.isfinite(feats).all(axis=1)
    if not ok.all():
        log.info("tile %s: dropped %d pixels without any valid observation", tile, int((~ok).sum()))
    return frame[ok].reset_index(drop=True)


def extract_tile(
    composite_url: str | os.PathLike[str],
    parcels: "gpd.GeoDataFrame",
    *,
    tile: str | None = None,
    erode: int = 1,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """:func:`extract_pixels` on a composite Zarr store written by :func:`workbench.sentinel2.composite_tile`."""
    from workbench.storage import open_zarr

    ds = open_zarr(composite_url, storage_options=storage_options)
    name = tile or str(ds.attrs.get("tile", "")) or os.path.basename(str(composite_url)).removesuffix(".zarr")
    return extract_pixels(ds, parcels, tile=name, erode=erode)


def _feature_names(frame: pd.DataFrame) -> tuple[list[str], list[str], int]:
    cols = [c for c in frame.columns if _FEATURE.match(c)]
    if not cols:
        raise DataError("the sample table has no feature columns named <band>_m<month> (e.g. B04_m03)")
    bands: list[str] = []
    months: set[int] = set()
    for c in cols:
        m = _FEATURE.match(c)
        assert m is not None
        if m.group("band") not in bands:
            bands.append(m.group("band"))
        months.add(int(m.group("month")))
    return cols, bands, len(months)


def to_arrays(frame: pd.DataFrame, *, label_column: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """Features ``(n, months, bands)`` float32 and labels ``(n,)`` int32 of a sample table."""
    cols, bands, n_months = _feature_names(frame)
    ordered = feature_columns(bands, n_months)
    missing = set(ordered) - set(cols)
    if missing:
        raise DataError(f"the sample table misses feature columns {sorted(missing)[:5]}")
    if label_column not in frame.columns:
        raise DataError(f"the sample table has no {label_column!r} column")
    x = frame[ordered].to_numpy(dtype=np.float32).reshape(len(frame), n_months, len(bands))
    return x, frame[label_column].to_numpy(dtype=np.int32)


def select_reliable(
    frame: pd.DataFrame, *, drop_fraction: float = 0.1, label_column: str = "label", min_pixels: int = 10
) -> pd.DataFrame:
    """Keep the pixels whose profile is close to their class's typical profile.

    For every class, the typical profile is the per-feature median; the
    distance of a pixel is the Euclidean distance of its features scaled by
    the class's per-feature median absolute deviation. The ``drop_fraction``
    farthest pixels of each class are dropped (classes with fewer than
    ``min_pixels`` pixels are kept whole).
    """
    if not 0 <= drop_fraction < 1:
        raise DataError(f"drop_fraction must be in [0, 1), got {drop_fraction}")
    cols, _, _ = _feature_names(frame)
    keep = np.ones(len(frame), dtype=bool)
    values = frame[cols].to_numpy(dtype=np.float64)
    labels = frame[label_column].to_numpy()
    for cls in np.unique(labels):
        sel = np.flatnonzero(labels == cls)
        if len(sel) < min_pixels or drop_fraction == 0:
            continue
        v = values[sel]
        med = np.median(v, axis=0)
        mad = np.median(np.abs(v - med), axis=0) + 1e-6
        dist = np.sqrt((((v - med) / mad) ** 2).mean(axis=1))
        cut = np.quantile(dist, 1.0 - drop_fraction)
        keep[sel[dist > cut]] = False
    return frame[keep].reset_index(drop=True)


def tile_split(
    frame: pd.DataFrame,
    *,
    train: Sequence[str],
    validation: Sequence[str],
    test: Sequence[str] = (),
) -> pd.DataFrame:
    """Add a ``split`` column assigning whole tiles to train / validation / test.

    Raises
    ------
    DataError
        When a tile is named twice, is not in the table, or the train split is empty.
    """
    groups = {"train": list(train), "validation": list(validation), "test": list(test)}
    seen: dict[str, str] = {}
    for split, tiles in groups.items():
        for t in tiles:
            if t in seen:
                raise DataError(f"tile {t!r} is in both the {seen[t]} and the {split} split")
            seen[t] = split
    if not groups["train"]:
        raise DataError("the train split needs at least one tile")
    present = set(frame["tile"].unique())
    unknown = set(seen) - present
    if unknown:
        raise DataError(f"tiles {sorted(unknown)} have no samples; the table has tiles {sorted(present)}")
    out = frame[frame["tile"].isin(list(seen))].copy()
    out["split"] = out["tile"].map(seen)
    return out.reset_index(drop=True)


def build_pixel_samples(
    composites: Mapping[str, str],
    parcels: "gpd.GeoDataFrame | str | os.PathLike[str]",
    *,
    train: Sequence[str],
    validation: Sequence[str],
    test: Sequence[str] = (),
    erode: int = 1,
    drop_fraction: float = 0.1,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Pixel samples of several tiles with a tile-based split.

    Parameters
    ----------
    composites
        Tile name → composite Zarr URL (the output of
        :func:`workbench.sentinel2.composite_tiles`).
    parcels
        Parcels (GeoDataFrame, or a GeoParquet path/URL) with ``parcel_id``,
        ``crop_id`` and, when they span several tiles, a ``tile`` column.
    train, validation, test
        Tiles of each split.
    erode
        Border pixels removed from every parcel.
    drop_fraction
        Share of each class's least typical pixels dropped from the train
        split (:func:`select_reliable`; 0 keeps all). Validation and test
        pixels are never filtered.
    storage_options
        fsspec options for remote inputs.

    Returns
    -------
    pandas.DataFrame
        Rows of :func:`extract_pixels` plus ``split`` and a ``sample_id``
        primary key (``<tile>-<row>-<col>``).
    """
    from tqdm.auto import tqdm

    from workbench.storage import read_geoparquet

    if isinstance(parcels, (str, os.PathLike)):
        parcels = read_geoparquet(parcels, storage_options=storage_options)
    wanted = [*train, *validation, *test]
    missing = [t for t in wanted if t not in composites]
    if missing:
        raise DataError(f"no composite for tiles {missing}; composites exist for {sorted(composites)}")
    frames = []
    for tile in tqdm(wanted, desc="pixel samples", disable=len(wanted) < 3):
        tile_parcels = parcels[parcels["tile"] == tile] if "tile" in parcels.columns else parcels
        frames.append(extract_tile(composites[tile], tile_parcels, tile=tile, erode=erode,
                                   storage_options=storage_options))
    frame = tile_split(pd.concat(frames, ignore_index=True), train=train, validation=validation, test=test)
    if drop_fraction:
        is_train = frame["split"] == "train"
        frame = pd.concat([select_reliable(frame[is_train], drop_fraction=drop_fraction), frame[~is_train]],
                          ignore_index=True)
    frame.insert(0, "sample_id", frame["tile"] + "-" + frame["row"].astype(str) + "-" + frame["col"].astype(str))
    return frame


def write_samples(
    frame: pd.DataFrame, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write a sample table as Parquet, atomically; returns ``url``."""
    import io

    from workbench.storage import write_bytes

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes(url, buffer.getvalue(), storage_options=storage_options)
    return str(url)


def read_samples(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Read a sample table written by :func:`write_samples`."""
    import io

    from workbench.storage import read_bytes

    return pd.read_parquet(io.BytesIO(read_bytes(url, storage_options=storage_options)))


def to_training_dataset(
    samples: pd.DataFrame,
    *,
    store: Any = None,
    name: str = "crop_series",
    version: int = 1,
    description: str = "Sentinel-2 monthly-composite pixel series with crop labels",
) -> Any:
    """Insert pixel samples into a feature group and create a training dataset split by tile.

    The 12-month profile of every pixel is stored as the tensor feature
    ``series`` ``(months, bands)``; ids, label, position and split as
    tabular columns (primary key ``sample_id``). The feature view selects
    ``series`` and ``label``; the training dataset keeps the samples' tile
    split (``split`` column of :func:`build_pixel_samples`).

    Parameters
    ----------
    samples
        Output of :func:`build_pixel_samples`.
    store
        A :class:`workbench.featurestore.FeatureStore` (default: the project's).
    name, version
        Feature group and feature view name and version.
    description
        Description of the feature group.

    Returns
    -------
    workbench.featurestore.TrainingDataset
        A new training dataset version; ``arrays(split)`` gives
        ``(n, months, bands)`` series and integer labels.
    """
    from workbench.featurestore import FeatureStore

    for column in ("sample_id", "label", "split", "tile"):
        if column not in samples.columns:
            raise DataError(f"the sample table has no {column!r} column (use build_pixel_samples)")
    if samples.empty:
        raise DataError("no pixel samples to insert")
    x, y = to_arrays(samples)
    cols, bands, n_months = _feature_names(samples)
    store = store if store is not None else FeatureStore()
    group = store.get_or_create_feature_group(
        name, version, primary_key=["sample_id"], description=description,
        tensor_features={"series": {"shape": [n_months, len(bands)], "dtype": "float32"}},
    )
    table = samples.drop(columns=cols).reset_index(drop=True)
    table["label"] = y.astype(np.int64)
    # overwrite: the group holds exactly these samples (earlier ones stay readable by time travel)
    group.insert(table, tensors={"series": x}, mode="overwrite")
    view = store.get_or_create_feature_view(
        name, version, query=group.select(["series", "label", "split"]), labels=["label"],
        description=f"crop pixel series, bands {bands}",
    )
    present = [s for s in SPLITS if (samples["split"] == s).any()]
    meta = {"bands": bands, "months": n_months, "tiles": {s: sorted(samples.loc[samples["split"] == s, "tile"].unique())
                                                          for s in present}}
    import json

    return view.create_training_dataset(split={s: [s] for s in present}, split_by="split",
                                        description=json.dumps(meta))


def split_arrays(samples: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split name → ``(x, y)`` of a sample table (``split`` column) or a training dataset."""
    if hasattr(samples, "arrays") and hasattr(samples, "splits"):
        out = {}
        for split in samples.splits:
            x, y = samples.arrays(split)
            out[split] = (np.asarray(x, dtype=np.float32), np.asarray(y).astype(np.int32))
        return out
    if not isinstance(samples, pd.DataFrame) or "split" not in samples.columns:
        raise DataError("samples must be a training dataset or a table with a 'split' column")
    return {s: to_arrays(samples[samples["split"] == s]) for s in SPLITS if (samples["split"] == s).any()}
