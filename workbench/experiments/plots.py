"""Plots of an experiment: optimisation history, parameter importance, learning curves, ablation drops."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Mapping

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["optimization_history", "parameter_importance", "learning_curves", "ablation_drops"]

log = logging.getLogger(__name__)


def _figure(width: float = 6.0, height: float = 4.0) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def optimization_history(study: Any) -> "Figure":
    """Objective value of each trial and the best so far (Optuna's plot)."""
    from optuna.visualization.matplotlib import plot_optimization_history

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = plot_optimization_history(study)
    return ax.figure


def parameter_importance(study: Any) -> "Figure | None":
    """fANOVA importance of each hyper-parameter (None when too few trials completed)."""
    from optuna.visualization.matplotlib import plot_param_importances

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = plot_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        log.info("no parameter importance plot: %s", exc)
        return None
    return ax.figure


def learning_curves(
    histories: Mapping[int, list[tuple[int, float]]], states: Mapping[int, str], *, key: str
) -> "Figure":
    """The broadcast metric of every trial against its step (pruned trials dashed, failed dotted)."""
    fig = _figure()
    ax = fig.add_subplot()
    for number, history in sorted(histories.items()):
        if not history:
            continue
        steps, values = zip(*history)
        style = {"PRUNED": "--", "FAIL": ":"}.get(states.get(number, ""), "-")
        ax.plot(steps, values, style, marker=".", label=f"trial {number}")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title("Learning curves")
    if 0 < len(ax.lines) <= 12:
        ax.legend(fontsize="small")
    return fig


def ablation_drops(table: pd.DataFrame, *, key: str) -> "Figure":
    """Bar chart of the metric drop when each component is left out."""
    fig = _figure()
    ax = fig.add_subplot()
    rows = table[table["kind"] != "base"]
    ax.barh(rows["component"].astype(str), rows["drop"].fillna(0.0))
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"drop of {key} when left out")
    ax.set_title("Leave-one-component-out ablation")
    return fig
