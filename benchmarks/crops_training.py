"""Benchmark: LSTM training throughput from the feature store's tf.data pipeline vs in-memory tensors.

Builds the crop pixel samples of the embedded sample data (3 tiles), writes
them as a training dataset to the feature store, then trains the same LSTM
(same seed) for a few epochs twice: on ``TrainingDataset.to_tf_dataset``
(streamed block by block from Parquet + Zarr) and on the same split loaded
into memory (``TrainingDataset.arrays``). Prints samples/s of both (the first
epoch, which traces the graph, is not timed) and, last, the ratio (target
≥ 0.9).

Usage: ``python benchmarks/crops_training.py [--small]`` (default: 64² tiles,
a 3 × 200 LSTM; ``--small``: 32² tiles, 2 × 64).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="smaller tiles and model")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    with tempfile.TemporaryDirectory(prefix="wb-bench-crops-") as project:
        os.environ["WORKBENCH_PROJECT_DIR"] = project
        os.chdir(project)
        import dask

        from workbench.datasets.pixels import build_pixel_samples, to_training_dataset
        from workbench.models.crops import build_lstm, fit_percentile_scaling
        from workbench.samples.sentinel2 import CROP_CLASSES, generate_sentinel2_samples, sample_paths
        from workbench.sentinel2 import composite_tiles
        from workbench.training.fit import compile_classifier, seed_everything

        size, layers, units = (32, 2, 64) if args.small else (64, 3, 200)
        t0 = time.perf_counter()
        items = generate_sentinel2_samples("workbench-data", size=size)
        with dask.config.set(scheduler="threads"):
            composites = composite_tiles(items, "workbench-data/composites", agronomic_year=2023, chunk=size)
        samples = build_pixel_samples(composites, sample_paths("workbench-data")["parcels"],
                                      train=list(composites), validation=[], drop_fraction=0.0)
        td = to_training_dataset(samples)
        x, y = td.arrays("train")
        print(f"training dataset v{td.version}: {len(y)} samples of shape {x.shape[1:]} "
              f"(prepared in {time.perf_counter() - t0:.1f} s); LSTM {layers} x {units}, batch {args.batch_size}")
        scaling = fit_percentile_scaling(x)

        def throughput(data: object, labels: object = None) -> float:
            seed_everything(0)
            model = compile_classifier(build_lstm(x.shape[1], x.shape[2], len(CROP_CLASSES), n_layers=layers,
                                                  units=units, scaling=scaling))
            kwargs = {} if labels is None else {"y": labels, "batch_size": args.batch_size, "shuffle": True}
            model.fit(data, epochs=1, verbose=0, **kwargs)  # traces the graph
            start = time.perf_counter()
            model.fit(data, epochs=args.epochs, verbose=0, **kwargs)
            return len(y) * args.epochs / (time.perf_counter() - start)

        memory = throughput(x, y)
        streamed = throughput(td.to_tf_dataset("train", batch_size=args.batch_size, shuffle=True, seed=0))
        print(f"in-memory tensors: {memory:8.0f} samples/s")
        print(f"tf.data from the training dataset: {streamed:8.0f} samples/s")
        print(f"lstm_tfdata_vs_in_memory_throughput: {streamed / memory:.2f}x")


if __name__ == "__main__":
    main()
