"""``lagom``: run an optimisation or ablation experiment, locally or on a Dask cluster."""

from __future__ import annotations

import inspect
import logging
import time
import uuid
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.experiments import plots
from workbench.experiments.config import AblationConfig, OptimizationConfig
from workbench.experiments.searchspace import ExperimentError
from workbench.experiments.tracking import Tracker
from workbench.experiments.trial import Reporter, run_trial

if TYPE_CHECKING:
    from distributed import Client
    from matplotlib.figure import Figure

__all__ = ["lagom", "ExperimentResult"]

log = logging.getLogger(__name__)


@dataclass
class ExperimentResult:
    """What ``lagom`` returns.

    Attributes
    ----------
    name, kind
        Experiment name; ``"optimization"`` or ``"ablation"``.
    table
        One row per trial: number, state, parameters, metrics, duration, MLflow run id
        (ablation: component, kind, metric and its ``drop`` against the base).
    best
        Best trial: ``{"number", "params", "value", "metrics"}`` (ablation: the base trial).
    histories
        Broadcast ``(step, value)`` pairs of every trial.
    run_id
        MLflow run of the experiment (trials are its child runs); None if not tracked.
    study
        The Optuna study (an in-memory copy), for optimisation.
    plots
        Paths of the saved plots (PNG), by name.
    timings
        Seconds spent: ``trials`` (running trials, until the last one was tracked),
        ``summary`` (study copy, plots, summary run).
    """

    name: str
    kind: str
    optimization_key: str
    direction: str
    table: pd.DataFrame
    best: dict[str, Any] | None
    histories: dict[int, list[tuple[int, float]]]
    run_id: str | None = None
    study: Any = None
    plots: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def best_params(self) -> dict[str, Any]:
        """Hyper-parameters of the best trial."""
        if self.best is None:
            raise ExperimentError(f"experiment {self.name!r} has no completed trial")
        return dict(self.best["params"])

    def figures(self) -> dict[str, "Figure"]:
        """The plots as matplotlib figures."""
        states = dict(zip(self.table["number"], self.table["state"]))
        out: dict[str, Figure] = {
            "learning_curves": plots.learning_curves(self.histories, states, key=self.optimization_key)
        }
        if self.kind == "optimization" and self.study is not None:
            if any(t.state.name == "COMPLETE" for t in self.study.trials):
                out["optimization_history"] = plots.optimization_history(self.study)
            importance = plots.parameter_importance(self.study)
            if importance is not None:
                out["parameter_importance"] = importance
        if self.kind == "ablation":
            out["ablation"] = plots.ablation_drops(self.table, key=self.optimization_key)
        return out

    def __repr__(self) -> str:
        states = self.table["state"].value_counts().to_dict() if len(self.table) else {}
        return f"ExperimentResult(name={self.name!r}, kind={self.kind!r}, trials={states}, best={self.best})"


def _check_train_fn(train_fn: Any) -> None:
    if not callable(train_fn):
        raise ExperimentError(f"train_fn must be callable as train_fn(hparams, reporter), got {train_fn!r}")
    try:
        inspect.signature(train_fn).bind({}, Reporter())
    except TypeError as exc:
        raise ExperimentError(f"train_fn must accept (hparams, reporter): {exc}") from exc
    except ValueError:  # builtins without a signature
        pass


def _client(cluster: Any) -> "Client | None":
    if cluster is None or cluster is False or cluster == "":
        return None
    from distributed import Client

    from workbench.cluster import get_client

    if isinstance(cluster, Client):
        return cluster
    if cluster is True or cluster == "local":
        return get_client(None)
    if isinstance(cluster, str):
        return get_client(cluster)
    raise ExperimentError(
        f"cluster must be None, 'local', a scheduler address or a dask Client, got {cluster!r}"
    )


def _workers(client: "Client") -> int:
    return max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))


def lagom(
    train_fn: Callable[[dict[str, Any], Reporter], Any],
    config: OptimizationConfig | AblationConfig,
    *,
    cluster: Any = None,
    project: Any = None,
    track: bool = True,
) -> ExperimentResult:
    """Run an experiment: hyper-parameter optimisation or a LOCO ablation.

    Parameters
    ----------
    train_fn
        ``train_fn(hparams, reporter)``: trains with ``hparams`` (a dict; for an
        ablation it holds ``component``, ``excluded_features`` and
        ``excluded_layers``), calls ``reporter.broadcast(metric, step)`` as it
        goes, and returns the final metric or a dict of metrics holding the
        ``optimization_key``.
    config
        :class:`OptimizationConfig` or :class:`AblationConfig`.
    cluster
        None: run the trials here, one after another. ``"local"``: the
        workbench's Dask cluster (``dask_address`` setting, else a LocalCluster);
        a scheduler address; or a ``distributed.Client``. On a cluster as many
        trials run at once as there are workers.
    project
        Project directory or Settings (MLflow store under it).
    track
        Log the experiment and every trial to MLflow.

    Returns
    -------
    ExperimentResult
    """
    _check_train_fn(train_fn)
    if not isinstance(config, (OptimizationConfig, AblationConfig)):
        raise ExperimentError(
            f"config must be an OptimizationConfig or AblationConfig, got {type(config).__name__}"
        )
    client = _client(cluster)
    parallel = client is not None
    kind = "optimization" if isinstance(config, OptimizationConfig) else "ablation"
    key = config.optimization_key
    tracker = None
    if track:
        params = (
            {
                "optimizer": config.optimizer,
                "num_trials": config.num_trials,
                "direction": config.direction,
                "es_policy": config.es_policy,
                "searchspace": config.searchspace.to_dict(),
            }
            if isinstance(config, OptimizationConfig)
            else {
                "ablator": config.ablator,
                "direction": config.direction,
                "components": [c[0] for c in config.ablation_study.components()],
            }
        )
        tracker = Tracker(
            config.name,
            project=project,
            params=params,
            tags={"workbench.kind": kind, "mlflow.note.content": config.description},
        )

    study = None
    if isinstance(config, OptimizationConfig):
        study, specs = _optuna_specs(config, client, project)
    else:
        specs = iter(
            [
                {"mode": "fixed", "index": i, "params": p, "optimization_key": key}
                for i, p in enumerate(config.trials())
            ]
        )
    total = _total(config)
    records: list[dict[str, Any]] = []
    logged: dict[int, Future[str]] = {}
    t_start = time.perf_counter()
    progress = tqdm(total=total, desc=f"lagom {config.name}", disable=total < 2, leave=False)
    # trials are logged to MLflow by one background thread, so the next trial need not wait for sqlite
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wb-tracking") as pool:
        try:
            for record in _execute(train_fn, specs, client):
                records.append(record)
                if tracker is not None:
                    logged[record["number"]] = pool.submit(tracker.trial, record, key=key)
                progress.update(1)
                if record["state"] == "FAIL":
                    log.warning(
                        "trial %s failed: %s",
                        record["number"],
                        (record["error"] or "").strip().splitlines()[-1:],
                    )
        except BaseException:
            pool.shutdown(wait=True)
            if tracker is not None:
                tracker.finish(metrics={}, files={}, failed=True)
            raise
        finally:
            progress.close()
        run_ids = {number: future.result() for number, future in logged.items()}
    t_trials = time.perf_counter()
    if study is not None and parallel:
        import optuna

        local = optuna.storages.InMemoryStorage()
        optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage, to_storage=local)
        study = optuna.load_study(study_name=study.study_name, storage=local)
    result = _result(config, kind, records, run_ids, study, tracker)
    if tracker is not None:
        files = _save_plots(result, tracker)
        result.plots = {k: tracker.artifact_dir / v.name for k, v in files.items()}
        summary = {
            "trials_complete": float((result.table["state"] == "COMPLETE").sum()),
            "trials_pruned": float((result.table["state"] == "PRUNED").sum()),
            "trials_failed": float((result.table["state"] == "FAIL").sum()),
        }
        if result.best is not None and result.best.get("value") is not None:
            summary[f"best_{key}"] = float(result.best["value"])
        tracker.finish(metrics=summary, files=files)
    result.timings = {"trials": t_trials - t_start, "summary": time.perf_counter() - t_trials}
    return result


def _total(config: OptimizationConfig | AblationConfig) -> int:
    if isinstance(config, AblationConfig):
        return len(config.trials())
    if config.optimizer == "gridsearch":
        grid = config.searchspace.grid(config.grid_points)
        size = config.searchspace.grid_size(grid)
        if size < config.num_trials:
            log.info(
                "grid search: the grid has %d points; running %d trials, not %d",
                size,
                size,
                config.num_trials,
            )
        return min(size, config.num_trials)
    return config.num_trials


def _cluster_storage(client: "Client", project: Any) -> Any:
    """Study storage shared by the workers: Optuna's Dask storage, else a journal file under the project."""
    from optuna.exceptions import ExperimentalWarning

    try:
        from optuna_integration import DaskStorage
    except ImportError:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        from workbench.experiments._mlflow import artifact_root

        path = artifact_root(project).parent / "optuna-journal.log"
        log.warning(
            "optuna-integration is not installed: the study lives in %s (with file locks), which every "
            "Dask worker must be able to open; pip install optuna-integration for Optuna's Dask storage",
            path,
        )
        return JournalStorage(JournalFileBackend(str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return DaskStorage(client=client)


def _optuna_specs(
    config: OptimizationConfig, client: "Client | None", project: Any = None
) -> tuple[Any, Iterator[dict[str, Any]]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"{config.name}-{uuid.uuid4().hex[:8]}"
    if client is None:
        storage: Any = optuna.storages.InMemoryStorage()
    else:
        storage = _cluster_storage(client, project)
    direction = "maximize" if config.direction == "max" else "minimize"
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    grid = config.searchspace.grid(config.grid_points) if config.optimizer == "gridsearch" else None
    base = {
        "mode": "optuna",
        "storage": storage,
        "study": name,
        "optimizer": config.optimizer,
        "searchspace": config.searchspace,
        "grid": grid,
        "seed": config.seed,
        "parallel": client is not None,
        "es_policy": config.es_policy,
        "es_min": config.es_min,
        "es_interval": config.es_interval,
        "max_steps": config.max_steps,
        "optimization_key": config.optimization_key,
    }
    return study, iter([{**base, "index": i} for i in range(_total(config))])


def _execute(
    train_fn: Callable[..., Any], specs: Iterator[dict[str, Any]], client: "Client | None"
) -> Iterator[dict[str, Any]]:
    if client is None:
        for spec in specs:
            yield run_trial(train_fn, spec)
        return
    from distributed import as_completed

    from workbench.cluster import GPU_RESOURCE, task_resources, worker_resources

    # on GPU workers every trial holds one GPU while it runs (and frees it when it ends)
    resources = task_resources(client)
    slots = _workers(client)
    if resources:
        slots = max(1, int(sum(r.get(GPU_RESOURCE, 0) for r in worker_resources(client).values())))
    scattered = (
        client.scatter(train_fn, broadcast=True, hash=False) if not inspect.isfunction(train_fn) else train_fn
    )
    pending = as_completed(loop=client.loop)  # the given client, also when it is not the default one
    for spec in specs:
        pending.add(
            client.submit(
                run_trial,
                scattered,
                spec,
                pure=False,
                key=f"trial-{spec.get('study', 'abl')}-{spec['index']}-{uuid.uuid4().hex[:6]}",
                resources=resources,
            )
        )
        if pending.count() >= slots:
            break
    for future in pending:
        try:
            record = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker fails the trial, not the experiment
            record = {
                "number": -1,
                "params": {},
                "metrics": {},
                "value": None,
                "state": "FAIL",
                "error": f"{type(exc).__name__}: {exc}",
                "history": [],
                "messages": [],
                "artifacts": [],
                "started": 0.0,
                "duration": 0.0,
                "worker": "",
            }
        yield record
        nxt = next(specs, None)
        if nxt is not None:
            pending.add(
                client.submit(
                    run_trial,
                    scattered,
                    nxt,
                    pure=False,
                    key=f"trial-{nxt.get('study', 'abl')}-{nxt['index']}-{uuid.uuid4().hex[:6]}",
                    resources=resources,
                )
            )


def _result(
    config: OptimizationConfig | AblationConfig,
    kind: str,
    records: list[dict[str, Any]],
    run_ids: dict[int, str],
    study: Any,
    tracker: Tracker | None,
) -> ExperimentResult:
    key = config.optimization_key
    rows = []
    for r in sorted(records, key=lambda r: r["number"]):
        row: dict[str, Any] = {"number": r["number"], "state": r["state"]}
        if kind == "ablation":
            row.update(component=r["params"].get("component") or "(base)", kind=r["params"].get("kind"))
        else:
            row.update({f"param_{k}": v for k, v in r["params"].items()})
        row[key] = r["value"]
        row.update({k: v for k, v in r["metrics"].items() if k != key})
        row.update(
            steps=len(r["history"]),
            duration_s=r["duration"],
            run_id=run_ids.get(r["number"]),
            error=(r["error"] or "").strip().splitlines()[-1] if r["error"] else None,
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    sign = 1.0 if config.direction == "max" else -1.0
    complete = [r for r in records if r["state"] == "COMPLETE" and r["value"] is not None]
    best = None
    if kind == "ablation":
        base = next((r for r in records if r["params"].get("kind") == "base"), None)
        base_value = base["value"] if base is not None and base["state"] == "COMPLETE" else None
        table["drop"] = [
            (sign * (base_value - v))
            if base_value is not None and v is not None and s == "COMPLETE"
            else np.nan
            for v, s in zip(table[key], table["state"])
        ]
        if base is not None:
            best = {
                "number": base["number"],
                "params": base["params"],
                "value": base["value"],
                "metrics": base["metrics"],
            }
    elif complete:
        pick = max(complete, key=lambda r: sign * r["value"])
        best = {
            "number": pick["number"],
            "params": pick["params"],
            "value": pick["value"],
            "metrics": pick["metrics"],
        }
    histories = {r["number"]: list(r["history"]) for r in records}
    return ExperimentResult(
        name=config.name,
        kind=kind,
        optimization_key=key,
        direction=config.direction,
        table=table,
        best=best,
        histories=histories,
        run_id=tracker.run_id if tracker else None,
        study=study,
    )


def _save_plots(result: ExperimentResult, tracker: Tracker) -> dict[str, Path]:
    folder = tracker.scratch()
    files: dict[str, Path] = {}
    table_file = folder / "trials.csv"
    result.table.to_csv(table_file, index=False)
    files["table"] = table_file
    import matplotlib.pyplot as plt

    for name, fig in result.figures().items():
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)  # Optuna's plots are pyplot figures: do not let a notebook show them here
        files[name] = path
    return files
