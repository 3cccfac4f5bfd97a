"""Weighted two-phase training of Keras classifiers, and evaluation.

Phase 1 trains with class weights from inverse class frequencies, so that
rare classes are not ignored; phase 2 continues from the phase-1 weights (and
optimiser state) with the unweighted loss, recovering the accuracy of the
frequent classes. RMSprop with learning rate 1e-3 and a weight-decay
parameter, as in the food-security paper; usable for any classifier taking
``(x, y)`` arrays or a ``tf.data.Dataset`` (crop series, sea-ice patches).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from workbench._args import checked_keywords
from workbench.errors import DataError
from workbench.training.metrics import ClassificationReport, classification_report

__all__ = ["seed_everything", "class_weights", "TrainingResult", "compile_classifier", "two_phase_fit", "predict_labels", "evaluate"]

log = logging.getLogger(__name__)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy, TensorFlow and Keras from one ``seed``.

    Call it before any layer is built: initial weights come from the generators in force at build time,
    so the same seed then gives the same weights in any process.

    Parameters
    ----------
    seed
        A non-negative integer.
    deterministic
        Also turn on TensorFlow's op determinism (``tf.config.experimental.enable_op_determinism``), so
        that training replays bit for bit on the same machine (slower on GPUs; some ops then raise).
    """
    import random

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    import keras

    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    keras.utils.set_random_seed(int(seed))  # Python, NumPy and the backend (TensorFlow) generators
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def class_weights(y: np.ndarray, n_classes: int, *, max_weight: float | None = 50.0) -> dict[int, float]:
    """Inverse-frequency class weights ``n / (k · n_c)`` for the ``k`` classes present in ``y``.

    Classes absent from ``y`` get weight 1; weights are capped at ``max_weight``.
    """
    y = np.asarray(y).ravel()
    if y.size == 0:
        raise DataError("cannot compute class weights of an empty label array")
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"labels must be in [0, {n_classes}), got min {y.min()} and max {y.max()}")
    counts = np.bincount(y.astype(np.int64), minlength=n_classes)
    present = counts > 0
    k = int(present.sum())
    weights = np.ones(n_classes, dtype=np.float64)
    weights[present] = y.size / (k * counts[present])
    if max_weight is not None:
        weights = np.minimum(weights, max_weight)
    return {i: float(w) for i, w in enumerate(weights)}


@dataclass
class TrainingResult:
    """Outcome of :func:`two_phase_fit`.

    Attributes
    ----------
    model
        The trained model (phase-2 weights).
    history
        Per-epoch metrics, phase 1 then phase 2 (``phase`` key tells which).
    class_weight
        The phase-1 class weights.
    seconds
        Wall time of the training.
    samples_per_second
        Training throughput over both phases.
    """

    model: Any
    history: list[dict[str, float]] = field(default_factory=list)
    class_weight: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    samples_per_second: float = 0.0


def compile_classifier(model: Any, *, learning_rate: float = 1e-3, weight_decay: float | None = None) -> Any:
    """Compile with RMSprop (``learning_rate``, ``weight_decay``) and sparse categorical cross-entropy."""
    import keras

    if learning_rate <= 0:
        raise DataError(f"learning_rate must be > 0, got {learning_rate}")
    if weight_decay is not None and weight_decay < 0:
        raise DataError(f"weight_decay must be >= 0, got {weight_decay}")
    optimizer = keras.optimizers.RMSprop(learning_rate=learning_rate, weight_decay=weight_decay or None)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _n_samples(x: Any) -> int | None:
    return int(len(x)) if hasattr(x, "__len__") and not hasattr(x, "element_spec") else None


def _labels_of(data: Any, y: np.ndarray | None) -> np.ndarray:
    if y is not None:
        return np.asarray(y)
    if hasattr(data, "element_spec"):  # a tf.data.Dataset of (x, y) batches
        return np.concatenate([np.asarray(b[1]).ravel() for b in data.as_numpy_iterator()])
    raise DataError("labels y are required when x is an array")


def _check_finite(x: Any, what: str) -> None:
    """Refuse NaN/inf inputs: a model's arg-max on NaN is class 0, which would pass for a prediction."""
    arrays = x.values() if isinstance(x, dict) else [x]
    for array in arrays:
        values = np.asarray(array)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise DataError(f"{what} holds {bad} NaN/inf value(s); fill or drop them before training or evaluating")


@checked_keywords
def two_phase_fit(
    model: Any,
    x: Any,
    y: np.ndarray | None = None,
    *,
    n_classes: int,
    validation_data: tuple[np.ndarray, np.ndarray] | Any | None = None,
    weighted_epochs: int = 10,
    unweighted_epochs: int = 10,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float | None = None,
    class_weight: dict[int, float] | None = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
    seed: int | None = 0,
) -> TrainingResult:
    """Train ``model`` with class-weighted loss, then continue unweighted.

    Parameters
    ----------
    model
        An uncompiled (or compiled: it is recompiled) Keras classifier with a
        softmax output of ``n_classes``.
    x, y
        Training inputs and integer labels, or a ``tf.data.Dataset`` of
        ``(x, y)`` batches as ``x`` (then ``y`` is None).
    n_classes
        Number of classes.
    validation_data
        ``(x_val, y_val)`` or a dataset, evaluated after every epoch.
    weighted_epochs, unweighted_epochs
        Epochs of phase 1 (class-weighted) and phase 2 (unweighted); either may be 0.
    batch_size
        Batch size for array inputs.
    learning_rate, weight_decay
        RMSprop settings.
    class_weight
        Phase-1 weights; default :func:`class_weights` of the training labels.
    callbacks
        Keras callbacks for both phases.
    verbose
        Keras verbosity.
    seed
        Seed of Keras' random generators for shuffling and dropout (``None``: leave them alone). The
        initial weights come from the seed in force when the model was *built*: call
        :func:`seed_everything` before building (as :func:`workbench.models.crops.train_crop_models`
        does) for a run that replays exactly.

    Returns
    -------
    TrainingResult
    """
    if weighted_epochs < 0 or unweighted_epochs < 0 or weighted_epochs + unweighted_epochs == 0:
        raise DataError(
            f"epochs must be >= 0 and not both 0, got weighted={weighted_epochs}, unweighted={unweighted_epochs}"
        )
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    is_dataset = hasattr(x, "element_spec")
    if not is_dataset:
        x = np.asarray(x)
        if y is None or len(x) != len(y):
            raise DataError(f"x has {len(x)} samples but y has {None if y is None else len(y)} labels")
        if len(x) == 0:
            raise DataError("the training set is empty")
    outputs = int(model.output_shape[-1]) if getattr(model, "output_shape", None) else None
    if outputs is not None and outputs != n_classes:
        raise DataError(f"n_classes is {n_classes} but the model has {outputs} outputs; build it for {n_classes} "
                        f"classes or pass n_classes={outputs}")
    if not is_dataset:
        _check_finite(x, "x")
    if seed is not None:
        seed_everything(seed)  # shuffling and dropout; seed before building for the same weights
    labels = _labels_of(x, y)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"labels must be in 0..{n_classes - 1}; got {int(labels.min())}..{int(labels.max())}")
    weights = class_weight if class_weight is not None else class_weights(labels, n_classes)
    compile_classifier(model, learning_rate=learning_rate, weight_decay=weight_decay)
    fit_kwargs: dict[str, Any] = {"validation_data": validation_data, "callbacks": list(callbacks), "verbose": verbose}
    if not is_dataset:
        fit_kwargs.update(y=y, batch_size=batch_size, shuffle=True)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for phase, epochs, cw in ((1, weighted_epochs, weights), (2, unweighted_epochs, None)):
        if not epochs:
            continue
        done = len(history)
        h = model.fit(x, initial_epoch=done, epochs=done + epochs, class_weight=cw, **fit_kwargs)
        for i in range(len(h.history.get("loss", []))):  # fewer than `epochs` when a callback stopped early
            history.append({"phase": float(phase), **{k: float(v[i]) for k, v in h.history.items()}})
        log.info("phase %d (%s): %d epochs, last %s", phase, "weighted" if cw else "unweighted", epochs, history[-1])
    seconds = time.perf_counter() - start
    n = labels.size * len(history)
    return TrainingResult(
        model=model, history=history, class_weight=weights, seconds=seconds,
        samples_per_second=n / seconds if seconds > 0 else 0.0,
    )


def predict_labels(model: Any, x: Any, *, batch_size: int = 1024) -> np.ndarray:
    """Arg-max class of each sample."""
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(probs).argmax(axis=-1).astype(np.int32)


@checked_keywords
def evaluate(
    model: Any, x: Any, y: np.ndarray, *, n_classes: int, class_names: Sequence[str] = (), batch_size: int = 1024
) -> ClassificationReport:
    """OA, per-class/median F1, kappa and confusion matrix of ``model`` on ``(x, y)``."""
    y = np.asarray(y)
    if _n_samples(x) is not None and _n_samples(x) != len(y):
        raise DataError(f"x has {_n_samples(x)} samples but y has {len(y)} labels")
    if not hasattr(x, "element_spec"):
        _check_finite(x, "x")
    return classification_report(y, predict_labels(model, x, batch_size=batch_size),
                                 n_classes=n_classes, class_names=class_names)
