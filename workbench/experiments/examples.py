"""A ready-made ``train_fn``: a small Keras classifier of pixel time series from a feature-store training dataset.

Used by ``notebooks/04_experiments.ipynb``; a template for your own. It is a
picklable callable (it holds paths and names, not live objects) so that Dask
workers can run it: each trial opens the training dataset itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.experiments.searchspace import ExperimentError
from workbench.experiments.trial import Reporter

if TYPE_CHECKING:
    import keras

__all__ = ["PixelClassifierTrainer"]

TENSOR = "series"


@dataclass
class PixelClassifierTrainer:
    """Train a pixel classifier on a training dataset of a feature view.

    The model has a branch for the ``series`` tensor feature (flatten + dense
    ``series_dense``), a branch for the tabular features (``tabular_dense``),
    ``hparams["layers"]`` hidden layers ``hidden_1``... of ``hparams["units"]``
    units, and a softmax output. Hyper-parameters: ``lr``, ``units``,
    ``layers``, ``dropout`` (defaults apply to missing ones). An ablation's
    ``excluded_features`` (``"series"`` or tabular names) and
    ``excluded_layers`` (``hidden_<i>``, ``series_dense``...) are honoured.
    """

    feature_store_root: str
    view: str
    view_version: int
    td_version: int
    epochs: int = 3
    batch_size: int = 64
    seed: int = 0
    storage_options: dict[str, Any] | None = None
    defaults: dict[str, Any] = field(
        default_factory=lambda: {"lr": 3e-3, "units": 32, "layers": 2, "dropout": 0.0}
    )

    def _dataset(self) -> Any:
        from workbench.featurestore import FeatureStore

        fs = FeatureStore(root=self.feature_store_root, storage_options=self.storage_options)
        return fs.get_feature_view(self.view, self.view_version).get_training_dataset_metadata(
            self.td_version
        )

    def load(
        self, excluded_features: list[str] | tuple[str, ...] = ()
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray, int]:
        """``(x_train, y_train, x_test, y_test, n_classes)`` with the excluded features left out."""
        td = self._dataset()
        names = list(td.metadata["x_features"])
        keep = [i for i, n in enumerate(names) if n not in set(excluded_features)]
        splits = []
        for split in ("train", "test"):
            x, y = td.arrays(split, as_dict=True)
            out: dict[str, np.ndarray] = {}
            if TENSOR in x and TENSOR not in excluded_features:
                out[TENSOR] = x[TENSOR]
            if "features" in x and keep:
                out["features"] = x["features"][:, keep]
            splits.append((out, y))
        if not splits[0][0]:
            raise ExperimentError("every input feature is excluded")
        n_classes = int(max(splits[0][1].max(), splits[1][1].max())) + 1
        return splits[0][0], splits[0][1], splits[1][0], splits[1][1], n_classes

    def build(
        self,
        hparams: dict[str, Any],
        x: dict[str, np.ndarray],
        n_classes: int,
        excluded_layers: list[str] | tuple[str, ...] = (),
    ) -> "keras.Model":
        """The Keras model for ``hparams`` (layers named in ``excluded_layers`` are left out)."""
        import keras

        hp = {**self.defaults, **hparams}
        skip = set(excluded_layers)
        inputs, branches = {}, []
        if TENSOR in x:
            inputs[TENSOR] = keras.Input(x[TENSOR].shape[1:], name=TENSOR)
            h = keras.layers.Flatten(name="series_flatten")(inputs[TENSOR])
            if "series_dense" not in skip:
                h = keras.layers.Dense(int(hp["units"]), activation="relu", name="series_dense")(h)
            branches.append(h)
        if "features" in x:
            inputs["features"] = keras.Input(x["features"].shape[1:], name="features")
            h = keras.layers.Normalization(name="tabular_norm")
            h.adapt(x["features"])
            h = h(inputs["features"])
            if "tabular_dense" not in skip:
                h = keras.layers.Dense(
                    max(4, int(hp["units"]) // 2), activation="relu", name="tabular_dense"
                )(h)
            branches.append(h)
        h = branches[0] if len(branches) == 1 else keras.layers.Concatenate(name="concat")(branches)
        for i in range(1, int(hp["layers"]) + 1):
            if f"hidden_{i}" in skip:
                continue
            h = keras.layers.Dense(int(hp["units"]), activation="relu", name=f"hidden_{i}")(h)
            if float(hp["dropout"]) > 0:
                h = keras.layers.Dropout(float(hp["dropout"]), name=f"dropout_{i}")(h)
        out = keras.layers.Dense(n_classes, activation="softmax", name="out")(h)
        model = keras.Model(inputs, out, name="pixel_classifier")
        model.compile(
            optimizer=keras.optimizers.Adam(float(hp["lr"])),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def fit(
        self, hparams: dict[str, Any], reporter: Reporter | None = None
    ) -> tuple["keras.Model", dict[str, float]]:
        """Train with ``hparams``; broadcast the test accuracy after each epoch; return the model and metrics."""
        import keras

        keras.utils.set_random_seed(self.seed)
        excluded_features = list(hparams.get("excluded_features", []))
        x_train, y_train, x_test, y_test, n_classes = self.load(excluded_features)
        model = self.build(hparams, x_train, n_classes, list(hparams.get("excluded_layers", [])))
        loss = accuracy = float("nan")
        for epoch in range(self.epochs):
            model.fit(x_train, y_train, epochs=1, batch_size=self.batch_size, verbose=0, shuffle=True)
            loss, accuracy = (float(v) for v in model.evaluate(x_test, y_test, verbose=0))
            if reporter is not None:
                reporter.broadcast(accuracy, epoch)
        return model, {"accuracy": accuracy, "loss": loss}

    def __call__(self, hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
        """``train_fn`` for :func:`workbench.experiments.lagom`."""
        return self.fit(hparams, reporter)[1]
