"""Experiments: Optuna-backed tuning (all optimizers), early stopping, failures, Dask trials, LOCO ablation."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from workbench.experiments import (  # noqa: E402
    AblationConfig,
    AblationStudy,
    ExperimentError,
    OptimizationConfig,
    Reporter,
    Searchspace,
    lagom,
    remove_layers,
)
from workbench.experiments._mlflow import client  # noqa: E402

SPACE = dict(
    lr=("DOUBLE", [1e-4, 1e-2], "log"), layers=("INTEGER", [2, 4]), cells=("DISCRETE", [100, 200, 300])
)


def quadratic(hp: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """Best at lr=1e-3, layers=3, cells=200; the curve rises with the step."""
    score = -((math.log10(hp["lr"]) + 3) ** 2) - (hp["layers"] - 3) ** 2 - ((hp["cells"] - 200) / 100) ** 2
    for step in range(6):
        reporter.broadcast(score - (5 - step) * 0.1, step)
    return {"acc": score, "loss": -score}


@pytest.mark.parametrize("optimizer", ["randomsearch", "gridsearch", "tpe", "asha", "hyperband"])
def test_optimizers_run_and_track_every_trial(project_dir: Path, optimizer: str) -> None:
    config = OptimizationConfig(
        num_trials=10,
        optimizer=optimizer,
        searchspace=Searchspace(**SPACE),
        optimization_key="acc",
        direction="max",
        es_policy="none",
        name=f"opt-{optimizer}",
    )
    result = lagom(quadratic, config)
    assert len(result.table) == 10
    assert set(result.table["state"]) <= {"COMPLETE", "PRUNED"}
    complete = result.table[result.table["state"] == "COMPLETE"]
    assert result.best is not None and result.best["value"] == pytest.approx(complete["acc"].max())
    assert set(result.best_params) == {"lr", "layers", "cells"}
    assert 1e-4 <= result.best_params["lr"] <= 1e-2 and result.best_params["cells"] in (100, 200, 300)
    if optimizer in ("asha", "hyperband"):
        assert (result.table["state"] == "PRUNED").any()
    if optimizer == "gridsearch":
        params = result.table[["param_lr", "param_layers", "param_cells"]].apply(tuple, axis=1)
        assert params.is_unique
    runs = client(None).search_runs([client(None).get_experiment_by_name(config.name).experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id]
    assert len(children) == 10
    history = client(None).get_metric_history(children[0].info.run_id, "acc_history")
    assert len(history) >= 1
    assert {"table", "learning_curves", "optimization_history"} <= set(result.plots)
    assert all(Path(p).is_file() for p in result.plots.values())


def test_tpe_finds_a_better_point_than_the_first_trials(project_dir: Path) -> None:
    config = OptimizationConfig(
        num_trials=25,
        optimizer="tpe",
        searchspace=Searchspace(**SPACE),
        optimization_key="acc",
        es_policy="none",
        seed=1,
        name="tpe-quality",
    )
    result = lagom(quadratic, config, track=False)
    assert result.best["value"] > result.table["acc"].iloc[:3].max()
    assert result.run_id is None


def test_median_early_stopping_and_failed_trials(project_dir: Path) -> None:
    def train(hp: dict[str, Any], reporter: Reporter) -> float:
        if hp["cells"] == 300:
            raise RuntimeError("out of memory (simulated by the test)")
        value = 0.0
        for step in range(8):
            value = hp["lr"] * 100 * (step + 1)
            reporter.broadcast(value, step)
        return value

    config = OptimizationConfig(
        num_trials=16,
        optimizer="randomsearch",
        searchspace=Searchspace(**SPACE),
        optimization_key="metric",
        es_policy="median",
        es_min=2,
        name="median",
    )
    result = lagom(train, config)
    states = result.table["state"].value_counts().to_dict()
    assert states.get("PRUNED", 0) >= 1 and states.get("FAIL", 0) >= 1 and states.get("COMPLETE", 0) >= 2
    failed = result.table[result.table["state"] == "FAIL"]
    assert failed["error"].str.contains("out of memory").all()
    pruned = result.table[result.table["state"] == "PRUNED"]
    assert (pruned["steps"] < 8).all()


def test_gp_needs_torch_or_runs(project_dir: Path) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ExperimentError, match="PyTorch"):
            OptimizationConfig(num_trials=3, optimizer="gp", searchspace=Searchspace(**SPACE))
        return
    config = OptimizationConfig(
        num_trials=12,
        optimizer="gp",
        searchspace=Searchspace(**SPACE),
        optimization_key="acc",
        es_policy="none",
        name="gp",
    )
    assert lagom(quadratic, config, track=False).best is not None


def test_trials_run_in_parallel_on_dask_workers(project_dir: Path) -> None:
    from distributed import Client, LocalCluster

    def slow(hp: dict[str, Any], reporter: Reporter) -> float:
        for step in range(3):
            time.sleep(0.15)
            reporter.broadcast(hp["lr"] * step, step)
        if hp["layers"] == 4 and hp["cells"] == 300:
            raise ValueError("bad combination")
        return hp["lr"]

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as dask_client,
    ):
        config = OptimizationConfig(
            num_trials=8,
            optimizer="tpe",
            searchspace=Searchspace(**SPACE),
            optimization_key="lr",
            es_policy="none",
            name="dask",
        )
        result = lagom(slow, config, cluster=dask_client)
        runs = client(None).search_runs([client(None).get_experiment_by_name("dask").experiment_id])
    assert len(result.table) == 8 and sorted(result.table["number"]) == list(range(8))
    workers = {r.data.tags["workbench.worker"] for r in runs if "workbench.worker" in r.data.tags}
    assert len(workers) == 2
    assert result.study is not None and len(result.study.trials) == 8
    assert set(result.table["state"]) <= {"COMPLETE", "FAIL"}


def test_loco_ablation_of_features_and_layers(project_dir: Path) -> None:
    import keras

    rng = np.random.default_rng(0)
    features = ["ndvi", "b8", "noise"]
    x = rng.random((256, 3)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 1.0).astype("int64")

    def base_model(n_inputs: int) -> keras.Sequential:
        return keras.Sequential(
            [
                keras.Input((n_inputs,)),
                keras.layers.Dense(16, activation="relu", name="hidden"),
                keras.layers.Dense(16, activation="relu", name="hidden_2"),
                keras.layers.Dense(2, activation="softmax", name="out"),
            ]
        )

    def train(hp: dict[str, Any], reporter: Reporter) -> dict[str, float]:
        keras.utils.set_random_seed(0)
        keep = [i for i, f in enumerate(features) if f not in hp["excluded_features"]]
        model = remove_layers(base_model(len(keep)), hp["excluded_layers"])
        model.compile(
            optimizer=keras.optimizers.Adam(0.05),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        for epoch in range(6):
            hist = model.fit(x[:, keep], y, epochs=1, batch_size=64, verbose=0)
            reporter.broadcast(float(hist.history["accuracy"][-1]), epoch)
        return {"accuracy": float(model.evaluate(x[:, keep], y, verbose=0)[1])}

    study = AblationStudy("pixels", 1, label_name="label")
    study.features.include("ndvi", "noise")
    study.model.layers.include("hidden_2")
    config = AblationConfig(study, optimization_key="accuracy", name="loco")
    result = lagom(train, config)
    table = result.table.set_index("component")
    assert list(table.index) == ["(base)", "ndvi", "noise", "hidden_2"]
    assert table.loc["(base)", "drop"] == 0.0
    assert table.loc["ndvi", "drop"] > table.loc["noise", "drop"]
    assert table.loc["ndvi", "drop"] > 0.05
    assert "ablation" in result.plots


def test_malformed_configs() -> None:
    with pytest.raises(ExperimentError, match="optimizer"):
        OptimizationConfig(num_trials=3, optimizer="annealing", searchspace=Searchspace(**SPACE))
    with pytest.raises(ExperimentError, match="num_trials"):
        OptimizationConfig(num_trials=0, optimizer="tpe", searchspace=Searchspace(**SPACE))
    with pytest.raises(ExperimentError, match="direction"):
        OptimizationConfig(num_trials=3, optimizer="tpe", searchspace=Searchspace(**SPACE), direction="up")
    with pytest.raises(ExperimentError, match="es_policy"):
        OptimizationConfig(num_trials=3, optimizer="tpe", searchspace=Searchspace(**SPACE), es_policy="mean")
    with pytest.raises(ExperimentError, match="non-empty Searchspace"):
        OptimizationConfig(num_trials=3, optimizer="tpe", searchspace=Searchspace())
    for spec, message in [
        (("FLOAT", [0, 1]), "type"),
        (("DOUBLE", [1, 0]), "low < high"),
        (("INTEGER", [1.5, 3]), "integers"),
        (("DISCRETE", ["a"]), "numbers"),
        (("DOUBLE", [0, 1], "log"), "low > 0"),
        ("DOUBLE", "expected"),
    ]:
        with pytest.raises(ExperimentError, match=message):
            Searchspace(x=spec)
    with pytest.raises(ExperimentError, match="no feature or layer"):
        AblationConfig(AblationStudy())
    study = AblationStudy()
    study.features.include("a")
    with pytest.raises(ExperimentError, match="twice"):
        study.features.include("a")
    with pytest.raises(ExperimentError, match="ablator"):
        AblationConfig(study, ablator="random")
    config = OptimizationConfig(num_trials=2, optimizer="tpe", searchspace=Searchspace(**SPACE))
    with pytest.raises(ExperimentError, match="callable"):
        lagom("train", config, track=False)
    with pytest.raises(ExperimentError, match="hparams, reporter"):
        lagom(lambda hp: 1.0, config, track=False)
    with pytest.raises(ExperimentError, match="OptimizationConfig"):
        lagom(quadratic, {"num_trials": 2}, track=False)
    with pytest.raises(ExperimentError, match="cluster"):
        lagom(quadratic, config, cluster=3, track=False)
    bad = lagom(lambda hp, r: "great", config, track=False)
    assert (bad.table["state"] == "FAIL").all() and bad.best is None
    with pytest.raises(ExperimentError, match="no completed trial"):
        bad.best_params
    with pytest.raises(ExperimentError, match="number"):
        Reporter().broadcast("high")


def test_grid_search_runs_the_whole_grid_once(project_dir: Path) -> None:
    space = Searchspace(layers=("INTEGER", [2, 3]), cells=("DISCRETE", [100, 200]))
    config = OptimizationConfig(num_trials=10, optimizer="gridsearch", searchspace=space, es_policy="none",
                                name="grid-small")
    result = lagom(lambda hp, r: hp["layers"] * 1000 + hp["cells"], config)
    assert len(result.table) == 4 and (result.table["state"] == "COMPLETE").all()
    assert sorted(result.table["metric"]) == [2100, 2200, 3100, 3200]
    assert result.best_params == {"layers": 3, "cells": 200}
