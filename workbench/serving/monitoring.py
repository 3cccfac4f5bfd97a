"""Monitoring of a serving from its inference log: traffic, latency, errors and a drift figure.

:func:`summarize` is pure (a log DataFrame in, numbers out): requests, requests per
second over the logged span, latency percentiles of the answered requests, the error
rate, and the distribution of predicted classes; given the training dataset's class
distribution it adds two drift figures — the total-variation distance (half the L1
distance, 0 = same, 1 = disjoint) and the Jensen–Shannon distance (base 2, in [0, 1]).
:func:`summary_table` lays it out as a table; :func:`plot` draws latency over time,
the latency histogram and the two class distributions side by side.
:func:`training_distribution` reads the label distribution of the training split of
the training dataset a registered model was trained on (its provenance).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["drift", "plot", "summarize", "summary_table", "training_distribution"]

log = logging.getLogger(__name__)


def drift(served: Sequence[float], training: Sequence[float]) -> dict[str, float]:
    """Total-variation and Jensen–Shannon distances between two class distributions (normalised here)."""
    p = np.asarray(served, dtype=float)
    q = np.asarray(training, dtype=float)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        return {"tvd": float("nan"), "js_distance": float("nan")}
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    js = max(0.0, (kl(p, m) + kl(q, m)) / 2)
    return {"tvd": float(0.5 * np.abs(p - q).sum()), "js_distance": float(np.sqrt(js))}


def _class_counts(frame: pd.DataFrame) -> np.ndarray | None:
    total: np.ndarray | None = None
    for text in frame.get("class_counts", pd.Series(dtype=object)):
        if not text:
            continue
        counts = np.asarray(json.loads(text), dtype=np.int64)
        if total is None:
            total = counts
        elif len(counts) == len(total):
            total = total + counts
    return total


def summarize(frame: pd.DataFrame, *, training: Sequence[float] | None = None,
              class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Monitoring figures of an inference log (see the module docstring).

    Parameters
    ----------
    frame
        Rows of :func:`~workbench.serving.inference_log.read_inference_log`.
    training
        Class distribution (counts or fractions) of the training dataset, for the drift figures.
    class_names
        Names of the classes (default ``"0"``, ``"1"``...).
    """
    n = len(frame)
    out: dict[str, Any] = {"requests": n}
    if n == 0:
        return {**out, "rows": 0, "requests_per_s": 0.0, "error_rate": float("nan"), "latency_ms": {},
                "status": {}, "classes": {}, "drift": {}}
    times = pd.to_datetime(frame["time"], utc=True)
    span = (times.max() - times.min()).total_seconds()
    ok = frame[frame["status"] == 200]
    lat = ok["latency_ms"].to_numpy(dtype=float)
    out["rows"] = int(frame["rows"].sum())
    out["span_s"] = float(span)
    out["requests_per_s"] = float(n / span) if span > 0 else float("nan")
    out["error_rate"] = float((frame["status"] != 200).mean())
    out["status"] = {int(k): int(v) for k, v in frame["status"].value_counts().sort_index().items()}
    out["latency_ms"] = {} if not len(lat) else {
        "p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
        "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean()), "max": float(lat.max())}
    counts = _class_counts(ok)
    classes: dict[str, Any] = {}
    drift_figs: dict[str, float] = {}
    if counts is not None:
        names = list(class_names) if class_names is not None and len(class_names) == len(counts) else [
            str(i) for i in range(len(counts))]
        frac = counts / max(1, counts.sum())
        classes = {"names": names, "served": [float(x) for x in frac], "served_counts": [int(c) for c in counts]}
        if training is not None and len(training) == len(counts):
            t = np.asarray(training, dtype=float)
            classes["training"] = [float(x) for x in t / t.sum()]
            drift_figs = drift(counts, t)
    out["classes"] = classes
    out["drift"] = drift_figs
    return out


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """The summary as a two-column table (figure, value)."""
    rows: list[tuple[str, Any]] = [
        ("requests", summary["requests"]),
        ("rows predicted", summary.get("rows", 0)),
        ("requests/s", round(summary.get("requests_per_s", float("nan")), 2)),
        ("error rate", round(summary.get("error_rate", float("nan")), 4)),
    ]
    for k, v in summary.get("latency_ms", {}).items():
        rows.append((f"latency {k} (ms)", round(v, 2)))
    for code, count in summary.get("status", {}).items():
        rows.append((f"status {code}", count))
    classes = summary.get("classes") or {}
    for i, name in enumerate(classes.get("names", [])):
        served = classes["served"][i]
        trained = classes.get("training", [None] * len(classes["names"]))[i]
        rows.append((f"class {name}: served / training", f"{served:.3f} / "
                     + ("n/a" if trained is None else f"{trained:.3f}")))
    for k, v in (summary.get("drift") or {}).items():
        rows.append((f"drift {k}", round(v, 4)))
    return pd.DataFrame(rows, columns=["figure", "value"])


def plot(frame: pd.DataFrame, summary: dict[str, Any], *, title: str = "") -> Figure:
    """Latency over time, latency histogram, served vs training class distribution."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ok = frame[frame["status"] == 200] if len(frame) else frame
    if len(ok):
        t = pd.to_datetime(ok["time"], utc=True)
        secs = (t - t.min()).dt.total_seconds()
        axes[0].plot(secs, ok["latency_ms"], ".", ms=3)
        axes[1].hist(ok["latency_ms"], bins=40)
        for q in ("p50", "p99"):
            if q in summary.get("latency_ms", {}):
                axes[1].axvline(summary["latency_ms"][q], color="k" if q == "p50" else "r", ls="--", label=q)
        axes[1].legend()
    axes[0].set_xlabel("seconds since first request")
    axes[0].set_ylabel("latency (ms)")
    axes[0].set_title("latency over time")
    axes[1].set_xlabel("latency (ms)")
    axes[1].set_title("latency histogram")
    classes = summary.get("classes") or {}
    if classes:
        x = np.arange(len(classes["names"]))
        axes[2].bar(x - 0.2, classes["served"], 0.4, label="served")
        if "training" in classes:
            axes[2].bar(x + 0.2, classes["training"], 0.4, label="training")
        axes[2].set_xticks(x, classes["names"])
        axes[2].legend()
        d = summary.get("drift") or {}
        axes[2].set_title("predicted classes" + (f" (TVD {d['tvd']:.3f})" if d.get("tvd") == d.get("tvd") and d
                                                 else ""))
    else:
        axes[2].set_title("predicted classes (none)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_distribution(training_dataset: dict[str, Any] | None, n_classes: int, *,
                          project: Any = None, split: str = "train") -> list[float] | None:
    """Class fractions of the labels of a model's training split, from its registry provenance.

    ``training_dataset`` is :attr:`workbench.registry.ModelVersion.training_dataset`. Returns
    None when there is no provenance, or when the labels are not the classes ``0..n_classes-1``.
    """
    if not training_dataset or "feature_view" not in training_dataset:
        return None
    from workbench.featurestore import FeatureStore, FeatureStoreError

    try:
        view_ref = training_dataset["feature_view"]
        view = FeatureStore(project).get_feature_view(view_ref["name"], view_ref.get("version"))
        td = view.get_training_dataset_metadata(int(training_dataset["version"]))
        labels = td.metadata["labels"]
        y = td._parquet(split).read(columns=labels).column(labels[0]).to_numpy(zero_copy_only=False)
    except (FeatureStoreError, KeyError, OSError, TypeError, ValueError) as exc:
        log.info("no training distribution: %s", exc)
        return None
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        return None
    counts = np.bincount(y, minlength=n_classes)
    return [float(c) / max(1, counts.sum()) for c in counts]
