"""Descriptive statistics of the rows of one commit (pure computation, no I/O).

For every numeric column: count, nulls, mean, std, min, max and a histogram;
for every label-like column (string, boolean, or integer with few distinct
values): the class counts. Tensor features get count, mean, std, min and max
over all their values.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "column_statistics",
    "frame_statistics",
    "tensor_statistics",
    "merge_statistics",
    "MAX_CLASSES",
    "HISTOGRAM_BINS",
]

MAX_CLASSES = 100
HISTOGRAM_BINS = 20


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def column_statistics(
    series: pd.Series,
    *,
    bins: int = HISTOGRAM_BINS,
    edges: Sequence[float] | None = None,
    max_classes: int = MAX_CLASSES,
) -> dict[str, Any]:
    """Statistics of one column.

    Parameters
    ----------
    series
        The column.
    bins
        Number of histogram bins of a numeric column.
    edges
        Fixed histogram bin edges (overrides ``bins``), so that partial statistics can be merged.
    max_classes
        An integer column with at most this many distinct values also gets class counts.

    Returns
    -------
    dict
        ``count``, ``nulls`` and, by column kind, ``mean``/``std``/``min``/``max``/``histogram``
        and ``class_counts``.
    """
    nulls = int(series.isna().sum())
    out: dict[str, Any] = {"count": int(len(series) - nulls), "nulls": nulls, "dtype": str(series.dtype)}
    values = series.dropna()
    is_bool = pd.api.types.is_bool_dtype(series.dtype)
    if pd.api.types.is_numeric_dtype(series.dtype) and not is_bool:
        arr = _finite(values.to_numpy(dtype="float64"))
        if arr.size:
            counts, hist_edges = np.histogram(arr, bins=np.asarray(edges) if edges is not None else bins)
            out.update(
                mean=float(arr.mean()),
                std=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
                min=float(arr.min()),
                max=float(arr.max()),
                histogram={"edges": hist_edges.tolist(), "counts": counts.tolist()},
            )
        if pd.api.types.is_integer_dtype(series.dtype):
            classes = values.value_counts()
            if len(classes) <= max_classes:
                out["class_counts"] = {str(k): int(v) for k, v in classes.sort_index().items()}
    elif pd.api.types.is_datetime64_any_dtype(series.dtype):
        if len(values):
            out.update(min=values.min().isoformat(), max=values.max().isoformat())
    elif (
        is_bool or pd.api.types.is_string_dtype(series.dtype) or isinstance(series.dtype, pd.CategoricalDtype)
    ):
        classes = values.astype(str).value_counts()
        out["distinct"] = int(len(classes))
        if len(classes) <= max_classes:
            out["class_counts"] = {str(k): int(v) for k, v in classes.sort_index().items()}
    return out


def tensor_statistics(array: np.ndarray) -> dict[str, Any]:
    """Statistics of a tensor feature: ``count`` (rows), ``shape`` and moments over all finite values."""
    flat = _finite(np.asarray(array, dtype="float64").ravel())
    out: dict[str, Any] = {
        "count": int(array.shape[0]),
        "nulls": 0,
        "shape": list(array.shape[1:]),
        "dtype": str(array.dtype),
    }
    if flat.size:
        out.update(
            mean=float(flat.mean()), std=float(flat.std()), min=float(flat.min()), max=float(flat.max())
        )
    return out


def frame_statistics(
    frame: pd.DataFrame,
    *,
    tensors: Mapping[str, np.ndarray] | None = None,
    exclude: Sequence[str] = (),
    edges: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Statistics of every column of ``frame`` (less ``exclude``) and of every tensor feature.

    Returns
    -------
    dict
        ``{"rows": n, "columns": {name: column statistics}}``.
    """
    columns = {
        str(name): column_statistics(frame[name], edges=(edges or {}).get(str(name)))
        for name in frame.columns
        if name not in set(exclude)
    }
    for name, array in (tensors or {}).items():
        columns[name] = tensor_statistics(array)
    return {"rows": int(len(frame)), "columns": columns}


def merge_statistics(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the statistics of disjoint row sets (e.g. the partitions of a Dask DataFrame).

    Counts, nulls and class counts add up; means and standard deviations are
    pooled exactly; minima and maxima combine; histograms add up when their
    bin edges agree (pass the same ``edges`` to :func:`column_statistics`).
    """
    if not parts:
        return {"rows": 0, "columns": {}}
    rows = sum(int(p["rows"]) for p in parts)
    names: list[str] = []
    for p in parts:
        names.extend(n for n in p["columns"] if n not in names)
    merged: dict[str, Any] = {}
    for name in names:
        cols = [p["columns"][name] for p in parts if name in p["columns"]]
        out: dict[str, Any] = {
            "count": sum(c["count"] for c in cols),
            "nulls": sum(c["nulls"] for c in cols),
            "dtype": cols[0].get("dtype"),
        }
        moments = [c for c in cols if "mean" in c and c["count"]]
        if moments and all(isinstance(c["min"], (int, float)) for c in moments):
            n = np.array([c["count"] for c in moments], dtype="float64")
            m = np.array([c["mean"] for c in moments])
            s = np.array([c["std"] for c in moments])
            total = n.sum()
            mean = float((n * m).sum() / total)
            var = float((((n - 1) * s**2).sum() + (n * (m - mean) ** 2).sum()) / max(total - 1, 1))
            out.update(
                mean=mean,
                std=float(np.sqrt(max(var, 0.0))),
                min=min(c["min"] for c in moments),
                max=max(c["max"] for c in moments),
            )
            hists = [c["histogram"] for c in moments if "histogram" in c]
            if hists and all(h["edges"] == hists[0]["edges"] for h in hists):
                out["histogram"] = {
                    "edges": hists[0]["edges"],
                    "counts": np.sum([h["counts"] for h in hists], axis=0).tolist(),
                }
        elif moments:
            out.update(min=min(c["min"] for c in moments), max=max(c["max"] for c in moments))
        if any("class_counts" in c for c in cols):
            counts: dict[str, int] = {}
            for c in cols:
                for k, v in c.get("class_counts", {}).items():
                    counts[k] = counts.get(k, 0) + int(v)
            if len(counts) <= MAX_CLASSES:
                out["class_counts"] = dict(sorted(counts.items()))
        merged[name] = out
    return {"rows": rows, "columns": merged}
