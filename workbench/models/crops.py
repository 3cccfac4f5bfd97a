"""Keras models for crop-type classification of per-pixel time series ``(months, bands)``.

* :func:`build_lstm` — multi-layer LSTM (the paper's model: 2–4 layers of
  100–300 cells);
* :func:`build_tempcnn` — TempCNN as published by Pelletier et al. (2019):
  three 1-D convolutions of 64 filters, kernel 5, same padding, he-normal
  initialisation, L2 1e-6, batch normalisation, ReLU and dropout 0.5, no
  pooling; flatten; dense 256 with BN/ReLU/dropout; softmax;
* :func:`build_starrnn` — stacked STAR cells (Turkoglu et al. 2021),
  :class:`StarCell`.

Every model starts with a per-band scaling layer holding the 2nd/98th
percentile min–max scaling fitted on the training split
(:func:`fit_percentile_scaling`), so a saved model takes raw reflectances.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

from workbench._args import checked_keywords  # noqa: E402
from workbench._quiet import quiet_tensorflow  # noqa: E402
from workbench.errors import DataError  # noqa: E402

quiet_tensorflow()

if TYPE_CHECKING:
    import pandas as pd

    from workbench.training.metrics import ClassificationReport

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_NAMES",
    "PAPER_RESULTS",
    "StarCell",
    "fit_percentile_scaling",
    "build_lstm",
    "build_tempcnn",
    "build_starrnn",
    "build_model",
    "CROP_DEFAULTS",
    "CropRun",
    "train_crop_models",
    "comparison_table",
    "save_model_file",
    "register_crop_models",
    "grid_search_lstm",
]

MODEL_NAMES = ("lstm", "tempcnn", "starrnn")

#: Published figures on the validation tile (overall accuracy %, median F1 %).
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "lstm": {"overall_accuracy": 85.39, "median_f1": 84.08},
    "tempcnn": {"overall_accuracy": 81.71, "median_f1": 78.33},
    "starrnn": {"overall_accuracy": 81.17, "median_f1": 83.73},
}


def fit_percentile_scaling(x: np.ndarray, *, low: float = 2.0, high: float = 98.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-band ``low``/``high`` percentiles of training samples ``(n, steps, bands)``.

    Returns ``(lo, hi)`` of shape ``(bands,)``; ``(x - lo) / (hi - lo)`` maps
    the bulk of each band to 0..1.
    """
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[0] == 0:
        raise DataError(f"training samples must be a non-empty (n, steps, bands) array, got shape {x.shape}")
    if not 0 <= low < high <= 100:
        raise DataError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    flat = x.reshape(-1, x.shape[-1])
    lo = np.nanpercentile(flat, low, axis=0)
    hi = np.nanpercentile(flat, high, axis=0)
    hi = np.where(hi - lo > 1e-6, hi, lo + 1e-6)
    return lo.astype(np.float32), hi.astype(np.float32)


def _inputs(n_steps: int, n_bands: int, scaling: tuple[np.ndarray, np.ndarray] | None) -> tuple[Any, Any]:
    for name, value in (("n_steps", n_steps), ("n_bands", n_bands)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    inp = keras.Input(shape=(int(n_steps), int(n_bands)), name="series")
    x = inp
    if scaling is not None:
        lo, hi = (np.asarray(a, dtype=np.float32).ravel() for a in scaling)
        if lo.shape != (n_bands,) or hi.shape != (n_bands,):
            raise DataError(f"scaling must hold {n_bands} low and high values, got {lo.shape} and {hi.shape}")
        x = layers.Normalization(axis=-1, mean=lo, variance=(hi - lo) ** 2, name="percentile_scaling")(x)
    return inp, x


def _check_classes(n_classes: int) -> None:
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise DataError(f"n_classes must be an integer >= 2, got {n_classes!r}")


def build_lstm(
    n_steps: int,
    n_bands: int,
    n_classes: int,
    *,
    n_layers: int = 3,
    units: int = 200,
    dropout: float = 0.2,
    scaling: tuple[np.ndarray, np.ndarray] | None = None,
    name: str = "lstm",
) -> keras.Model:
    """Multi-layer LSTM classifier: ``n_layers`` LSTMs of ``units`` cells, last state → softmax."""
    _check_classes(n_classes)
    if n_layers < 1 or units < 1:
        raise DataError(f"n_layers and units must be >= 1, got {n_layers} and {units}")
    if not 0 <= dropout < 1:
        raise DataError(f"dropout must be in [0, 1), got {dropout}")
    inp, x = _inputs(n_steps, n_bands, scaling)
    for i in range(n_layers):
        x = layers.LSTM(units, return_sequences=i < n_layers - 1, name=f"lstm_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    out = layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name=name)


def build_tempcnn(
    n_steps: int,
    n_bands: int,
    n_classes: int,
    *,
    filters: int = 64,
    kernel_size: int = 5,
    dense_units: int = 256,
    dropout: float = 0.5,
    l2: float = 1e-6,
    scaling: tuple[np.ndarray, np.ndarray] | None = None,
    name: str = "tempcnn",
) -> keras.Model:
    """TempCNN (Pelletier et al. 2019) with the published hyper-parameters as defaults."""
    _check_classes(n_classes)
    inp, x = _inputs(n_steps, n_bands, scaling)
    reg = keras.regularizers.L2(l2)
    for i in range(3):
        x = layers.Conv1D(filters, kernel_size, padding="same", kernel_initializer="he_normal",
                          kernel_regularizer=reg, name=f"conv_{i}")(x)
        x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.Activation("relu", name=f"relu_{i}")(x)
        x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, kernel_initializer="he_normal", kernel_regularizer=reg, name="dense")(x)
    x = layers.BatchNormalization(name="bn_dense")(x)
    x = layers.Activation("relu", name="relu_dense")(x)
    x = layers.Dropout(dropout, name="dropout_dense")(x)
    out = layers.Dense(n_classes, activation="softmax", kernel_initializer="he_normal",
                       kernel_regularizer=reg, name="classes")(x)
    return keras.Model(inp, out, name=name)


@keras.saving.register_keras_serializable(package="workbench")
class StarCell(layers.Layer):
    """The STAR recurrent cell (Turkoglu et al. 2021), usable in ``keras.layers.RNN``.

    ``z = tanh(W_z x + b_z)``, ``k = σ(W_x x + W_h h + b_k)``,
    ``h' = tanh((1 − k) ⊙ h + k ⊙ z)``.

    Parameters
    ----------
    units
        Size of the hidden state.
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if units < 1:
            raise DataError(f"units must be >= 1, got {units}")
        self.units = int(units)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape: Any) -> None:
        dim = int(input_shape[-1])
        self.w_z = self.add_weight(shape=(dim, self.units), initializer="glorot_uniform", name="w_z")
        self.b_z = self.add_weight(shape=(self.units,), initializer="zeros", name="b_z")
        self.w_x = self.add_weight(shape=(dim, self.units), initializer="glorot_uniform", name="w_x")
        self.w_h = self.add_weight(shape=(self.units, self.units), initializer="orthogonal", name="w_h")
        # k is the share of the state that is replaced at each step; a negative gate bias (k ≈ σ(-1) ≈ 0.27 at
        # the start) keeps most of the state, as the reference implementation does, so that long series
        # (149 dates) are not forgotten step by step
        self.b_k = self.add_weight(shape=(self.units,), initializer=keras.initializers.Constant(-1.0), name="b_k")
        super().build(input_shape)

    def call(self, inputs: Any, states: Any, training: bool | None = None) -> tuple[Any, list[Any]]:
        h = states[0] if isinstance(states, (list, tuple)) else states
        z = ops.tanh(ops.matmul(inputs, self.w_z) + self.b_z)
        k = ops.sigmoid(ops.matmul(inputs, self.w_x) + ops.matmul(h, self.w_h) + self.b_k)
        new_h = ops.tanh((1.0 - k) * h + k * z)
        return new_h, [new_h]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


def build_starrnn(
    n_steps: int,
    n_bands: int,
    n_classes: int,
    *,
    n_layers: int = 3,
    units: int = 128,
    dropout: float = 0.2,
    scaling: tuple[np.ndarray, np.ndarray] | None = None,
    name: str = "starrnn",
) -> keras.Model:
    """Stacked StarRNN classifier: ``n_layers`` RNNs of :class:`StarCell`, last state → softmax."""
    _check_classes(n_classes)
    if n_layers < 1:
        raise DataError(f"n_layers must be >= 1, got {n_layers}")
    if not 0 <= dropout < 1:
        raise DataError(f"dropout must be in [0, 1), got {dropout}")
    inp, x = _inputs(n_steps, n_bands, scaling)
    for i in range(n_layers):
        x = layers.RNN(StarCell(units), return_sequences=i < n_layers - 1, name=f"star_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    out = layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name=name)


def build_model(name: str, n_steps: int, n_bands: int, n_classes: int, **kwargs: Any) -> keras.Model:
    """Build one of :data:`MODEL_NAMES` (``lstm``, ``tempcnn``, ``starrnn``) with its keyword arguments."""
    builders = {"lstm": build_lstm, "tempcnn": build_tempcnn, "starrnn": build_starrnn}
    if name not in builders:
        raise DataError(f"unknown crop model {name!r}; expected one of {MODEL_NAMES}")
    return builders[name](n_steps, n_bands, n_classes, **kwargs)


#: Small defaults for the demo (2 CPU cores); the paper's sizes are parameters.
CROP_DEFAULTS: dict[str, dict[str, Any]] = {
    "lstm": {"n_layers": 2, "units": 64},
    "tempcnn": {},
    "starrnn": {"n_layers": 2, "units": 64},
}


@dataclass
class CropRun:
    """One trained crop model and its evaluation.

    Attributes
    ----------
    name
        Model kind (``lstm``, ``tempcnn``, ``starrnn``).
    model
        The trained Keras model.
    params
        Builder keyword arguments (layers, units ...).
    reports
        Split name → :class:`~workbench.training.metrics.ClassificationReport`.
    history
        Per-epoch training metrics (both phases).
    seconds
        Training wall time.
    samples_per_second
        Training throughput.
    """

    name: str
    model: Any
    params: dict[str, Any]
    reports: dict[str, "ClassificationReport"] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0


@checked_keywords
def train_crop_models(
    samples: Any,
    *,
    n_classes: int,
    class_names: Sequence[str] = (),
    models: Sequence[str] = MODEL_NAMES,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    weighted_epochs: int = 5,
    unweighted_epochs: int = 5,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float | None = None,
    seed: int = 0,
) -> dict[str, CropRun]:
    """Train and evaluate crop models on a split sample table (weighted two-phase training).

    Parameters
    ----------
    samples
        Table of :func:`workbench.datasets.pixels.build_pixel_samples`
        (features ``<band>_m<month>``, ``label``, ``split``), or the training
        dataset of :func:`workbench.datasets.pixels.to_training_dataset`.
    n_classes, class_names
        Classes of the labels.
    models
        Model kinds to train.
    params
        Model kind → builder arguments (default :data:`CROP_DEFAULTS`).
    weighted_epochs, unweighted_epochs, batch_size, learning_rate, weight_decay, seed
        Training settings (:func:`workbench.training.fit.two_phase_fit`).

    Returns
    -------
    dict
        Model kind → :class:`CropRun` with reports for every split present
        besides ``train``.
    """
    from workbench.datasets.pixels import split_arrays
    from workbench.training.fit import evaluate, two_phase_fit

    arrays = split_arrays(samples)
    if "train" not in arrays or len(arrays["train"][1]) == 0:
        raise DataError("the samples have no train rows")
    x_train, y_train = arrays["train"]
    scaling = fit_percentile_scaling(x_train)
    chosen = {**CROP_DEFAULTS, **{k: dict(v) for k, v in (params or {}).items()}}
    evals = {s: arrays[s] for s in ("validation", "test") if s in arrays}
    runs: dict[str, CropRun] = {}
    for name in models:
        if name not in MODEL_NAMES:
            raise DataError(f"unknown crop model {name!r}; expected one of {MODEL_NAMES}")
        kwargs = dict(chosen.get(name, {}))
        keras.utils.set_random_seed(seed)  # before building: the same seed gives the same initial weights
        model = build_model(name, x_train.shape[1], x_train.shape[2], n_classes, scaling=scaling, **kwargs)
        result = two_phase_fit(
            model, x_train, y_train, n_classes=n_classes,
            validation_data=evals.get("validation"),
            weighted_epochs=weighted_epochs, unweighted_epochs=unweighted_epochs, batch_size=batch_size,
            learning_rate=learning_rate, weight_decay=weight_decay, seed=seed,
        )
        run = CropRun(name=name, model=model, params=kwargs, history=result.history,
                      seconds=result.seconds, samples_per_second=result.samples_per_second)
        for split, (x, y) in evals.items():
            run.reports[split] = evaluate(model, x, y, n_classes=n_classes, class_names=class_names)
        log.info("%s: %s", name, {s: round(r.overall_accuracy, 4) for s, r in run.reports.items()})
        runs[name] = run
    return runs


def comparison_table(runs: Mapping[str, CropRun], *, split: str = "validation") -> "pd.DataFrame":
    """The paper's comparison table: OA and median F1 (%) per model, next to the published figures."""
    import pandas as pd

    rows = []
    for name, run in runs.items():
        if split not in run.reports:
            raise DataError(f"model {name!r} has no {split!r} report; it has {sorted(run.reports)}")
        report = run.reports[split]
        paper = PAPER_RESULTS.get(name, {})
        rows.append({
            "model": name,
            "OA %": round(100 * report.overall_accuracy, 2),
            "median F1 %": round(100 * report.median_f1, 2),
            "kappa": round(report.kappa, 4),
            "paper OA %": paper.get("overall_accuracy"),
            "paper median F1 %": paper.get("median_f1"),
            "train s": round(run.seconds, 1),
        })
    return pd.DataFrame(rows).set_index("model")


def save_model_file(model: Any, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> str:
    """Save a Keras model as one ``.keras`` file atomically (local path or ``s3://``); returns ``url``."""
    import tempfile
    from pathlib import Path

    from workbench import storage

    if not str(url).endswith(".keras"):
        raise DataError(f"model file {str(url)!r} must end with .keras")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model.keras"
        model.save(local)
        storage.write_bytes(url, local.read_bytes(), storage_options=storage_options)
    return str(url)


def register_crop_models(
    runs: Mapping[str, CropRun],
    *,
    training_dataset: Any = None,
    prefix: str = "crop_",
    split: str = "validation",
    project: Any = None,
) -> dict[str, Any]:
    """Register every trained model in the model registry as ``<prefix><kind>``.

    Metrics are the ``split`` report's OA, median F1 and kappa; the training
    dataset (when given) is recorded as provenance. Returns kind →
    :class:`workbench.registry.ModelVersion`.
    """
    from workbench import registry

    out = {}
    for name, run in runs.items():
        report = run.reports.get(split)
        metrics = {} if report is None else {
            "overall_accuracy": report.overall_accuracy, "median_f1": report.median_f1, "kappa": report.kappa}
        shape = tuple(run.model.input_shape[1:])
        out[name] = registry.save_model(
            f"{prefix}{name}", run.model, metrics=metrics, training_dataset=training_dataset,
            params={"kind": name, **run.params}, input_example=np.zeros((2, *shape), np.float32),
            description=f"crop-type {name} (weighted two-phase training)", project=project,
        )
    return out


@checked_keywords
def grid_search_lstm(
    samples: Any,
    *,
    n_classes: int,
    layers: Sequence[int] = (2, 3),
    cells: Sequence[int] = (100, 200),
    weighted_epochs: int = 3,
    unweighted_epochs: int = 3,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float | None = None,
    cluster: Any = None,
    project: Any = None,
    name: str = "crop-lstm-grid",
    seed: int = 0,
) -> Any:
    """Grid search over LSTM layers × cells with the experiments layer (``lagom``, tracked in MLflow).

    Every trial trains a weighted two-phase LSTM on the train split and
    reports the validation accuracy after each epoch; the result's
    ``best_params`` hold the best ``n_layers`` and ``units``.

    Parameters
    ----------
    samples
        Sample table or training dataset with ``train`` and ``validation`` splits.
    n_classes
        Number of classes.
    layers, cells
        Grid values.
    weighted_epochs, unweighted_epochs, batch_size, learning_rate, weight_decay
        Training settings of every trial.
    cluster
        None (trials one after another here), ``"local"``, a scheduler address or a client.
    project
        Project directory or Settings (MLflow store).
    name
        Experiment name.
    seed
        Seed of the initial weights and of the shuffling of every trial.

    Returns
    -------
    workbench.experiments.ExperimentResult
    """
    from workbench.datasets.pixels import split_arrays
    from workbench.experiments import OptimizationConfig, Searchspace, lagom
    from workbench.training.fit import evaluate, two_phase_fit

    if not layers or not cells:
        raise DataError("layers and cells must each hold at least one value")
    arrays = split_arrays(samples)
    for split in ("train", "validation"):
        if split not in arrays:
            raise DataError(f"the grid search needs a {split!r} split; the samples have {sorted(arrays)}")
    x_train, y_train = arrays["train"]
    x_val, y_val = arrays["validation"]
    scaling = fit_percentile_scaling(x_train)

    def train_fn(hparams: dict[str, Any], reporter: Any) -> dict[str, float]:
        class _Report(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                reporter.broadcast(float((logs or {}).get("val_accuracy", 0.0)), epoch)

        keras.utils.set_random_seed(seed)  # every trial starts from the weights its seed gives
        model = build_lstm(x_train.shape[1], x_train.shape[2], n_classes, n_layers=int(hparams["n_layers"]),
                           units=int(hparams["units"]), scaling=scaling)
        two_phase_fit(model, x_train, y_train, n_classes=n_classes, validation_data=(x_val, y_val),
                      weighted_epochs=weighted_epochs, unweighted_epochs=unweighted_epochs,
                      batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
                      callbacks=[_Report()], seed=seed)
        report = evaluate(model, x_val, y_val, n_classes=n_classes)
        return {"overall_accuracy": report.overall_accuracy, "median_f1": report.median_f1, "kappa": report.kappa}

    config = OptimizationConfig(
        num_trials=len(layers) * len(cells), optimizer="gridsearch",
        searchspace=Searchspace(n_layers=("DISCRETE", [int(v) for v in layers]),
                                units=("DISCRETE", [int(v) for v in cells])),
        optimization_key="overall_accuracy", direction="max", es_policy="none", name=name,
        description="weighted two-phase LSTM: layers x cells",
    )
    return lagom(train_fn, config, cluster=cluster, project=project)
