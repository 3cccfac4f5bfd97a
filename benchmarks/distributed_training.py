"""Benchmark: data-parallel training on 2 Dask worker processes against the same training on 1.

For the crop LSTM (the demo's 2 layers × 64 cells on 12 months × 10 bands) and the ad-hoc sea-ice CNN
(32×32×3 patches, with augmentation), synthetic learnable samples go through the feature store into a
training dataset, and :func:`workbench.training.distributed.fit_distributed` trains the model on a
LocalCluster of 2 worker processes (1 thread each; every worker's TensorFlow limited to 1 intra-op and
1 inter-op thread, so that two workers use the two cores one each) with 1 rank (the baseline) and
with 2 ranks. The per-rank batch is the same in both runs (weak scaling, as data-parallel training is
used: the global batch grows with the workers), the schedule is one class-weighted and three unweighted
epochs (RMSprop), and the throughput is that of the fastest epoch after the first (no graph tracing;
the least disturbed by other load on a shared machine; the mean of those epochs is printed beside it).

Prints per model the samples/s of each run, the speed-up, the scaling efficiency (speed-up / workers;
target ≥ 0.8 on CPU), the time of one synchronous step and of one all-reduce of the gradients alone,
and the validation accuracy of both runs; the machine's load average is printed first, as timings on a
shared machine are noisy. The last line is the worse of the two efficiencies.

Usage: ``python benchmarks/distributed_training.py [--small] [--repeat N]``
(full: 16384 crop series and 4096 patches in the training split; ``--small``: 4096 and 1024).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# before any worker starts: the workers (and the TensorFlow process each one starts) inherit these
for _key, _value in {
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}.items():
    os.environ[_key] = _value

import numpy as np
import pandas as pd

#: Per-rank batches: the demo's (crop training 128, sea-ice 32), and a larger one that amortises the all-reduce.
LSTM_BATCHES = (128, 512)
CNN_BATCHES = (32, 256)
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def crop_samples(n_train: int, n_val: int, seed: int = 0) -> pd.DataFrame:
    """Series whose class (8 classes, skewed) sets each band's level and seasonal phase."""
    from workbench.datasets.pixels import feature_columns

    rng = np.random.default_rng(seed)
    n = n_train + n_val
    p = np.array([8, 6, 5, 4, 3, 2, 1, 1], float)
    y = rng.choice(len(p), size=n, p=p / p.sum())
    t = np.arange(12)
    x = rng.normal(0.0, 0.3, (n, 12, len(BANDS))).astype(np.float32)
    x += np.sin(2 * np.pi * t[None, :, None] / 12 + 0.7 * y[:, None, None] + np.arange(len(BANDS)) * 0.3)
    x += 0.2 * y[:, None, None]
    frame = pd.DataFrame(x.reshape(n, -1), columns=feature_columns(list(BANDS), 12))
    frame.insert(0, "sample_id", [f"T-{i}" for i in range(n)])
    frame["tile"] = np.where(np.arange(n) < n_train, "A", "B")
    frame["split"] = np.where(frame["tile"] == "A", "train", "validation")
    frame["label"] = y
    return frame


def patches(n_train: int, n_val: int, seed: int = 1) -> Any:
    """32×32 patches: water (class 0) dark in HH/HV, four ice classes brighter."""
    from workbench.datasets.patches import PatchSet

    rng = np.random.default_rng(seed)
    n = n_train + n_val
    y = rng.integers(0, 5, n)
    x = np.empty((n, 32, 32, 3), np.float32)
    x[..., 0] = np.where(y[:, None, None] == 0, -22.0, -14.0 + y[:, None, None]) + rng.normal(
        0, 2.0, (n, 32, 32)
    )
    x[..., 1] = np.where(y[:, None, None] == 0, -30.0, -24.0) + rng.normal(0, 2.0, (n, 32, 32))
    x[..., 2] = 35.0 + rng.normal(0, 0.2, (n, 32, 32))
    return PatchSet(
        x=x,
        y=y.astype(np.int16),
        scene=np.full(n, "S1-bench", object),
        row=np.arange(n) * 32,
        col=np.zeros(n, int),
        purity=np.ones(n, np.float32),
        split=np.where(np.arange(n) < n_train, "train", "val"),
        class_names=("water", "new_ice", "young_ice", "first_year_ice", "old_ice"),
        bands=("HH_db", "HV_db", "incidence"),
    )


def best_epoch(result: Any) -> float:
    """Samples/s of the fastest epoch after the first (no tracing; the least disturbed by other load)."""
    seconds = min(h["train_seconds"] for h in result.history[1:])
    return result.steps_per_epoch * result.global_batch_size / seconds


def run_pair(
    name: str,
    builder: Any,
    ref: Any,
    *,
    client: Any,
    project: Path,
    local_batch: int,
    repeat: int,
    **kwargs: Any,
) -> dict[int, Any]:
    """The best (fastest steady epochs) of ``repeat`` runs on 1 and on 2 workers."""
    from workbench.training.distributed import fit_distributed

    out: dict[int, Any] = {}
    for n in (1, 2):
        best = None
        for _ in range(repeat):
            result = fit_distributed(
                builder,
                ref,
                client=client,
                n_workers=n,
                batch_size=local_batch * n,
                weighted_epochs=1,
                unweighted_epochs=3,
                seed=0,
                project=project,
                **kwargs,
            )
            if best is None or best_epoch(result) > best_epoch(best):
                best = result
        out[n] = best
        print(
            f"{name}, {n} worker(s) on {best.ranks[0]['device']}: {best_epoch(best):8.0f} samples/s "
            f"(mean of the epochs after the first {best.steady_samples_per_second:.0f}), "
            f"step {best.step_seconds * 1e3:6.1f} ms (batch {best.global_batch_size}), all-reduce "
            f"{best.allreduce_seconds_per_step * 1e3:6.2f} ms/step of {best.ranks[0]['gradient_bytes'] / 1e6:.2f} MB, "
            f"val acc {best.val_accuracy:.3f}, run {best.seconds:.1f} s",
            flush=True,
        )
    speedup = best_epoch(out[2]) / best_epoch(out[1])
    share = out[2].allreduce_seconds_per_step / out[2].step_seconds if out[2].step_seconds else float("nan")
    print(
        f"{name}: speed-up {speedup:.2f}x on 2 workers, scaling efficiency {speedup / 2:.2f} "
        f"(all-reduce {100 * share:.0f} % of a 2-worker step)",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="4096 crop series and 1024 patches")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration (fastest kept)")
    opts = parser.parse_args()
    from distributed import Client, LocalCluster

    from workbench.datasets import patches as patch_data
    from workbench.datasets.pixels import to_training_dataset
    from workbench.featurestore import FeatureStore
    from workbench.training.distributed import CropBuilder, DatasetRef, SeaIceBuilder

    n_crops, n_patches = (4096, 1024) if opts.small else (16384, 4096)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="wb-bench-dist-") as tmp:
        project = Path(tmp)
        store = FeatureStore(project)
        t0 = time.perf_counter()
        crops_td = to_training_dataset(crop_samples(n_crops, n_crops // 4), store=store)
        ice_td = patch_data.to_training_dataset(patches(n_patches, n_patches // 4), store=store)
        print(
            f"training datasets: {crops_td.splits} crop series, {ice_td.splits} patches "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            results = {}
            for batch in LSTM_BATCHES:
                results[("crop LSTM", batch)] = run_pair(
                    f"crop LSTM 2x64, {batch} per rank",
                    CropBuilder("lstm", {"n_layers": 2, "units": 64}),
                    crops_td,
                    client=client,
                    project=project,
                    local_batch=batch,
                    repeat=opts.repeat,
                )
            ice_ref = DatasetRef.of(ice_td, label_map=(0, 1, 1, 1, 1))
            for batch in CNN_BATCHES:
                results[("sea-ice CNN", batch)] = run_pair(
                    f"sea-ice ad-hoc CNN, {batch} per rank",
                    SeaIceBuilder("adhoc"),
                    ice_ref,
                    client=client,
                    project=project,
                    local_batch=batch,
                    repeat=opts.repeat,
                    optimizer="adam",
                )
    efficiency = {key: best_epoch(r[2]) / (2 * best_epoch(r[1])) for key, r in results.items()}
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    large = {key: e for key, e in efficiency.items() if key[1] in (LSTM_BATCHES[-1], CNN_BATCHES[-1])}
    small = {key: e for key, e in efficiency.items() if key not in large}
    for label, group in (("small", small), ("large", large)):
        print(
            f"scaling efficiency at the {label} per-rank batches: "
            + ", ".join(f"{name} ({batch}) {e:.2f}" for (name, batch), e in group.items())
        )
    worst = min(large, key=large.get)
    print(
        f"worse scaling efficiency on 2 workers vs 1, large per-rank batches ({worst[0]}, {worst[1]} per rank; "
        f"target >= 0.8): {large[worst]:.2f}"
    )


if __name__ == "__main__":
    main()
