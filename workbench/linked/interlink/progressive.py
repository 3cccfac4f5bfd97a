"""Progressive interlinking quality: recall and precision against the full run, per budget and weighting.

:func:`recall_curve` verifies every candidate pair once, then ranks the candidates by
each weighting exactly as a budgeted :func:`~workbench.linked.interlink.interlink` run
does (best weight first, ties by rows): the recall at budget *B* is the share of related
pairs among the first *B*, the same as a run with ``budget=B`` finds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely

from workbench.linked.interlink.engine import default_partitions, plan_run, run
from workbench.linked.interlink.inputs import read_sides
from workbench.linked.interlink.verification import ALL_RELATIONS
from workbench.linked.interlink.weighting import PairFeatures, pair_weights, parse_weighting

if TYPE_CHECKING:
    from distributed import Client
    from matplotlib.figure import Figure

__all__ = ["DEFAULT_WEIGHTINGS", "plot_recall_curve", "ranked_recall", "recall_curve"]

#: The weightings a curve compares by default.
DEFAULT_WEIGHTINGS: tuple[str, ...] = ("cf", "js", "chi2", "mbro", "isp", "chi2*mbro", "random")


def ranked_recall(weights: np.ndarray, *, source_rows: np.ndarray, target_rows: np.ndarray, related: np.ndarray,
                  budgets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after verifying the ``budgets`` best-weighted candidates (ties by rows)."""
    order = np.lexsort((target_rows, source_rows, -weights))
    found = np.concatenate([[0], np.cumsum(related[order])])
    total = max(int(related.sum()), 1)
    b = np.clip(np.asarray(budgets, dtype=np.int64), 0, len(weights))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(b > 0, found[b] / np.maximum(b, 1), 0.0)
    return found[b] / total, precision


def recall_curve(source: Any, target: Any, *, weightings: Sequence[str] = DEFAULT_WEIGHTINGS,
                 fractions: Sequence[float] = tuple(np.round(np.linspace(0.05, 1.0, 20), 2)),
                 filter: str = "grid", client: Client | None = None, partitions: int | None = None,
                 crs: str | None = None, invalid: str = "error", seed: int = 0) -> pd.DataFrame:
    """Recall and precision of progressive interlinking per weighting and budget (a share of the candidates).

    Returns
    -------
    pandas.DataFrame
        ``weighting, fraction, budget, recall, precision`` (recall of the intersecting pairs of
        the full run; precision: intersecting pairs among those verified).
    """
    schemes = {w: parse_weighting(w) for w in weightings}
    src, tgt, _ = read_sides(source, target, crs=crs, invalid=invalid)
    plan = plan_run(src, tgt, relations=("sfIntersects",), filter=filter, schemes=None,
                    partitions=partitions or default_partitions(src, tgt, client=client), seed=seed)
    full = run(src, tgt, plan=plan, client=client)
    s, t = full.source_rows, full.target_rows
    related = (full.masks & np.uint32(1 << ALL_RELATIONS.index("sfIntersects"))) != 0
    features = PairFeatures(src.bounds[s], tgt.bounds[t], shapely.get_num_coordinates(src.geoms[s]),
                            shapely.get_num_coordinates(tgt.geoms[t]), s, t)
    fr = np.asarray(fractions, dtype=np.float64)
    budgets = np.maximum(1, np.ceil(fr * len(s)).astype(np.int64))
    rows = []
    for name, parts in schemes.items():
        weights = pair_weights(parts, plan.grid, features=features, seed=seed)
        recall, precision = ranked_recall(weights, source_rows=s, target_rows=t, related=related, budgets=budgets)
        rows.append(pd.DataFrame({"weighting": name, "fraction": fr, "budget": budgets,
                                  "recall": recall, "precision": precision}))
    return pd.concat(rows, ignore_index=True)


def plot_recall_curve(table: pd.DataFrame, *, ax: Any = None, title: str = "Progressive interlinking") -> Figure:
    """Recall against the share of candidate pairs verified, one line per weighting (matplotlib)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    for name, group in table.groupby("weighting", sort=False):
        style = "--" if name == "random" else "-"
        ax.plot(group["fraction"] * 100, group["recall"], style, marker=".", label=name)
    ax.set_xlabel("candidate pairs verified (%)")
    ax.set_ylabel("recall of related pairs")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig
