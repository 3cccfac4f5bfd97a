"""Classical crop-type baselines: scikit-learn random forest and k-NN, predicted chunk-wise with dask-ml.

A baseline is a scikit-learn pipeline (flatten the ``(steps, bands)`` series,
standardise, classify) wrapped in :class:`dask_ml.wrappers.ParallelPostFit`:
it is fitted in memory on a pixel sample, and its ``predict`` on a Dask array
runs block by block on the cluster, so a full tile is mapped without ever
sitting in one process. :func:`baseline_crop_map` does that for a composite
tile (the same Zarr store the deep models map, :func:`workbench.processors.crops.crop_map`).

For pixel samples that do not fit in memory, :func:`scale_dask_samples` and
:func:`split_dask_samples` use dask-ml's scalers and ``train_test_split`` on
Dask collections (arrays or dataframes).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from workbench._args import checked_keywords
from workbench.errors import DataError

__all__ = [
    "BASELINE_NAMES",
    "flatten_series",
    "make_baseline",
    "fit_baseline",
    "predict_baseline",
    "baseline_crop_map",
    "write_baseline_map",
    "save_baseline",
    "load_baseline",
    "scale_dask_samples",
    "split_dask_samples",
]

log = logging.getLogger(__name__)

#: Baseline kinds: a random forest and a k-nearest-neighbours classifier.
BASELINE_NAMES = ("random_forest", "knn")


def flatten_series(x: Any) -> Any:
    """``(n, steps, bands)`` → ``(n, steps · bands)`` (NumPy or Dask); 2-D input is returned as it is."""
    if getattr(x, "ndim", None) == 3:
        return x.reshape(x.shape[0], -1)
    if getattr(x, "ndim", None) == 2:
        return x
    raise DataError(f"x must be a (n, steps, bands) or (n, features) array, got shape {getattr(x, 'shape', None)}")


def _check_finite(x: np.ndarray, what: str) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{what} holds {int((~np.isfinite(x)).sum())} NaN/inf value(s); fill or drop them first")


@checked_keywords
def make_baseline(
    name: str, *, seed: int = 0, n_estimators: int = 300, n_neighbors: int = 5, n_jobs: int | None = 1
) -> Any:
    """An unfitted baseline: ``StandardScaler`` + random forest or k-NN, wrapped in ``ParallelPostFit``.

    Parameters
    ----------
    name
        ``"random_forest"`` or ``"knn"``.
    seed
        Random state of the forest.
    n_estimators
        Trees of the forest.
    n_neighbors
        Neighbours of the k-NN classifier (5: the 5-NN of the issue).
    n_jobs
        scikit-learn threads for fitting (1 on a shared machine).
    """
    from dask_ml.wrappers import ParallelPostFit
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "random_forest":
        if isinstance(n_estimators, bool) or not isinstance(n_estimators, (int, np.integer)) or n_estimators < 1:
            raise DataError(f"n_estimators must be a positive integer, got {n_estimators!r}")
        estimator = RandomForestClassifier(n_estimators=int(n_estimators), random_state=int(seed), n_jobs=n_jobs)
    elif name == "knn":
        if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 1:
            raise DataError(f"n_neighbors must be a positive integer, got {n_neighbors!r}")
        estimator = KNeighborsClassifier(n_neighbors=int(n_neighbors), n_jobs=n_jobs)
    else:
        raise DataError(f"unknown baseline {name!r}; expected one of {BASELINE_NAMES}")
    return ParallelPostFit(make_pipeline(StandardScaler(), estimator))


@checked_keywords
def fit_baseline(name: str, x: np.ndarray, y: np.ndarray, *, n_classes: int, seed: int = 0,
                 **options: Any) -> Any:
    """Fit :func:`make_baseline` on in-memory samples ``x`` (``(n, steps, bands)`` or ``(n, features)``).

    Raises
    ------
    DataError
        On NaN/inf features, labels outside ``0 .. n_classes − 1`` or a length mismatch.
    """
    x = flatten_series(np.asarray(x))
    y = np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise DataError(f"x has {len(x)} samples but y has {len(y)} labels (both must be non-empty and equal)")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise DataError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"labels must be in 0..{n_classes - 1} (n_classes={n_classes}); got {y.min()}..{y.max()}")
    _check_finite(x, "x")
    model = make_baseline(name, seed=seed, **options)
    model.fit(x, y)
    model.n_classes_ = int(n_classes)
    return model


def predict_baseline(model: Any, x: Any) -> Any:
    """Labels of a fitted baseline: NumPy in → NumPy out; a Dask array in → a lazy Dask array, block by block."""
    x = flatten_series(x)
    if isinstance(x, np.ndarray):
        _check_finite(x, "x")
        return np.asarray(model.predict(x)).astype(np.int32)
    return model.predict(x)


def baseline_crop_map(model: Any, composite: Any, *, chunk: int = 4096, nodata: int = 255) -> Any:
    """Crop map of a composite tile with a baseline, predicted chunk-wise (Dask) by ``ParallelPostFit``.

    Parameters
    ----------
    model
        A fitted baseline (:func:`fit_baseline`).
    composite
        The tile: a path/URL of a composite Zarr store or its ``xarray.Dataset``
        (``reflectance (month, band, y, x)``).
    chunk
        Pixels per block of the prediction.
    nodata
        Label of pixels with a non-finite value.

    Returns
    -------
    xarray.DataArray
        ``uint8 (y, x)`` labels, lazy (computed where it is used: on the Dask
        cluster of the current client).
    """
    import dask.array as da
    import xarray as xr

    if isinstance(composite, xr.Dataset):
        ds = composite
    else:
        from workbench import storage

        ds = storage.open_zarr(str(composite))
    if "reflectance" not in ds:
        raise DataError(f"the composite has no 'reflectance' variable; it has {sorted(ds.data_vars)}")
    refl = ds["reflectance"]
    if refl.dims != ("month", "band", "y", "x"):
        raise DataError(f"reflectance dims must be (month, band, y, x), got {refl.dims}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise DataError(f"chunk must be a positive integer, got {chunk!r}")
    months, bands, ny, nx = refl.shape
    data = refl.data if isinstance(refl.data, da.Array) else da.from_array(refl.values)
    pixels = data.transpose(2, 3, 0, 1).reshape(ny * nx, months * bands).rechunk((int(chunk), months * bands))
    finite = da.isfinite(pixels).all(axis=1)
    labels = model.predict(da.where(finite[:, None], pixels, 0.0))
    labels = da.where(finite, labels, nodata).astype(np.uint8).reshape(ny, nx)
    return xr.DataArray(labels, dims=("y", "x"), coords={k: ds.coords[k] for k in ("y", "x") if k in ds.coords},
                        name="crop_class", attrs={"nodata": nodata, "crs": ds.attrs.get("crs", ""),
                                                  "tile": ds.attrs.get("tile", "")})


def write_baseline_map(
    model: Any, composite_url: str, out_url: str, *, chunk: int = 4096,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """:func:`baseline_crop_map` of a composite store, computed (on the current Dask client, if any) and
    written as a COG (``uint8``, 255 = no data) like the deep models' map; returns ``out_url``."""
    import rioxarray  # noqa: F401 - .rio accessor

    from workbench import storage

    composite = storage.open_zarr(composite_url, storage_options=storage_options)
    labels = baseline_crop_map(model, composite, chunk=chunk).compute()
    crs = labels.attrs.get("crs")
    if not crs:
        raise DataError(f"composite {str(composite_url)!r} has no 'crs' attribute")
    array = labels.rio.write_crs(crs).rio.write_nodata(labels.attrs["nodata"])
    return storage.write_cog(array, out_url, storage_options=storage_options)


def save_baseline(model: Any, url: str, *, storage_options: Mapping[str, Any] | None = None) -> str:
    """Pickle a fitted baseline to ``url`` (written atomically, local or ``s3://``); returns ``url``."""
    import pickle

    from workbench import storage

    if not hasattr(model, "estimator"):
        raise DataError(f"model must be a fitted baseline (ParallelPostFit), got {type(model).__name__}")
    storage.write_bytes(url, pickle.dumps(model), storage_options=storage_options)
    return str(url)


def load_baseline(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Load a baseline saved by :func:`save_baseline` (a pickle: load only files you wrote)."""
    import pickle

    from workbench import storage

    model = pickle.loads(storage.read_bytes(url, storage_options=storage_options))
    if not hasattr(model, "estimator"):
        raise DataError(f"{url!r} does not hold a baseline model")
    return model


def scale_dask_samples(train: Any, *others: Any, method: str = "standard") -> tuple[Any, ...]:
    """Fit a dask-ml scaler on ``train`` (a Dask array or dataframe) and transform it and ``others`` lazily.

    ``method`` is ``"standard"`` (``dask_ml.preprocessing.StandardScaler``) or
    ``"minmax"`` (``MinMaxScaler``). Returns the transformed collections, ``train`` first.
    """
    from dask_ml.preprocessing import MinMaxScaler, StandardScaler

    scalers = {"standard": StandardScaler, "minmax": MinMaxScaler}
    if method not in scalers:
        raise DataError(f"method must be one of {sorted(scalers)}, got {method!r}")
    for i, c in enumerate((train, *others)):
        if not hasattr(c, "dask"):
            raise DataError(f"collection {i} is a {type(c).__name__}, not a Dask array or dataframe")
    scaler = scalers[method]().fit(train)
    return tuple(scaler.transform(c) for c in (train, *others))


def split_dask_samples(*collections: Any, test_size: float = 0.25, seed: int = 0) -> list[Any]:
    """dask-ml ``train_test_split`` on Dask arrays/dataframes (shuffled within blocks, no full shuffle)."""
    from dask_ml.model_selection import train_test_split

    if not collections:
        raise DataError("give at least one Dask collection to split")
    if not 0 < test_size < 1:
        raise DataError(f"test_size must be in (0, 1), got {test_size!r}")
    for i, c in enumerate(collections):
        if not hasattr(c, "dask"):
            raise DataError(f"collection {i} is a {type(c).__name__}, not a Dask array or dataframe")
    options: dict[str, Any] = {"test_size": test_size, "random_state": int(seed)}
    if any(hasattr(c, "partitions") for c in collections):
        options["shuffle"] = True
    return train_test_split(*collections, **options)

