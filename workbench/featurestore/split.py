"""Assign rows to training-dataset splits (pure computation).

Three kinds of rule, all reproducible from ``seed``:

* fractions, ``{"train": 0.8, "test": 0.2}``: rows at random, or whole groups
  (tiles, scenes) at random when ``split_by`` names a column;
* explicit groups, ``{"train": ["33TWM", "33TWN"], "test": ["33UVP"]}`` with
  ``split_by="tile"``: rows whose ``split_by`` value is listed;
* time ranges, ``{"train": ("2020-01-01", "2021-01-01"), "test": ("2021-01-01", None)}``
  with ``split_by`` a datetime column: ``start <= t < end`` (None: open).

Rows that fall in no split (explicit groups or ranges that do not cover
them) are left out and counted in the result.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from workbench.featurestore._common import FeatureStoreError

__all__ = ["assign_splits", "split_kind"]


def split_kind(split: Mapping[str, Any]) -> str:
    """``"fraction"``, ``"groups"`` or ``"time"``; raises on a malformed rule."""
    if not isinstance(split, Mapping) or not split:
        raise FeatureStoreError(f"split must be a non-empty mapping of split name to rule, got {split!r}")
    for name in split:
        if not isinstance(name, str) or not name.isidentifier():
            raise FeatureStoreError(f"split names must be identifiers, got {name!r}")
    values = list(split.values())
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if any(v <= 0 or v > 1 for v in values) or abs(sum(values) - 1.0) > 1e-6:
            raise FeatureStoreError(f"split fractions must each be in (0, 1] and sum to 1, got {dict(split)}")
        return "fraction"
    if all(isinstance(v, tuple) and len(v) == 2 for v in values):
        return "time"
    if all(isinstance(v, (list, set, frozenset)) and len(v) > 0 for v in values):
        return "groups"
    raise FeatureStoreError(
        "split values must be all fractions (0.8), all lists of split_by values, or all (start, end) "
        f"time ranges; got {dict(split)}"
    )


def assign_splits(
    frame: pd.DataFrame,
    split: Mapping[str, Any],
    *,
    split_by: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Split name of each row of ``frame`` (``None`` for rows in no split)."""
    kind = split_kind(split)
    if split_by is not None and split_by not in frame.columns:
        raise FeatureStoreError(
            f"split_by column {split_by!r} is not in the query output {list(frame.columns)}"
        )
    if kind in ("groups", "time") and split_by is None:
        raise FeatureStoreError(f"a split by {kind} needs split_by (the column to split on)")
    names = list(split)
    out = np.full(len(frame), None, dtype=object)
    rng = np.random.default_rng(seed)
    if kind == "fraction":
        bounds = np.cumsum([float(split[n]) for n in names])
        bounds[-1] = 1.0 + 1e-9
        if split_by is None:
            position = (rng.permutation(len(frame)) + 0.5) / max(len(frame), 1)
        else:
            keys = frame[split_by].astype(str).to_numpy()
            groups, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
            order = rng.permutation(len(groups))
            cum = np.cumsum(counts[order]) - counts[order] / 2.0
            mid = np.empty(len(groups))
            mid[order] = cum / max(len(frame), 1)
            position = mid[inverse]
        out[:] = np.asarray(names, dtype=object)[np.searchsorted(bounds, position, side="right")]
        return out
    if kind == "groups":
        values = frame[split_by].astype(str).to_numpy()
        seen: dict[str, str] = {}
        for n in names:
            for v in split[n]:
                if str(v) in seen:
                    raise FeatureStoreError(f"split_by value {v!r} is in both {seen[str(v)]!r} and {n!r}")
                seen[str(v)] = n
        for n in names:
            out[np.isin(values, [str(v) for v in split[n]])] = n
        return out
    times = pd.to_datetime(frame[split_by])
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    for n in names:
        start, end = split[n]
        mask = np.ones(len(frame), dtype=bool)
        if start is not None:
            mask &= (times >= pd.Timestamp(start).tz_localize(None)).to_numpy()
        if end is not None:
            mask &= (times < pd.Timestamp(end).tz_localize(None)).to_numpy()
        if (out[mask] != None).any():  # noqa: E711 - elementwise comparison with None
            raise FeatureStoreError(f"time range of split {n!r} overlaps another split")
        out[mask] = n
    return out
