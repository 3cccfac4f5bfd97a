"""Fixtures of the serving tests: a project with tiny registered models, keys, servings, and a live server."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PATCH = (32, 32, 3)
CROP = (12, 4)


@dataclass
class ServingProject:
    """What :func:`build_project` made."""

    path: Path
    keys: dict[str, str] = field(default_factory=dict)
    patches: np.ndarray | None = None
    series: np.ndarray | None = None


def _patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal((-15.0, -25.0, 35.0), 4.0, size=(n, *PATCH)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > -15.0).astype("int64")
    return x, y


def build_project(path: Path) -> ServingProject:
    """Register the models (two sea-ice CNN versions, a StarRNN, a guarded classifier), projects, keys, servings."""
    from tests.servers import serving_layers
    from workbench import registry
    from workbench.models import crops, seaice
    from workbench.serving import hopsworks
    from workbench.serving.auth import AuthStore, default_auth_url
    from workbench.serving.batching import BatchingOptions

    path.mkdir(parents=True, exist_ok=True)
    x, y = _patches(96, 0)
    for version, seed in ((1, 1), (2, 2)):
        import keras

        keras.utils.set_random_seed(seed)
        model = seaice.build_model("adhoc", PATCH, 2, mean=[-15.0, -25.0, 35.0], std=[4.0, 4.0, 4.0])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        hist = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        registry.save_model(
            "seaice_adhoc_binary", model, metrics={"overall_accuracy": float(hist.history["accuracy"][-1])},
            input_example=x[:1], params={"class_names": "water,ice"},
            aliases=["champion"] if version == 1 else [], project=path,
        )
    series = np.random.default_rng(3).uniform(0, 3000, size=(64, *CROP)).astype("float32")
    star = crops.build_model("starrnn", CROP[0], CROP[1], 3, n_layers=1, units=8, dropout=0.0,
                             scaling=crops.fit_percentile_scaling(series))
    star.compile("adam", "sparse_categorical_crossentropy")
    star.fit(series, np.arange(64) % 3, epochs=1, verbose=0)
    registry.save_model("crop_starrnn", star, metrics={"overall_accuracy": 0.4}, input_example=series[:2],
                        params={"class_names": "maize,wheat,grass"}, project=path)
    guarded = serving_layers.build()
    registry.save_model("guarded", guarded, input_example=np.zeros((1, 4), "float32"), project=path)

    auth = AuthStore(default_auth_url(path))
    keys = {"alice": auth.create_project("polar", owner="alice"), "carol": auth.create_project("food", owner="carol")}
    auth.add_member("polar", "bob", role="data_scientist")
    keys["bob"] = auth.create_key("polar", "bob", scopes=["serving:infer"])
    auth.close()

    def create(name: str, model: str, version: Any, project: str = "polar", **kw: Any) -> None:
        hopsworks.create_or_update(name, model, model_version=version, project=project, status="running",
                                   project_dir=path, **kw)

    create("seaice", "seaice_adhoc_binary", "champion",
           batching=BatchingOptions(max_batch_size=32, batch_timeout_ms=5.0, max_queue=512))
    create("seaice_nobatch", "seaice_adhoc_binary", 1, batching=BatchingOptions(enabled=False, max_queue=512))
    create("seaice_det", "seaice_adhoc_binary", 1,
           batching=BatchingOptions(max_batch_size=16, batch_timeout_ms=5.0, pad_to_max_batch=True))
    create("seaice_det_nobatch", "seaice_adhoc_binary", 1,
           batching=BatchingOptions(enabled=False, max_batch_size=16, pad_to_max_batch=True))
    create("seaice_roll", "seaice_adhoc_binary", 1)
    create("crops", "crop_starrnn", None, project="food")
    create("guarded", "guarded", 1, imports=["tests.servers.serving_layers"])
    hopsworks.create_or_update("parked", "seaice_adhoc_binary", model_version=1, project="polar",
                               status="stopped", project_dir=path)
    return ServingProject(path=path, keys=keys, patches=_patches(64, 9)[0], series=series)


def server_env() -> dict[str, str]:
    """Environment of a server subprocess: the repository on the path (the tests' custom layer)."""
    return {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "TF_CPP_MIN_LOG_LEVEL": "3"}
