"""Experiment configurations in Maggy's shape: optimisation (tuning) and ablation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from workbench.experiments.searchspace import ExperimentError, Searchspace

__all__ = [
    "OptimizationConfig",
    "AblationConfig",
    "AblationStudy",
    "OPTIMIZERS",
    "ES_POLICIES",
    "ABLATORS",
]

OPTIMIZERS = ("randomsearch", "gridsearch", "tpe", "gp", "asha", "hyperband")
ES_POLICIES = ("median", "none")
ABLATORS = ("loco",)
DIRECTIONS = ("max", "min")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExperimentError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass
class OptimizationConfig:
    """Hyper-parameter optimisation, as Maggy's ``OptimizationConfig``.

    Attributes
    ----------
    num_trials
        Number of trials (grid search stops earlier when its grid is smaller).
    optimizer
        ``randomsearch``, ``gridsearch``, ``tpe``, ``gp`` (Gaussian process; needs
        PyTorch), ``asha`` (random sampling + successive halving) or ``hyperband``
        (TPE + Hyperband).
    searchspace
        The :class:`Searchspace`.
    optimization_key
        Name of the metric to optimise (a key of the dict ``train_fn`` returns).
    direction
        ``"max"`` or ``"min"``.
    es_policy
        Early stopping of the other optimizers: ``"median"`` (Optuna's MedianPruner)
        or ``"none"``.
    es_interval
        Steps between two early-stopping checks.
    es_min
        Trials that must finish before early stopping starts.
    max_steps
        Largest step a trial broadcasts (the resource of ASHA/Hyperband); None: learned.
    grid_points
        Values per DOUBLE (and long INTEGER) range in grid search.
    seed
        Seed of the sampler.
    name, description
        Name of the experiment (MLflow experiment) and free text.
    """

    num_trials: int
    optimizer: str
    searchspace: Searchspace
    optimization_key: str = "metric"
    direction: str = "max"
    es_policy: str = "median"
    es_interval: int = 1
    es_min: int = 5
    max_steps: int | None = None
    grid_points: int = 3
    seed: int | None = 0
    name: str = "no-name"
    description: str = ""

    def __post_init__(self) -> None:
        _positive_int(self.num_trials, "num_trials")
        if self.optimizer not in OPTIMIZERS:
            raise ExperimentError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not isinstance(self.searchspace, Searchspace) or not len(self.searchspace):
            raise ExperimentError("searchspace must be a non-empty Searchspace")
        if not isinstance(self.optimization_key, str) or not self.optimization_key:
            raise ExperimentError(f"optimization_key must be a metric name, got {self.optimization_key!r}")
        if self.direction not in DIRECTIONS:
            raise ExperimentError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.es_policy not in ES_POLICIES:
            raise ExperimentError(f"es_policy must be one of {ES_POLICIES}, got {self.es_policy!r}")
        _positive_int(self.es_interval, "es_interval")
        _positive_int(self.es_min, "es_min", 0)
        if self.max_steps is not None:
            _positive_int(self.max_steps, "max_steps")
        _positive_int(self.grid_points, "grid_points", 2)
        if self.seed is not None:
            _positive_int(self.seed, "seed", 0)
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ExperimentError(f"name must be a simple name (letters, digits, '_.-'), got {self.name!r}")
        if self.optimizer == "gp":
            try:
                import torch  # noqa: F401
            except ImportError:
                raise ExperimentError(
                    "optimizer 'gp' uses Optuna's GPSampler, which needs PyTorch: pip install torch "
                    "(or choose 'tpe')"
                ) from None


class _Components:
    """A set of named components (features or layers), singly or in named groups."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.single: list[str] = []
        self.groups: dict[str, list[str]] = {}

    def include(self, *names: str) -> None:
        """Ablate each of ``names`` alone."""
        for n in names:
            if not isinstance(n, str) or not n:
                raise ExperimentError(f"{self.kind} name must be a non-empty string, got {n!r}")
            if n in self.single:
                raise ExperimentError(f"{self.kind} {n!r} is included twice")
            self.single.append(n)

    def include_groups(
        self,
        name: str | None = None,
        members: Sequence[str] = (),
        *,
        prefix: str | None = None,
        available: Sequence[str] = (),
    ) -> None:
        """Ablate ``members`` together as one component named ``name``.

        With ``prefix``, the members are the ``available`` names that start with it.
        """
        if prefix is not None:
            members = [a for a in available if a.startswith(prefix)]
            name = name or prefix
        if isinstance(members, str) or not members or not all(isinstance(m, str) and m for m in members):
            raise ExperimentError(
                f"{self.kind} group {name!r} needs a non-empty list of names, got {members!r}"
            )
        if not isinstance(name, str) or not name:
            raise ExperimentError(f"{self.kind} group needs a name, got {name!r}")
        if name in self.groups:
            raise ExperimentError(f"{self.kind} group {name!r} is included twice")
        self.groups[name] = list(members)

    def components(self) -> list[tuple[str, str, list[str]]]:
        """``(component name, kind, members)`` for each single and grouped component."""
        return [(n, self.kind, [n]) for n in self.single] + [
            (n, f"{self.kind}_group", m) for n, m in self.groups.items()
        ]


class _Model:
    def __init__(self) -> None:
        self.layers = _Components("layer")


class AblationStudy:
    """What to ablate, as Maggy's ``AblationStudy``.

    ``study.features.include("ndvi", "b8")``, ``study.features.include_groups("s1", ["vv", "vh"])``,
    ``study.model.layers.include("dense_2")``. Feature groups of the feature store can be
    ablated whole with ``study.include_feature_group(fg)``.
    """

    def __init__(
        self,
        training_dataset_name: str = "",
        training_dataset_version: int | None = None,
        label_name: str | Sequence[str] = "",
    ) -> None:
        self.training_dataset_name = training_dataset_name
        self.training_dataset_version = training_dataset_version
        self.label_name = label_name
        self.features = _Components("feature")
        self.model = _Model()

    def include_feature_group(self, group: Any, *, features: Sequence[str] | None = None) -> None:
        """Ablate the features of a feature-store group together (its keys and event time excluded)."""
        names = (
            list(features)
            if features is not None
            else [f for f in group.feature_names() if f not in set(group.primary_key) | {group.event_time}]
        )
        self.features.include_groups(group.name, names)

    def components(self) -> list[tuple[str, str, list[str]]]:
        """Every component to leave out, with its kind and members."""
        comps = self.features.components() + self.model.layers.components()
        names = [c[0] for c in comps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ExperimentError(f"ablation components {dup} are named twice (as a feature and a layer?)")
        return comps


@dataclass
class AblationConfig:
    """An ablation experiment, as Maggy's ``AblationConfig``.

    Attributes
    ----------
    ablation_study
        The :class:`AblationStudy`.
    ablator
        ``"loco"``: one trial without each component, plus the base trial with all.
    optimization_key
        Metric compared between trials.
    direction
        ``"max"`` (a drop is base - trial) or ``"min"`` (a drop is trial - base).
    name, description
        Name of the experiment and free text.
    """

    ablation_study: AblationStudy
    ablator: str = "loco"
    optimization_key: str = "metric"
    direction: str = "max"
    name: str = "ablation"
    description: str = ""
    hparams: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.ablation_study, AblationStudy):
            raise ExperimentError(
                f"ablation_study must be an AblationStudy, got {type(self.ablation_study).__name__}"
            )
        if self.ablator not in ABLATORS:
            raise ExperimentError(f"ablator must be one of {ABLATORS}, got {self.ablator!r}")
        if self.direction not in DIRECTIONS:
            raise ExperimentError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ExperimentError(f"name must be a simple name (letters, digits, '_.-'), got {self.name!r}")
        if not self.ablation_study.components():
            raise ExperimentError("the ablation study includes no feature or layer to leave out")

    def trials(self) -> list[dict[str, Any]]:
        """The LOCO trials: the base, then one per left-out component."""
        out: list[dict[str, Any]] = [
            {
                "component": None,
                "kind": "base",
                "excluded_features": [],
                "excluded_layers": [],
                **self.hparams,
            }
        ]
        for name, kind, members in self.ablation_study.components():
            is_layer = kind.startswith("layer")
            out.append(
                {
                    "component": name,
                    "kind": kind,
                    "excluded_features": [] if is_layer else list(members),
                    "excluded_layers": list(members) if is_layer else [],
                    **self.hparams,
                }
            )
        return out
