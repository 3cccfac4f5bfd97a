"""Experiments in Maggy's shape: hyper-parameter tuning and ablation, on Optuna, Dask and MLflow.

``lagom(train_fn, config)`` runs the trials of an :class:`OptimizationConfig`
(random search, grid search, TPE, GP, ASHA, Hyperband; median early
stopping) or of an :class:`AblationConfig` (leave-one-component-out), in
this process or in parallel on a Dask cluster, and tracks each trial in the
project's MLflow store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports

_EXPORTS = {
    "ABLATORS": "workbench.experiments.config",
    "ES_POLICIES": "workbench.experiments.config",
    "OPTIMIZERS": "workbench.experiments.config",
    "AblationConfig": "workbench.experiments.config",
    "AblationStudy": "workbench.experiments.config",
    "OptimizationConfig": "workbench.experiments.config",
    "ExperimentResult": "workbench.experiments.lagom",
    "lagom": "workbench.experiments.lagom",
    "remove_layers": "workbench.experiments.layers",
    "ExperimentError": "workbench.experiments.searchspace",
    "Searchspace": "workbench.experiments.searchspace",
    "EarlyStopped": "workbench.experiments.trial",
    "Reporter": "workbench.experiments.trial",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # the names for type checkers and IDEs
    from workbench.experiments.config import (
        ABLATORS,
        ES_POLICIES,
        OPTIMIZERS,
        AblationConfig,
        AblationStudy,
        OptimizationConfig,
    )
    from workbench.experiments.lagom import ExperimentResult, lagom
    from workbench.experiments.layers import remove_layers
    from workbench.experiments.searchspace import ExperimentError, Searchspace
    from workbench.experiments.trial import EarlyStopped, Reporter

__all__ = [
    "lagom",
    "OptimizationConfig",
    "AblationConfig",
    "AblationStudy",
    "Searchspace",
    "Reporter",
    "ExperimentResult",
    "ExperimentError",
    "EarlyStopped",
    "remove_layers",
    "OPTIMIZERS",
    "ES_POLICIES",
    "ABLATORS",
]
