"""Maggy-shaped search spaces, sampled by Optuna (pure: no I/O)."""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from workbench.errors import ConfigError

__all__ = ["Searchspace", "ExperimentError", "PARAM_TYPES"]

PARAM_TYPES = ("DOUBLE", "INTEGER", "DISCRETE", "CATEGORICAL")


class ExperimentError(ConfigError):
    """An experiment got a bad configuration or train function."""


def _number(x: Any) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool) and math.isfinite(float(x))


class Searchspace:
    """Hyper-parameters and their domains, as in Maggy.

    ``Searchspace(lr=("DOUBLE", [1e-4, 1e-2]), layers=("INTEGER", [2, 4]),
    cells=("DISCRETE", [100, 125, 200]), act=("CATEGORICAL", ["relu", "tanh"]))``.
    A DOUBLE may take a third element ``"log"`` to be sampled on a log scale.
    """

    def __init__(self, **params: Any) -> None:
        self._params: dict[str, tuple[str, list[Any], bool]] = {}
        for name, spec in params.items():
            self.add(name, spec)

    def add(self, name: str, spec: Any) -> None:
        """Add hyper-parameter ``name`` with ``spec = (TYPE, values[, "log"])``."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ExperimentError(f"hyper-parameter name must be an identifier, got {name!r}")
        if name in self._params:
            raise ExperimentError(f"hyper-parameter {name!r} is defined twice")
        if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
            raise ExperimentError(f"hyper-parameter {name!r}: expected (TYPE, values), got {spec!r}")
        kind, values = spec[0], spec[1]
        log = len(spec) == 3 and spec[2] == "log"
        if len(spec) == 3 and not log:
            raise ExperimentError(
                f"hyper-parameter {name!r}: the third element may only be 'log', got {spec[2]!r}"
            )
        if not isinstance(kind, str) or kind.upper() not in PARAM_TYPES:
            raise ExperimentError(
                f"hyper-parameter {name!r}: type must be one of {PARAM_TYPES}, got {kind!r}"
            )
        kind = kind.upper()
        if not isinstance(values, (list, tuple)) or not values:
            raise ExperimentError(
                f"hyper-parameter {name!r}: values must be a non-empty list, got {values!r}"
            )
        values = list(values)
        if kind in ("DOUBLE", "INTEGER"):
            if len(values) != 2 or not all(_number(v) for v in values) or values[0] >= values[1]:
                raise ExperimentError(
                    f"hyper-parameter {name!r}: {kind} needs [low, high] with low < high, got {values}"
                )
            if kind == "INTEGER" and not all(float(v).is_integer() for v in values):
                raise ExperimentError(
                    f"hyper-parameter {name!r}: INTEGER bounds must be integers, got {values}"
                )
            if log and (kind != "DOUBLE" or values[0] <= 0):
                raise ExperimentError(f"hyper-parameter {name!r}: 'log' needs a DOUBLE with low > 0")
        elif kind == "DISCRETE" and not all(_number(v) for v in values):
            raise ExperimentError(f"hyper-parameter {name!r}: DISCRETE values must be numbers, got {values}")
        if kind in ("DISCRETE", "CATEGORICAL") and len(set(map(repr, values))) != len(values):
            raise ExperimentError(f"hyper-parameter {name!r}: values repeat ({values})")
        self._params[name] = (kind, values, log)

    def names(self) -> list[str]:
        """Names of the hyper-parameters."""
        return list(self._params)

    def items(self) -> Iterator[tuple[str, tuple[str, list[Any], bool]]]:
        """``(name, (type, values, log))`` pairs."""
        return iter(self._params.items())

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return "Searchspace(" + ", ".join(f"{k}=({t!r}, {v})" for k, (t, v, _) in self._params.items()) + ")"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description."""
        return {k: [t, v] + (["log"] if lg else []) for k, (t, v, lg) in self._params.items()}

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample one value of each hyper-parameter with an Optuna trial."""
        out: dict[str, Any] = {}
        for name, (kind, values, log) in self._params.items():
            if kind == "DOUBLE":
                out[name] = trial.suggest_float(name, float(values[0]), float(values[1]), log=log)
            elif kind == "INTEGER":
                out[name] = trial.suggest_int(name, int(values[0]), int(values[1]))
            else:
                out[name] = trial.suggest_categorical(name, values)
        return out

    def grid(self, points: int = 3) -> dict[str, list[Any]]:
        """The grid for grid search: ``points`` values per DOUBLE, all values of the others.

        An INTEGER range with more than ``points`` values is also cut to ``points`` evenly spaced ones.
        """
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise ExperimentError(f"grid points must be an integer >= 2, got {points!r}")
        out: dict[str, list[Any]] = {}
        for name, (kind, values, log) in self._params.items():
            if kind == "DOUBLE":
                lo, hi = float(values[0]), float(values[1])
                grid = np.geomspace(lo, hi, points) if log else np.linspace(lo, hi, points)
                out[name] = [float(v) for v in grid]
            elif kind == "INTEGER":
                lo, hi = int(values[0]), int(values[1])
                out[name] = (
                    list(range(lo, hi + 1))
                    if hi - lo + 1 <= points
                    else sorted({int(round(v)) for v in np.linspace(lo, hi, points)})
                )
            else:
                out[name] = list(values)
        return out

    @staticmethod
    def grid_size(grid: Mapping[str, Sequence[Any]]) -> int:
        """Number of points of a grid."""
        return int(np.prod([len(v) for v in grid.values()])) if grid else 0
