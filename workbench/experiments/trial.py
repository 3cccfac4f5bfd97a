"""One trial: sample (or take) hyper-parameters, run ``train_fn(hparams, reporter)``, record the outcome.

This module runs wherever a trial runs: in the calling process, or on a Dask
worker. It talks to the Optuna study through its storage (Optuna's Dask
storage on a cluster), never to MLflow: the caller tracks finished trials.
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
from typing import Any, Callable, Mapping

import numpy as np

from workbench.experiments.searchspace import ExperimentError, Searchspace

__all__ = ["Reporter", "run_trial", "make_sampler", "make_pruner", "EarlyStopped"]


def _import_optuna() -> Any:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


class EarlyStopped(Exception):
    """Raised inside ``train_fn`` by :meth:`Reporter.broadcast` when the pruner stops the trial."""


class Reporter:
    """Given to ``train_fn``: ``reporter.broadcast(metric, step)`` reports progress; pruning acts on it."""

    def __init__(self, trial: Any = None, *, es_interval: int = 1, trial_id: int = 0) -> None:
        self._trial = trial
        self._es_interval = es_interval
        pruner = getattr(getattr(trial, "study", None), "pruner", None)
        self._prunes = trial is not None and type(pruner).__name__ != "NopPruner"
        self.trial_id = trial_id
        self.history: list[tuple[int, float]] = []
        self.messages: list[str] = []
        self.artifacts: list[str] = []

    def broadcast(self, metric: float, step: int | None = None) -> None:
        """Report the current value of the optimisation metric at ``step`` (default: the next step).

        Raises
        ------
        EarlyStopped
            When the early-stopping policy (median, ASHA, Hyperband) stops this
            trial; let it propagate out of ``train_fn``.
        """
        if isinstance(metric, bool) or not isinstance(metric, (int, float, np.number)):
            raise ExperimentError(f"reporter.broadcast: metric must be a number, got {metric!r}")
        value = float(metric)
        if step is None:
            step = self.history[-1][0] + 1 if self.history else 0
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ExperimentError(f"reporter.broadcast: step must be an integer >= 0, got {step!r}")
        step = int(step)
        self.history.append((step, value))
        if self._trial is None or not math.isfinite(value):
            return
        self._trial.report(value, step)
        if self._prunes and step % self._es_interval == 0 and self._trial.should_prune():
            raise EarlyStopped(f"trial stopped early at step {step} (value {value:g})")

    def log(self, message: str) -> None:
        """Keep a log line with the trial (shown in the result and MLflow)."""
        self.messages.append(str(message))

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """Attach a file to the trial's MLflow run (it must be readable where ``lagom`` runs)."""
        self.artifacts.append(os.fspath(path))


def make_sampler(optimizer: str, *, seed: int | None, grid: Mapping[str, Any] | None, parallel: bool) -> Any:
    """The Optuna sampler of a Maggy optimizer name."""
    optuna = _import_optuna()
    if optimizer in ("randomsearch", "asha"):
        return optuna.samplers.RandomSampler(seed=seed)
    if optimizer == "gridsearch":
        return optuna.samplers.GridSampler(dict(grid or {}), seed=seed)
    if optimizer in ("tpe", "hyperband"):
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)
    if optimizer == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ExperimentError(f"unknown optimizer {optimizer!r}")


def make_pruner(optimizer: str, *, es_policy: str, es_min: int, max_steps: int | None) -> Any:
    """The Optuna pruner of an optimizer and early-stopping policy."""
    optuna = _import_optuna()
    if optimizer == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if optimizer == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_steps or "auto", reduction_factor=3
        )
    if es_policy == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=es_min, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _metrics(out: Any, key: str, reporter: Reporter) -> dict[str, float]:
    if out is None:
        if not reporter.history:
            raise ExperimentError(f"train_fn returned nothing and broadcast no {key!r}")
        return {key: reporter.history[-1][1]}
    if isinstance(out, Mapping):
        metrics = {}
        for k, v in out.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                raise ExperimentError(f"train_fn returned metric {k!r} = {v!r}; metrics must be numbers")
            metrics[str(k)] = float(v)
        if key not in metrics:
            raise ExperimentError(
                f"train_fn returned metrics {sorted(metrics)}, without optimization_key {key!r}"
            )
        return metrics
    if isinstance(out, (int, float, np.number)) and not isinstance(out, bool):
        return {key: float(out)}
    raise ExperimentError(f"train_fn must return a number or a dict of metrics, got {type(out).__name__}")


def _tell(study: Any, trial: Any, state: str, value: float | None) -> None:
    """Finish the Optuna trial once, whatever the outcome."""
    optuna = _import_optuna()
    try:
        if state == "COMPLETE":
            study.tell(trial, value)
        else:
            study.tell(trial, state=getattr(optuna.trial.TrialState, state))
    except RuntimeError as exc:
        # GridSampler stops the study when its grid is used up, which Optuna only allows inside
        # study.optimize; with ask/tell the trial is already recorded when that is raised
        if "Study.stop" not in str(exc):
            raise


def run_trial(train_fn: Callable[[dict[str, Any], Reporter], Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run one trial described by ``spec`` and return its record.

    ``spec["mode"]`` is ``"optuna"`` (ask the study for parameters; ``storage``,
    ``study``, ``optimizer``, ``searchspace``, ``grid``, ``seed``...) or
    ``"fixed"`` (``params`` given, as in an ablation). A trial whose
    ``train_fn`` raises is recorded as failed, with its traceback.
    """
    started = time.time()
    t0 = time.perf_counter()
    key = spec["optimization_key"]
    study = trial = None
    if spec["mode"] == "optuna":
        optuna = _import_optuna()
        # one seed per trial (samplers are re-created on each worker), but one grid order for grid search
        offset = 0 if spec["optimizer"] == "gridsearch" else int(spec["index"])
        seed = None if spec.get("seed") is None else int(spec["seed"]) + offset
        study = optuna.load_study(
            study_name=spec["study"],
            storage=spec["storage"],
            sampler=make_sampler(
                spec["optimizer"], seed=seed, grid=spec.get("grid"), parallel=spec["parallel"]
            ),
            pruner=make_pruner(
                spec["optimizer"],
                es_policy=spec["es_policy"],
                es_min=spec["es_min"],
                max_steps=spec.get("max_steps"),
            ),
        )
        trial = study.ask()
        searchspace: Searchspace = spec["searchspace"]
        params = searchspace.suggest(trial)
        number = int(trial.number)
    else:
        params = dict(spec["params"])
        number = int(spec["index"])
    reporter = Reporter(trial, es_interval=int(spec.get("es_interval", 1)), trial_id=number)
    record: dict[str, Any] = {"number": number, "params": params, "metrics": {}, "value": None, "error": None}
    try:
        out = train_fn(dict(params), reporter)
        metrics = _metrics(out, key, reporter)
        record.update(state="COMPLETE", metrics=metrics, value=metrics[key])
        if not math.isfinite(metrics[key]):
            record.update(state="FAIL", error=f"{key} is {metrics[key]}")
    except (KeyboardInterrupt, SystemExit):
        if study is not None:
            _tell(study, trial, "FAIL", None)
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing trial must not stop the experiment
        if isinstance(exc, EarlyStopped) or exc.__class__.__name__ == "TrialPruned":
            last = reporter.history[-1][1] if reporter.history else None
            record.update(state="PRUNED", value=last, metrics={key: last} if last is not None else {})
        else:
            record.update(state="FAIL", error="".join(traceback.format_exception(exc)))
    if study is not None:
        _tell(study, trial, record["state"], record["value"])
    record.update(
        history=reporter.history,
        messages=reporter.messages,
        artifacts=reporter.artifacts,
        started=started,
        duration=time.perf_counter() - t0,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    return record
