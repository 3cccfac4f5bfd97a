"""Training-data streaming: samples/s of Keras ``fit`` fed by ``get_training_dataset`` vs in-memory arrays.

Both runs train the same small CNN on 32x32x3 sea-ice-like patches with the
same batch size, shuffling each epoch; the baseline holds the arrays in memory
(``tf.data.Dataset.from_tensor_slices``), the feature store streams Parquet
row groups and Zarr chunks from disk.

The two are measured alternately, best of several runs each (the machine is
shared, so a single run is noisy).

Usage: python benchmarks/featurestore_streaming.py [--small]
Last line: ``streaming_vs_in_memory_fit_speed: <ratio>x`` (target >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _model():  # noqa: ANN202 - keras imported lazily
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _rate(dataset, n: int, epochs: int) -> float:  # noqa: ANN001 - a tf.data.Dataset
    model = _model()
    model.fit(dataset, epochs=1, verbose=0)  # warm-up: tracing, caches
    t0 = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0)
    return n * epochs / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="8k patches, 2 epochs")
    args = parser.parse_args()
    import tensorflow as tf

    from workbench.featurestore import FeatureStore

    n, epochs, batch, repeats = (8_000, 2, 64, 3) if args.small else (20_000, 3, 64, 3)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        fs = FeatureStore(tmp)
        fg = fs.create_feature_group(
            "patches", 1, primary_key=["patch_id"], tensor_features={"patch": (32, 32, 3)}
        )
        labels = rng.integers(0, 2, n)
        patches = (rng.random((n, 32, 32, 3)) + labels[:, None, None, None] * 0.1).astype("float32")
        for lo in range(0, n, 5_000):
            hi = min(n, lo + 5_000)
            fg.insert(
                pd.DataFrame({"patch_id": np.arange(lo, hi), "label": labels[lo:hi]}),
                tensors={"patch": patches[lo:hi]},
            )
        fv = fs.create_feature_view("patches_view", 1, query=fg.select(["patch", "label"]), labels=["label"])
        td = fv.create_training_dataset(split={"train": 1.0}, seed=0)
        x, y = td.arrays("train")
        in_memory = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(y), seed=0)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        # alternate the two, best of `repeats` each: the machine is shared, so single runs are noisy
        rate_mem = rate_stream = 0.0
        for _ in range(repeats):
            rate_mem = max(rate_mem, _rate(in_memory, n, epochs))
            streamed = fv.get_training_dataset(td.version, "train", batch_size=batch, seed=0)
            rate_stream = max(rate_stream, _rate(streamed, n, epochs))
    print(f"patches: {n} x 32x32x3 float32, batch {batch}, {epochs} epochs, best of {repeats}")
    print(f"in-memory arrays: {rate_mem:,.0f} samples/s")
    print(f"get_training_dataset (Parquet + Zarr from disk): {rate_stream:,.0f} samples/s")
    print(f"streaming_vs_in_memory_fit_speed: {rate_stream / rate_mem:.2f}x")


if __name__ == "__main__":
    main()
