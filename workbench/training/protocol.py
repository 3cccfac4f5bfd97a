"""An evaluation protocol for pixel-series classifiers: grouped hold-out, several seeds, mean ± std.

Rows of a pixel-series data set are not independent: pixels of one parcel
(polygon) or of one neighbourhood look alike, so a row-level split leaks
(in the Formosat-2 sample up to 12 rows come from one polygon). The protocol
therefore splits by **group** (polygon id, or a spatial block from
:func:`spatial_blocks`), stratified by class
(``sklearn.model_selection.StratifiedGroupKFold``), once per seed:

1. test groups are held out (``test_size``);
2. validation groups are carved from the training groups (``validation_size``)
   for early stopping — the test split is never looked at while training;
3. every deep model (:data:`workbench.models.crops.MODEL_NAMES`) is seeded
   (:func:`workbench.training.fit.seed_everything`) *before* it is built, gets
   the input scaling fitted on the training rows, and trains with
   :func:`workbench.training.fit.two_phase_fit` and early stopping on the
   validation loss (best weights restored); the classical baselines
   (:mod:`workbench.training.baselines`: random forest, k-NN) are fitted on the
   same training rows (training + validation groups: they need no early stopping);
4. every model is scored on the test groups: OA, kappa, median F1, per-class F1.

:class:`ProtocolResult` gives the per-run table, the mean ± std summary and
the per-class F1 table, with the published figures
(:data:`workbench.models.crops.PAPER_RESULTS`, BreizhCrops) beside them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from workbench._args import checked_keywords
from workbench.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_FIT",
    "spatial_blocks",
    "grouped_split",
    "ProtocolResult",
    "evaluate_protocol",
]

log = logging.getLogger(__name__)

#: Training settings of the deep models (any key may be overridden per model through ``fit``).
DEFAULT_FIT: dict[str, Any] = {
    "weighted_epochs": 0,
    "unweighted_epochs": 60,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "weight_decay": None,
    "patience": 12,
}


def spatial_blocks(shape: tuple[int, int], *, block: int) -> np.ndarray:
    """Group id of every pixel of a ``(rows, cols)`` grid: square blocks of ``block`` pixels, row-major."""
    if len(shape) != 2 or min(shape) < 1:
        raise DataError(f"shape must be (rows, cols) of positive sizes, got {shape!r}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise DataError(f"block must be a positive integer, got {block!r}")
    rows, cols = np.indices(shape)
    per_row = -(-shape[1] // block)
    return (rows // block) * per_row + cols // block


def _stratified_group_holdout(y: np.ndarray, groups: np.ndarray, *, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    folds = int(round(1.0 / size))
    if n_groups < max(folds, 2):
        raise DataError(f"{n_groups} group(s) cannot be split into a {size:.0%} hold-out; give more groups")
    splitter = StratifiedGroupKFold(n_splits=max(folds, 2), shuffle=True, random_state=int(seed))
    keep, held = next(iter(splitter.split(np.zeros(len(y)), y, groups)))
    return keep, held


def grouped_split(
    y: np.ndarray, groups: np.ndarray, *, test_size: float = 0.3, validation_size: float = 0.2, seed: int = 0
) -> dict[str, np.ndarray]:
    """Row indices of ``train``, ``validation`` and ``test``: whole groups, stratified by class.

    ``test_size`` of the groups are held out for the test; ``validation_size`` of
    the remaining groups for early stopping (0: no validation split). No group
    is in two splits.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    if y.shape != groups.shape or y.ndim != 1:
        raise DataError(f"y and groups must be 1-D of the same length, got {y.shape} and {groups.shape}")
    if not 0 < test_size < 1:
        raise DataError(f"test_size must be in (0, 1), got {test_size!r}")
    if not 0 <= validation_size < 1:
        raise DataError(f"validation_size must be in [0, 1), got {validation_size!r}")
    rest, test = _stratified_group_holdout(y, groups, size=test_size, seed=seed)
    out = {"test": np.sort(test)}
    if validation_size:
        keep, val = _stratified_group_holdout(y[rest], groups[rest], size=validation_size, seed=seed + 7919)
        out["train"], out["validation"] = np.sort(rest[keep]), np.sort(rest[val])
    else:
        out["train"] = np.sort(rest)
    return out


@dataclass
class ProtocolResult:
    """Scores of every model on every seed's test groups.

    Attributes
    ----------
    name
        Data-set name (used in the tables).
    runs
        One dict per (model, seed): ``model``, ``kind`` (``deep`` or
        ``classical``), ``seed``, ``overall_accuracy``, ``kappa``,
        ``median_f1``, ``per_class_f1`` (array), ``epochs``, ``seconds``.
    class_names
        Class names (per-class table columns).
    splits
        Seed → number of rows in train / validation / test.
    """

    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    class_names: tuple[str, ...] = ()
    splits: dict[int, dict[str, int]] = field(default_factory=dict)

    def table(self) -> "pd.DataFrame":
        """Per-run table (one row per model and seed)."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in r.items() if k != "per_class_f1"} for r in self.runs])

    def summary(self, *, paper: bool = True) -> "pd.DataFrame":
        """Mean ± std over the seeds of OA, kappa and median F1 (%), with the published figures beside them."""
        import pandas as pd

        from workbench.models.crops import BREIZHCROPS_RESULTS, PAPER_RESULTS

        frame = self.table()
        if frame.empty:
            raise DataError("the protocol has no runs to summarise")
        rows = []
        for model, part in frame.groupby("model", sort=False):
            row: dict[str, Any] = {"model": model, "kind": part["kind"].iloc[0], "seeds": len(part)}
            for key, label in (("overall_accuracy", "OA %"), ("kappa", "kappa %"), ("median_f1", "median F1 %")):
                values = 100 * part[key].to_numpy(dtype=float)
                row[f"{label} mean"] = round(float(values.mean()), 2)
                row[f"{label} std"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 2)
            row["train s"] = round(float(part["seconds"].mean()), 1)
            if paper:
                row["paper OA %"] = PAPER_RESULTS.get(model, {}).get("overall_accuracy")
                row["BreizhCrops OA %"] = BREIZHCROPS_RESULTS.get(model)
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")

    def per_class_f1(self) -> "pd.DataFrame":
        """Mean per-class F1 (%) over the seeds, one row per model (NaN: class absent from every test split)."""
        import pandas as pd

        names = self.class_names or tuple(str(i) for i in range(len(self.runs[0]["per_class_f1"])))
        by_model: dict[str, list[np.ndarray]] = {}
        for r in self.runs:
            by_model.setdefault(r["model"], []).append(np.asarray(r["per_class_f1"], dtype=float))
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                data = {m: np.round(100 * np.nanmean(np.stack(v), axis=0), 1) for m, v in by_model.items()}
        return pd.DataFrame.from_dict(data, orient="index", columns=list(names))

    def mean_oa(self) -> dict[str, float]:
        """Model → mean OA (fraction) over the seeds."""
        frame = self.table()
        return {str(k): float(v) for k, v in frame.groupby("model", sort=False)["overall_accuracy"].mean().items()}


def _check_inputs(x: Any, y: Any, groups: Any, n_classes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[0] == 0:
        raise DataError(f"x must be a non-empty (n, steps, bands) array, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise DataError(f"x must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"x holds {int((~np.isfinite(x)).sum())} NaN/inf value(s); fill or drop those rows first")
    y = np.asarray(y)
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise DataError(f"y must be {len(x)} integer labels, got shape {y.shape} and dtype {y.dtype}")
    groups = np.asarray(groups)
    if groups.shape != (len(x),):
        raise DataError(f"groups must hold one group id per row ({len(x)}), got shape {groups.shape}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise DataError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"labels must be in 0..{n_classes - 1} (n_classes={n_classes}); got {y.min()}..{y.max()}")
    return x, y.astype(np.int32), groups


@checked_keywords
def evaluate_protocol(
    x: np.ndarray,
    y: np.ndarray,
    *,
    groups: np.ndarray,
    n_classes: int,
    class_names: Sequence[str] = (),
    name: str = "data",
    models: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    fit: Mapping[str, Mapping[str, Any]] | None = None,
    baselines: Sequence[str] = ("random_forest", "knn"),
    baseline_params: Mapping[str, Mapping[str, Any]] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    test_size: float = 0.3,
    validation_size: float = 0.2,
    scaling: str = "percentile",
    max_train: int | None = None,
) -> ProtocolResult:
    """Run the grouped hold-out protocol for deep models and classical baselines over several seeds.

    Parameters
    ----------
    x, y
        Series ``(n, steps, bands)`` (finite) and integer labels ``0 .. n_classes − 1``.
    groups
        Group id of every row (polygon id, or :func:`spatial_blocks`); no group is split.
    n_classes, class_names
        The classes.
    name
        Data-set name.
    models
        Deep model kinds (default all of :data:`workbench.models.crops.MODEL_NAMES`).
    params
        Model kind → builder arguments (layers, units …).
    fit
        Model kind → training settings over :data:`DEFAULT_FIT` (``weighted_epochs``,
        ``unweighted_epochs``, ``batch_size``, ``learning_rate``, ``weight_decay``,
        ``patience`` of the early stopping; the key ``"*"`` applies to every model).
    baselines, baseline_params
        Classical baselines (:data:`workbench.training.baselines.BASELINE_NAMES`) and their options.
    seeds
        One grouped split and one initialisation per seed.
    test_size, validation_size
        Shares of the groups held out for the test, and of the remaining groups for early stopping.
    scaling
        Input scaling fitted on the training rows: ``"percentile"`` or ``"standard"``.
    max_train
        Cap on the training rows per seed (a seeded random subset; None: all).

    Returns
    -------
    ProtocolResult
    """
    import keras

    from workbench.models.crops import MODEL_NAMES, build_model, fit_scaling
    from workbench.training.baselines import BASELINE_NAMES, fit_baseline, predict_baseline
    from workbench.training.fit import evaluate, seed_everything, two_phase_fit
    from workbench.training.metrics import classification_report

    x, y, groups = _check_inputs(x, y, groups, n_classes)
    models = tuple(MODEL_NAMES if models is None else models)
    for kind in models:
        if kind not in MODEL_NAMES:
            raise DataError(f"unknown crop model {kind!r} in models; expected some of {MODEL_NAMES}")
    for kind in baselines:
        if kind not in BASELINE_NAMES:
            raise DataError(f"unknown baseline {kind!r} in baselines; expected some of {BASELINE_NAMES}")
    for label, mapping, allowed in (("params", params, models), ("fit", fit, (*models, "*")),
                                    ("baseline_params", baseline_params, baselines)):
        extra = sorted(set(mapping or {}) - set(allowed))
        if extra:
            raise DataError(f"{label} names {extra}, which are not among {sorted(allowed)}")
    for kind, settings in (fit or {}).items():
        unknown = sorted(set(settings) - set(DEFAULT_FIT))
        if unknown:
            raise DataError(f"fit[{kind!r}] has unknown setting(s) {unknown}; expected some of {sorted(DEFAULT_FIT)}")
    if class_names and len(class_names) != n_classes:
        raise DataError(f"class_names has {len(class_names)} names for n_classes={n_classes}")
    if not seeds:
        raise DataError("seeds must hold at least one seed")
    if max_train is not None and (isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < n_classes):
        raise DataError(f"max_train must be None or an integer >= n_classes, got {max_train!r}")

    result = ProtocolResult(name=name, class_names=tuple(class_names))
    for seed in seeds:
        split = grouped_split(y, groups, test_size=test_size, validation_size=validation_size, seed=int(seed))
        train = split["train"]
        if max_train is not None and len(train) > max_train:
            train = np.sort(np.random.default_rng(int(seed)).choice(train, max_train, replace=False))
        val = split.get("validation", np.array([], dtype=int))
        test = split["test"]
        result.splits[int(seed)] = {"train": len(train), "validation": len(val), "test": len(test)}
        scale = fit_scaling(x[train], method=scaling)

        for kind in models:
            settings = {**DEFAULT_FIT, **dict((fit or {}).get("*", {})), **dict((fit or {}).get(kind, {}))}
            patience = settings.pop("patience")
            seed_everything(int(seed))  # before building: initial weights, shuffling and dropout from the seed
            model = build_model(kind, x.shape[1], x.shape[2], n_classes, scaling=scale, **dict((params or {}).get(kind, {})))
            callbacks = []
            validation = None
            if len(val):
                validation = (x[val], y[val])
                callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(patience),
                                                               restore_best_weights=True))
            start = time.perf_counter()
            trained = two_phase_fit(model, x[train], y[train], n_classes=n_classes, validation_data=validation,
                                    callbacks=callbacks, seed=int(seed), **settings)
            seconds = time.perf_counter() - start
            report = evaluate(model, x[test], y[test], n_classes=n_classes, class_names=class_names)
            result.runs.append(_row(kind, "deep", int(seed), report, len(trained.history), seconds))
            log.info("%s %s seed %d: OA %.3f", name, kind, seed, report.overall_accuracy)
            keras.backend.clear_session()

        fit_rows = np.sort(np.concatenate([train, val]))
        for kind in baselines:
            start = time.perf_counter()
            baseline = fit_baseline(kind, x[fit_rows], y[fit_rows], n_classes=n_classes, seed=int(seed),
                                    **dict((baseline_params or {}).get(kind, {})))
            predicted = predict_baseline(baseline, x[test])
            seconds = time.perf_counter() - start
            report = classification_report(y[test], predicted, n_classes=n_classes, class_names=class_names)
            result.runs.append(_row(kind, "classical", int(seed), report, 0, seconds))
            log.info("%s %s seed %d: OA %.3f", name, kind, seed, report.overall_accuracy)
    return result


def _row(model: str, kind: str, seed: int, report: Any, epochs: int, seconds: float) -> dict[str, Any]:
    return {"model": model, "kind": kind, "seed": seed, "overall_accuracy": report.overall_accuracy,
            "kappa": report.kappa, "median_f1": report.median_f1, "per_class_f1": report.f1,
            "epochs": epochs, "seconds": round(seconds, 2)}
