"""Classification metrics on label arrays (pure NumPy, no I/O).

Overall accuracy, per-class precision/recall/F1, median F1 over the classes
present, Cohen's kappa and the confusion matrix, as used by the sea-ice and
crop-type evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from workbench.errors import DataError

__all__ = ["confusion_matrix", "ClassificationReport", "classification_report"]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Confusion matrix ``C[i, j]``: samples of true class ``i`` predicted as ``j``.

    Parameters
    ----------
    y_true, y_pred
        Integer class labels of the same shape, in ``[0, n_classes)``.
    n_classes
        Number of classes (rows/columns of the matrix).

    Raises
    ------
    DataError
        When the shapes differ or a label is outside ``[0, n_classes)``.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise DataError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise DataError(f"{name} holds labels outside [0, {n_classes}): min {arr.min()}, max {arr.max()}")
    flat = y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class ClassificationReport:
    """Accuracy figures derived from one confusion matrix.

    Attributes
    ----------
    confusion
        The confusion matrix (rows: truth, columns: prediction).
    class_names
        Name of each class (index order).
    """

    confusion: np.ndarray
    class_names: tuple[str, ...] = field(default=())

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.confusion.sum())

    @property
    def overall_accuracy(self) -> float:
        """Fraction of samples on the diagonal."""
        return float(np.trace(self.confusion) / self.n) if self.n else float("nan")

    @property
    def support(self) -> np.ndarray:
        """Samples per true class."""
        return self.confusion.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """Per-class precision (NaN where nothing was predicted as the class)."""
        predicted = self.confusion.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(self.confusion) / predicted

    @property
    def recall(self) -> np.ndarray:
        """Per-class recall (NaN for classes absent from the truth)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(self.confusion) / self.support

    @property
    def f1(self) -> np.ndarray:
        """Per-class F1; 0 where a present class was never predicted right, NaN if absent."""
        p = np.nan_to_num(self.precision, nan=0.0)
        r = self.recall
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        return np.where(self.support > 0, f1, np.nan)

    @property
    def median_f1(self) -> float:
        """Median F1 over the classes present in the truth."""
        f1 = self.f1[~np.isnan(self.f1)]
        return float(np.median(f1)) if f1.size else float("nan")

    @property
    def kappa(self) -> float:
        """Cohen's kappa."""
        n = self.n
        if not n:
            return float("nan")
        expected = float((self.confusion.sum(axis=0) * self.confusion.sum(axis=1)).sum()) / (n * n)
        if expected == 1.0:
            return 1.0
        return (self.overall_accuracy - expected) / (1.0 - expected)

    def as_dict(self) -> dict[str, object]:
        """Plain-value summary (for MLflow, JSON and tables)."""
        names = self.class_names or tuple(str(i) for i in range(self.confusion.shape[0]))
        return {
            "overall_accuracy": self.overall_accuracy,
            "median_f1": self.median_f1,
            "kappa": self.kappa,
            "per_class_f1": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, self.f1)},
            "support": {name: int(s) for name, s in zip(names, self.support)},
        }


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int, class_names: Sequence[str] = ()
) -> ClassificationReport:
    """Build a :class:`ClassificationReport` from true and predicted labels."""
    if class_names and len(class_names) != n_classes:
        raise DataError(f"{len(class_names)} class names given for {n_classes} classes")
    return ClassificationReport(
        confusion=confusion_matrix(y_true, y_pred, n_classes=n_classes), class_names=tuple(class_names)
    )
