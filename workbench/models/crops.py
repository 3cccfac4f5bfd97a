"""Keras models for crop-type classification of per-pixel time series ``(months, bands)``.

* :func:`build_lstm` — multi-layer LSTM (the paper's model: 2–4 layers of
  100–300 cells, dropout, trained with RMSprop at lr 1e-3);
* :func:`build_tempcnn` — TempCNN as published by Pelletier et al. (2019):
  three 1-D convolutions of 64 filters, kernel 5, same padding, he-normal
  initialisation, L2 1e-6, batch normalisation, ReLU and dropout 0.5, no
  pooling; flatten; dense 256 with BN/ReLU/dropout; softmax;
* :func:`build_starrnn` — stacked STAR cells (Turkoglu et al. 2021),
  :class:`StarCell`, batch normalisation over the outputs of every layer and
  layer normalisation of the last state, as in the reference implementation;
* :func:`build_transformer` — the Transformer encoder of BreizhCrops
  (Rußwurm et al. 2020): dense embedding + ReLU, post-norm encoder blocks
  (:class:`TransformerBlock`), final layer norm, max-pooling over time, ReLU,
  softmax; sizes scaled down for CPUs.

Every model starts with a per-band scaling layer fitted on the training split
(:func:`fit_percentile_scaling`: 2nd/98th percentile min–max, or
:func:`fit_standard_scaling`: mean/std), so a saved model takes raw
reflectances. The custom layers are registered Keras serializables (package
``workbench``): importing this module is enough to load a saved model.
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
    "BREIZHCROPS_RESULTS",
    "StarCell",
    "PositionalEncoding",
    "TransformerBlock",
    "fit_percentile_scaling",
    "fit_standard_scaling",
    "fit_scaling",
    "build_lstm",
    "build_tempcnn",
    "build_starrnn",
    "build_transformer",
    "build_model",
    "CROP_DEFAULTS",
    "CropRun",
    "train_crop_models",
    "comparison_table",
    "save_model_file",
    "register_crop_models",
    "grid_search_lstm",
]

MODEL_NAMES = ("lstm", "tempcnn", "starrnn", "transformer")

#: Published figures on the validation tile (overall accuracy %, median F1 %).
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "lstm": {"overall_accuracy": 85.39, "median_f1": 84.08},
    "tempcnn": {"overall_accuracy": 81.71, "median_f1": 78.33},
    "starrnn": {"overall_accuracy": 81.17, "median_f1": 83.73},
}

#: BreizhCrops (Rußwurm et al. 2020), Table 4 (FRH04 test region): overall accuracy %.
BREIZHCROPS_RESULTS: dict[str, float] = {"transformer": 80.0, "lstm": 79.0, "starrnn": 79.0, "tempcnn": 78.0}


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


def fit_standard_scaling(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band ``mean − std`` and ``mean + std`` of training samples ``(n, steps, bands)``.

    The same ``(lo, hi)`` form as :func:`fit_percentile_scaling`: the model's
    first layer maps ``lo .. hi`` onto ``0 .. 1``, i.e. a standardisation up to
    an affine shift.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] == 0:
        raise DataError(f"training samples must be a non-empty (n, steps, bands) array, got shape {x.shape}")
    flat = x.reshape(-1, x.shape[-1])
    mean = np.nanmean(flat, axis=0)
    std = np.nanstd(flat, axis=0)
    std = np.where(std > 1e-6, std, 1e-6)
    return (mean - std).astype(np.float32), (mean + std).astype(np.float32)


def fit_scaling(x: np.ndarray, *, method: str = "percentile") -> tuple[np.ndarray, np.ndarray]:
    """Input scaling fitted on the training split: ``"percentile"`` (2nd/98th) or ``"standard"`` (mean ± std)."""
    if method == "percentile":
        return fit_percentile_scaling(x)
    if method == "standard":
        return fit_standard_scaling(x)
    raise DataError(f"scaling method must be 'percentile' or 'standard', got {method!r}")


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


@checked_keywords
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
    _check_layers(n_layers, units, dropout)
    inp, x = _inputs(n_steps, n_bands, scaling)
    for i in range(n_layers):
        x = layers.LSTM(units, return_sequences=i < n_layers - 1, name=f"lstm_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    out = layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name=name)


@checked_keywords
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
    ``h' = tanh(h + k ⊙ (z − h))`` — the same as ``tanh((1 − k) ⊙ h + k ⊙ z)``
    written as the paper's single-gate update: one gate, no recurrent path into
    the candidate ``z``, so the Jacobian ``∂h'/∂h`` stays close to ``1 − k`` and
    gradients survive many stacked layers and long series. Weights start
    orthogonal and the gate bias at −1 (``k ≈ 0.27``: most of the state is
    kept at each step), as the reference implementation's ``+1`` on its
    keep-gate ``1 − k``.

    Parameters
    ----------
    units
        Size of the hidden state.
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise DataError(f"units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape: Any) -> None:
        dim = int(input_shape[-1])
        self.w_z = self.add_weight(shape=(dim, self.units), initializer="orthogonal", name="w_z")
        self.b_z = self.add_weight(shape=(self.units,), initializer="zeros", name="b_z")
        self.w_x = self.add_weight(shape=(dim, self.units), initializer="orthogonal", name="w_x")
        self.w_h = self.add_weight(shape=(self.units, self.units), initializer="orthogonal", name="w_h")
        # k is the share of the state replaced at each step; σ(-1) ≈ 0.27 keeps most of it, so that long
        # series (149 dates) are not forgotten step by step
        self.b_k = self.add_weight(shape=(self.units,), initializer=keras.initializers.Constant(-1.0), name="b_k")
        super().build(input_shape)

    def call(self, inputs: Any, states: Any, training: bool | None = None) -> tuple[Any, list[Any]]:
        h = states[0] if isinstance(states, (list, tuple)) else states
        z = ops.tanh(ops.matmul(inputs, self.w_z) + self.b_z)
        k = ops.sigmoid(ops.matmul(inputs, self.w_x) + ops.matmul(h, self.w_h) + self.b_k)
        new_h = ops.tanh(h + k * (z - h))
        return new_h, [new_h]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


def _check_layers(n_layers: int, units: int, dropout: float) -> None:
    for name, value in (("n_layers", n_layers), ("units", units)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise DataError(f"dropout must be in [0, 1), got {dropout!r}")


@checked_keywords
def build_starrnn(
    n_steps: int,
    n_bands: int,
    n_classes: int,
    *,
    n_layers: int = 3,
    units: int = 128,
    dropout: float = 0.2,
    batch_norm: bool = True,
    layer_norm: bool = True,
    scaling: tuple[np.ndarray, np.ndarray] | None = None,
    name: str = "starrnn",
) -> keras.Model:
    """Stacked StarRNN classifier (the reference implementation's layout).

    ``n_layers`` RNNs of :class:`StarCell` (``units`` each), every layer's
    output sequence followed by dropout and (``batch_norm``) batch
    normalisation; the last state is layer-normalised (``layer_norm``) and fed
    to a softmax. The defaults are BreizhCrops' (3 × 128, dropout 0.2).
    """
    _check_classes(n_classes)
    _check_layers(n_layers, units, dropout)
    inp, x = _inputs(n_steps, n_bands, scaling)
    for i in range(n_layers):
        last = i == n_layers - 1
        x = layers.RNN(StarCell(units), return_sequences=not last, name=f"star_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
        if batch_norm and not last:
            x = layers.BatchNormalization(name=f"bn_{i}")(x)
    if layer_norm:
        x = layers.LayerNormalization(name="state_norm")(x)
    out = layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name=name)


@keras.saving.register_keras_serializable(package="workbench")
class PositionalEncoding(layers.Layer):
    """Adds the sinusoidal position code of Vaswani et al. (2017) to a ``(batch, steps, d)`` sequence.

    BreizhCrops' encoder has none (its inputs carry the day of year); here
    the series are regular, so the position is the date. No weights.
    """

    def call(self, inputs: Any) -> Any:
        steps = ops.shape(inputs)[1]
        dim = int(inputs.shape[-1])
        pos = ops.cast(ops.arange(steps)[:, None], "float32")
        i = ops.cast(ops.arange(dim)[None, :], "float32")
        angle = pos / ops.power(10000.0, (2.0 * ops.floor(i / 2.0)) / float(dim))
        even = ops.cast(ops.equal(ops.mod(ops.arange(dim), 2), 0), "float32")[None, :]
        code = even * ops.sin(angle) + (1.0 - even) * ops.cos(angle)
        return inputs + ops.cast(code[None], inputs.dtype)


@keras.saving.register_keras_serializable(package="workbench")
class TransformerBlock(layers.Layer):
    """One post-norm Transformer encoder layer (PyTorch's ``TransformerEncoderLayer`` layout).

    ``x = LN(x + Dropout(MHA(x, x)))``, ``x = LN(x + Dropout(W₂ Dropout(ReLU(W₁ x))))``.

    Parameters
    ----------
    d_model, n_heads, d_inner, dropout
        Model width, attention heads, feed-forward width, dropout rate.
    """

    def __init__(self, d_model: int, n_heads: int, d_inner: int, dropout: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for label, value in (("d_model", d_model), ("n_heads", n_heads), ("d_inner", d_inner)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise DataError(f"{label} must be a positive integer, got {value!r}")
        if d_model % n_heads:
            raise DataError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        if not 0 <= dropout < 1:
            raise DataError(f"dropout must be in [0, 1), got {dropout!r}")
        self.d_model, self.n_heads, self.d_inner, self.dropout = int(d_model), int(n_heads), int(d_inner), float(dropout)
        self.attention = layers.MultiHeadAttention(self.n_heads, self.d_model // self.n_heads, dropout=self.dropout,
                                                   name="attention")
        self.norm_1 = layers.LayerNormalization(epsilon=1e-5, name="norm_1")
        self.norm_2 = layers.LayerNormalization(epsilon=1e-5, name="norm_2")
        self.inner = layers.Dense(self.d_inner, activation="relu", name="inner")
        self.outer = layers.Dense(self.d_model, name="outer")
        self.drop_1 = layers.Dropout(self.dropout)
        self.drop_2 = layers.Dropout(self.dropout)
        self.drop_3 = layers.Dropout(self.dropout)

    def build(self, input_shape: Any) -> None:
        self.attention.build(input_shape, input_shape)
        self.norm_1.build(input_shape)
        self.inner.build(input_shape)
        self.outer.build((*input_shape[:-1], self.d_inner))
        self.norm_2.build(input_shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        attended = self.attention(inputs, inputs, training=training)
        x = self.norm_1(inputs + self.drop_1(attended, training=training))
        inner = self.drop_2(self.inner(x), training=training)
        return self.norm_2(x + self.drop_3(self.outer(inner), training=training))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "d_model": self.d_model, "n_heads": self.n_heads,
                "d_inner": self.d_inner, "dropout": self.dropout}


@checked_keywords
def build_transformer(
    n_steps: int,
    n_bands: int,
    n_classes: int,
    *,
    d_model: int = 32,
    n_heads: int = 2,
    n_layers: int = 2,
    d_inner: int = 64,
    dropout: float = 0.2,
    positional: bool = True,
    scaling: tuple[np.ndarray, np.ndarray] | None = None,
    name: str = "transformer",
) -> keras.Model:
    """BreizhCrops' Transformer encoder classifier.

    Dense ``d_model`` embedding + ReLU, (``positional``) a sinusoidal position
    code, ``n_layers`` :class:`TransformerBlock`, final layer norm, max over
    time, ReLU, softmax. BreizhCrops' defaults are ``d_model=64, n_heads=1,
    n_layers=3, d_inner=256, dropout≈0.4``; the defaults here are half that
    width and depth so that CPUs train it in seconds.
    """
    _check_classes(n_classes)
    _check_layers(n_layers, d_model, dropout)
    inp, x = _inputs(n_steps, n_bands, scaling)
    x = layers.Dense(d_model, activation="relu", name="embedding")(x)
    if positional:
        x = PositionalEncoding(name="positions")(x)
    for i in range(n_layers):
        x = TransformerBlock(d_model, n_heads, d_inner, dropout, name=f"encoder_{i}")(x)
    x = layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")(x)
    x = layers.GlobalMaxPooling1D(name="max_over_time")(x)
    x = layers.Activation("relu", name="relu_out")(x)
    out = layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name=name)


def build_model(name: str, n_steps: int, n_bands: int, n_classes: int, **kwargs: Any) -> keras.Model:
    """Build one of :data:`MODEL_NAMES` (``lstm``, ``tempcnn``, ``starrnn``, ``transformer``).

    Keyword arguments go to the builder; one it does not take raises
    :class:`~workbench.errors.ArgumentError` (a ``DataError`` and ``TypeError``) naming it.
    """
    builders = {"lstm": build_lstm, "tempcnn": build_tempcnn, "starrnn": build_starrnn,
                "transformer": build_transformer}
    if name not in builders:
        raise DataError(f"unknown crop model {name!r}; expected one of {MODEL_NAMES}")
    return builders[name](n_steps, n_bands, n_classes, **kwargs)


#: Small defaults for the demo (2 CPU cores); the paper's sizes are parameters.
CROP_DEFAULTS: dict[str, dict[str, Any]] = {
    "lstm": {"n_layers": 2, "units": 64},
    "tempcnn": {},
    "starrnn": {"n_layers": 2, "units": 64},
    "transformer": {},
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
    from workbench.training.fit import evaluate, seed_everything, two_phase_fit

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
        seed_everything(seed)  # before building: the same seed gives the same initial weights
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
    from workbench.training.fit import evaluate, seed_everything, two_phase_fit

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

        seed_everything(seed)  # every trial starts from the weights its seed gives
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
