"""Train and evaluate the sea-ice CNNs on patches; learning-curve and confusion-matrix plots.

:func:`fit` standardises with statistics of the training split only (stored in
the model's ``Normalization`` layer and in the result), trains with optional
augmentation, and evaluates on the validation split with
:mod:`workbench.training.metrics`. :func:`save_model` / :func:`load_model`
write the Keras model plus a JSON side file of its metadata.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from workbench import storage
from workbench.datasets.patches import BINARY_NAMES, PatchSet, to_binary
from workbench.errors import DataError
from workbench.training.metrics import ClassificationReport, classification_report

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

__all__ = [
    "TrainConfig",
    "FitResult",
    "channel_stats",
    "MIN_STD",
    "fit",
    "predict_classes",
    "evaluate",
    "plot_learning_curves",
    "plot_confusion",
    "save_model",
    "load_model",
    "register_model",
    "PUBLISHED_VALIDATION_ACCURACY",
    "pixel_baseline",
]

log = logging.getLogger(__name__)

# Binary (water/ice) validation accuracy published for the ExtremeEarth polar use case.
PUBLISHED_VALIDATION_ACCURACY = {"adhoc": 0.9853, "vgg16": 0.9989}
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes
    ----------
    model
        ``"adhoc"`` or ``"vgg16"``.
    binary
        Water/ice (True) or the five classes (False).
    epochs, batch_size, learning_rate
        Optimisation (Adam).
    augment
        Flips, 90° rotations and speckle-like noise during training.
    width, pools
        VGG-16 width factor and number of kept max-pooling layers.
    batch_norm
        VGG-16 with batch normalisation after each convolution (see
        :func:`workbench.models.seaice.vgg16_modified`).
    dropout
        Dropout rate of the dense layers.
    class_weight
        Weight the loss by inverse class frequency of the training split.
    schedule
        Learning rate over the run: ``"cosine"`` (decays from ``learning_rate`` to 5 % of it
        by the last step, so the last epochs do not jump between minima: on small patch sets the
        validation accuracy of a constant rate swings by 0.1-0.3 from epoch to epoch) or
        ``"constant"``.
    seed
        Seed of the weights, shuffling and augmentation
        (:func:`workbench.training.fit.seed_everything`, before the model is built).
    """

    model: str = "adhoc"
    binary: bool = True
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-3
    augment: bool = True
    width: float = 0.25
    pools: int = 2
    batch_norm: bool = True
    dropout: float = 0.5
    class_weight: bool = True
    schedule: str = "cosine"
    seed: int = 0

    def __post_init__(self) -> None:
        from workbench.models.seaice import MODEL_NAMES

        if self.model not in MODEL_NAMES:
            raise DataError(f"model must be one of {MODEL_NAMES}, got {self.model!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise DataError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.learning_rate > 0:
            raise DataError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.schedule not in SCHEDULES:
            raise DataError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


@dataclass
class FitResult:
    """A trained model and what was measured while training it."""

    model: "keras.Model"
    config: TrainConfig
    class_names: tuple[str, ...]
    bands: tuple[str, ...]
    mean: list[float]
    std: list[float]
    history: dict[str, list[float]]
    validation: ClassificationReport
    seconds: float
    patches_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Flat metrics (for the registry): validation accuracy, median F1, kappa, per-class F1."""
        out = {
            "val_accuracy": self.validation.overall_accuracy,
            "val_median_f1": self.validation.median_f1,
            "val_kappa": self.validation.kappa,
            "train_patches_per_s": self.patches_per_s,
        }
        for name, p, r, f1 in zip(self.class_names, self.validation.precision, self.validation.recall, self.validation.f1):
            for key, v in (("precision", p), ("recall", r), ("f1", f1)):
                if not np.isnan(v):
                    out[f"val_{key}_{name}"] = float(v)
        return out

    def metadata(self) -> dict[str, Any]:
        """JSON-able description: config, classes, bands, standardisation, metrics, history."""
        return {
            "config": asdict(self.config),
            "class_names": list(self.class_names),
            "bands": list(self.bands),
            "standardisation": {"mean": self.mean, "std": self.std, "computed_on": "train split"},
            "metrics": self.metrics(),
            "confusion": self.validation.confusion.tolist(),
            "history": self.history,
            "seconds": self.seconds,
            **self.extra,
        }


#: Floor of the standardisation std per band: within one small scene the incidence angle varies by
#: a fraction of a degree, and dividing by that std would turn it into a code for the position in
#: the scene; the IW swath spans about 30-46 degrees, so 4 degrees is its natural scale.
MIN_STD = {"incidence": 4.0}


def channel_stats(
    x: np.ndarray, *, bands: Sequence[str] = (), min_std: Mapping[str, float] | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of patches ``(n, s, s, c)`` (NaN ignored).

    ``min_std`` (default :data:`MIN_STD`) floors the std of the named ``bands``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4 or x.shape[0] == 0:
        raise DataError(f"patches must be a non-empty (n, size, size, channels) array, got shape {x.shape}")
    mean = np.nanmean(x, axis=(0, 1, 2))
    std = np.nanstd(x, axis=(0, 1, 2))
    std = np.where(std > 1e-6, std, 1.0)
    floors = MIN_STD if min_std is None else min_std
    for i, band in enumerate(bands):
        if band in floors:
            std[i] = max(std[i], floors[band])
    return [float(v) for v in mean], [float(v) for v in std]


def _targets(patches: PatchSet, binary: bool) -> tuple[np.ndarray, tuple[str, ...]]:
    if binary:
        return to_binary(patches.y).astype(np.int32), BINARY_NAMES
    return patches.y.astype(np.int32), patches.class_names


def predict_classes(model: "keras.Model", x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Class index per patch (argmax of the model's output)."""
    probs = model.predict(np.asarray(x, dtype=np.float32), batch_size=batch_size, verbose=0)
    return np.argmax(probs, axis=-1).astype(np.int16)


def evaluate(model: "keras.Model", patches: PatchSet, *, binary: bool, batch_size: int = 256) -> ClassificationReport:
    """Accuracy, per-class precision/recall/F1 and confusion matrix of ``model`` on ``patches``."""
    if len(patches) == 0:
        raise DataError("no patches to evaluate on")
    y, names = _targets(patches, binary)
    pred = predict_classes(model, patches.x, batch_size=batch_size)
    return classification_report(y, pred, n_classes=len(names), class_names=names)


def fit(
    patches: PatchSet,
    config: TrainConfig | None = None,
    *,
    validation_split: str = "val",
    verbose: int = 0,
) -> FitResult:
    """Train a sea-ice CNN on the ``train`` split and evaluate it on ``validation_split``.

    Parameters
    ----------
    patches
        Patches with splits (see :func:`workbench.datasets.patches.assign_splits`).
    config
        Training settings (default :class:`TrainConfig`).
    validation_split
        Split used for the validation metrics (``val`` or ``test``).
    verbose
        Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).

    Returns
    -------
    FitResult

    Raises
    ------
    DataError
        When a split is empty or a class is missing from the training split.
    """
    import keras

    from workbench.models.seaice import SeaIceAugment, build_model
    from workbench.training.fit import seed_everything

    config = config or TrainConfig()
    train = patches.select("train")
    val = patches.select(validation_split)
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"need train and {validation_split} patches; got {len(train)} and {len(val)}")
    y_train, names = _targets(train, config.binary)
    y_val, _ = _targets(val, config.binary)
    present = np.unique(y_train)
    if present.size < 2:
        raise DataError(f"the training split holds only class(es) {[names[i] for i in present]}")
    mean, std = channel_stats(train.x, bands=patches.bands)
    seed_everything(config.seed)
    db_channels = [i for i, b in enumerate(patches.bands) if b.endswith("_db")]
    augment = SeaIceAugment(db_channels=db_channels, seed=config.seed) if config.augment else None
    model = build_model(
        config.model, train.x.shape[1:], len(names), mean=mean, std=std, augment=augment,
        dropout=config.dropout, width=config.width, pools=config.pools, batch_norm=config.batch_norm,
    )
    rate: Any = config.learning_rate
    if config.schedule == "cosine":
        steps = config.epochs * -(-len(train) // config.batch_size)
        rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log.info("training %s on %d patches (%d validation)", model.name, len(train), len(val))
    start = time.perf_counter()
    weights = None
    if config.class_weight:
        counts = np.bincount(y_train, minlength=len(names))
        weights = {int(k): float(len(y_train) / (present.size * c)) for k, c in enumerate(counts) if c > 0}
    hist = model.fit(
        train.x, y_train, validation_data=(val.x, y_val), epochs=config.epochs,
        batch_size=config.batch_size, shuffle=True, verbose=verbose, class_weight=weights,
    )
    seconds = time.perf_counter() - start
    report = evaluate(model, val, binary=config.binary)
    return FitResult(
        model=model, config=config, class_names=tuple(names), bands=patches.bands, mean=mean, std=std,
        history={k: [float(v) for v in vs] for k, vs in hist.history.items()}, validation=report,
        seconds=seconds, patches_per_s=len(train) * config.epochs / seconds,
        extra={"n_train": len(train), "n_val": len(val), "patch_size": patches.size},
    )


def pixel_baseline(
    patches: PatchSet,
    *,
    binary: bool = False,
    validation_split: str = "val",
    max_pixels: int = 200_000,
    seed: int = 0,
) -> ClassificationReport:
    """Per-pixel Gaussian classifier on σ⁰ alone, scored on the pixels of the validation patches.

    The classical per-pixel sea-ice classifier: one Gaussian per class over the dB bands
    whose mean is linear in the incidence angle (the class-dependent incidence slope of Lohse,
    Doulgeris & Dierking 2020), maximum likelihood with equal priors. Every pixel of a patch
    takes the patch's class (patches are at least ``purity`` pure). No spatial context: the
    gap between this and a CNN is what the texture of the scene is worth.

    Parameters
    ----------
    patches
        Patches with splits and bands ``*_db`` (and ``incidence`` if present).
    binary
        Water/ice instead of the five classes.
    validation_split
        Split scored.
    max_pixels
        Pixels drawn (at random) from each split, to bound memory and time.
    seed
        Seed of that draw.

    Returns
    -------
    ClassificationReport
        Pixel-level accuracy, F1, kappa and confusion matrix.
    """
    train, val = patches.select("train"), patches.select(validation_split)
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"need train and {validation_split} patches; got {len(train)} and {len(val)}")
    db = [i for i, b in enumerate(patches.bands) if b.endswith("_db")]
    if not db:
        raise DataError(f"patches have no dB band; bands are {patches.bands}")
    inc = patches.bands.index("incidence") if "incidence" in patches.bands else None
    rng = np.random.default_rng(seed)

    def pixels(part: PatchSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, _ = _targets(part, binary)
        n_pix = part.size * part.size
        flat = part.x.reshape(len(part), n_pix, -1)
        take = rng.choice(len(part) * n_pix, size=min(max_pixels, len(part) * n_pix), replace=False)
        rows = flat.reshape(-1, flat.shape[-1])[take]
        theta = rows[:, inc] if inc is not None else np.zeros(len(rows))
        return rows[:, db].astype(np.float64), theta.astype(np.float64), np.repeat(y, n_pix)[take]

    x, theta, y = pixels(train)
    names = BINARY_NAMES if binary else patches.class_names
    theta0 = float(theta.mean())
    params = []
    for k in range(len(names)):
        sel = y == k
        if sel.sum() < 10:
            params.append(None)
            continue
        t = theta[sel] - theta0
        design = np.column_stack([np.ones(sel.sum()), t]) if t.std() > 1e-3 else np.ones((sel.sum(), 1))
        coef, *_ = np.linalg.lstsq(design, x[sel], rcond=None)
        resid = x[sel] - design @ coef
        cov = np.cov(resid.T).reshape(len(db), len(db)) + 1e-6 * np.eye(len(db))
        params.append((coef, np.linalg.inv(cov), float(np.linalg.slogdet(cov)[1])))
    xv, tv, yv = pixels(val)
    scores = np.full((len(yv), len(names)), -np.inf)
    for k, p in enumerate(params):
        if p is None:
            continue
        coef, icov, logdet = p
        t = tv - theta0
        mean = coef[0] + (t[:, None] * coef[1] if coef.shape[0] > 1 else 0.0)
        d = xv - mean
        scores[:, k] = -0.5 * np.einsum("ij,jk,ik->i", d, icov, d) - 0.5 * logdet
    pred = np.argmax(scores, axis=1)
    return classification_report(yv, pred, n_classes=len(names), class_names=names)


def plot_learning_curves(history: Mapping[str, list[float]], *, title: str = "") -> "Figure":
    """Loss and accuracy per epoch (train and validation).

    A pyplot figure on the current backend (a notebook's inline backend shows it
    at the end of the cell; headless, matplotlib picks Agg by itself).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            if prefix + key in history:
                values = history[prefix + key]
                ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(report: ClassificationReport, *, title: str = "") -> "Figure":
    """Confusion matrix (rows: truth, columns: prediction), counts annotated (a pyplot figure, see above)."""
    import matplotlib.pyplot as plt

    cm = report.confusion
    names = report.class_names or tuple(str(i) for i in range(cm.shape[0]))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 1.0 + 0.8 * len(names)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="black")
    ax.set_title(title or f"OA {report.overall_accuracy:.3f}")
    fig.tight_layout()
    return fig


def save_model(
    result: FitResult, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Save the Keras model (``.keras``) to ``url`` and its metadata to ``<url>.json``, atomically."""
    url = str(url)
    if not url.endswith(".keras"):
        raise DataError(f"model path {url!r} must end with .keras")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model.keras"
        result.model.save(local)
        storage.write_bytes(url, local.read_bytes(), storage_options=storage_options)
    storage.write_bytes(url + ".json", json.dumps(result.metadata(), indent=2).encode(), storage_options=storage_options)
    return url


def load_model(
    url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> tuple["keras.Model", dict[str, Any]]:
    """Load a model saved by :func:`save_model` and its metadata."""
    import keras

    import workbench.models.seaice  # noqa: F401 - registers SeaIceAugment

    url = str(url)
    if not storage.exists(url, storage_options=storage_options):
        raise DataError(f"model {url} does not exist")
    meta: dict[str, Any] = {}
    if storage.exists(url + ".json", storage_options=storage_options):
        meta = json.loads(storage.read_bytes(url + ".json", storage_options=storage_options))
    with storage.local_copy(url, storage_options=storage_options) as local:
        try:
            model = keras.saving.load_model(local)
        except Exception as exc:  # noqa: BLE001 - keras raises many types for a bad file
            raise DataError(f"{url} is not a Keras model: {type(exc).__name__}: {exc}") from exc
    return model, meta


def register_model(
    result: FitResult,
    name: str,
    *,
    training_dataset: Any = None,
    aliases: tuple[str, ...] = (),
    project: Any = None,
) -> Any:
    """Register a trained model with its metrics in the model registry (:mod:`workbench.registry`).

    Parameters
    ----------
    result
        Output of :func:`fit`.
    name
        Registered model name (e.g. ``seaice_adhoc_binary``).
    training_dataset
        The feature-store training dataset it was trained on (provenance).
    aliases
        Aliases to point at the new version (e.g. ``("champion",)``).
    project
        Project directory or Settings (default: the current settings).

    Returns
    -------
    workbench.registry.ModelVersion
    """
    from workbench import registry

    metrics = {k: float(v) for k, v in result.metrics().items() if np.isfinite(v)}
    params = {
        **{k: v for k, v in asdict(result.config).items()},
        "class_names": ",".join(result.class_names),
        "bands": ",".join(result.bands),
        "standardisation_mean": json.dumps(result.mean),
        "standardisation_std": json.dumps(result.std),
        "patch_size": result.extra.get("patch_size"),
    }
    return registry.save_model(
        name, result.model, metrics=metrics, input_example=np.zeros((1, *result.model.input_shape[1:]), np.float32),
        training_dataset=training_dataset, params=params,
        description=f"sea-ice {result.config.model} CNN ({'binary' if result.config.binary else '5 classes'})",
        aliases=aliases, project=project,
    )
