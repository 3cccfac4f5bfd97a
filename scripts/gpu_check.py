"""The measurements of ``scripts/gpu_check.sh`` (run by it; ``--small`` sizes for a smoke test on a CPU).

``vgg``: VGG-16 at full width (32x32x3 patches) trained with ``model.fit`` on one device, samples/s.
``distributed ADDRESS N``: :func:`workbench.training.distributed.fit_distributed` of the crop LSTM (3 x 200,
the paper's largest grid cell count is 300) and of the full-width VGG-16 on 1 and on N GPU workers of the
cluster at ADDRESS, samples/s and all-reduce time per step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def vgg(*, n: int, batch: int, width: float) -> None:
    import keras

    from workbench.models.seaice import vgg16_modified
    from workbench.training.fit import seed_everything

    seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 32, 32, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
    model = vgg16_modified((32, 32, 3), 2, width=width, pools=2)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)  # tracing, autotuning
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=2, verbose=0)
    seconds = time.perf_counter() - start
    print(
        f"gpu-check: VGG-16 width {width} ({model.count_params() / 1e6:.1f} M parameters), one device: "
        f"{2 * n / seconds:.0f} samples/s (batch {batch})",
        flush=True,
    )


def distributed(
    address: str, n_workers: int, *, n_series: int, n_patches: int, width: float, batch: int
) -> None:
    from distributed import Client

    from workbench.datasets import patches as patch_data
    from workbench.datasets.pixels import feature_columns, to_training_dataset
    from workbench.featurestore import FeatureStore
    from workbench.training.distributed import CropBuilder, DatasetRef, SeaIceBuilder, fit_distributed

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="wb-gpu-check-") as tmp:
        project = Path(tmp)
        store = FeatureStore(project)
        y = rng.integers(0, 8, n_series)
        x = rng.normal(0, 0.3, (n_series, 12, 10)).astype("float32") + 0.2 * y[:, None, None]
        frame = pd.DataFrame(
            x.reshape(n_series, -1), columns=feature_columns([f"B{i:02d}" for i in range(10)], 12)
        )
        frame.insert(0, "sample_id", [f"T-{i}" for i in range(n_series)])
        frame["tile"] = np.where(np.arange(n_series) < 0.8 * n_series, "A", "B")
        frame["split"] = np.where(frame["tile"] == "A", "train", "validation")
        frame["label"] = y
        crops = to_training_dataset(frame, store=store)
        c = rng.integers(0, 2, n_patches)
        px = (
            rng.normal(0, 2.0, (n_patches, 32, 32, 3)).astype("float32")
            + np.where(c, -14.0, -22.0)[:, None, None, None]
        )
        ice = patch_data.to_training_dataset(
            patch_data.PatchSet(
                x=px,
                y=c.astype(np.int16),
                scene=np.full(n_patches, "S1", object),
                row=np.arange(n_patches) * 32,
                col=np.zeros(n_patches, int),
                purity=np.ones(n_patches, np.float32),
                split=np.where(np.arange(n_patches) < 0.8 * n_patches, "train", "val"),
                class_names=("water", "ice"),
                bands=("HH_db", "HV_db", "incidence"),
            ),
            store=store,
        )
        runs = [
            (
                "crop LSTM 3x200",
                CropBuilder("lstm", {"n_layers": 3, "units": 200}),
                crops,
                4 * batch,
                "rmsprop",
            ),
            (
                f"VGG-16 width {width}",
                SeaIceBuilder("vgg16", params={"width": width}),
                DatasetRef.of(ice),
                batch,
                "adam",
            ),
        ]
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=120)
            for name, builder, td, per_rank, optimizer in runs:
                speed = {}
                for ranks in sorted({1, n_workers}):
                    result = fit_distributed(
                        builder,
                        td,
                        client=client,
                        n_workers=ranks,
                        batch_size=per_rank * ranks,
                        weighted_epochs=1,
                        unweighted_epochs=2,
                        optimizer=optimizer,
                        project=project,
                    )
                    speed[ranks] = result.steady_samples_per_second
                    devices = sorted({r["device"] for r in result.ranks})
                    print(
                        f"gpu-check: distributed {name} on {ranks} worker(s) {devices}: {speed[ranks]:.0f} samples/s "
                        f"(batch {per_rank} per worker), all-reduce {result.allreduce_seconds_per_step * 1e3:.2f} "
                        f"ms/step",
                        flush=True,
                    )
                if n_workers > 1:
                    print(
                        f"gpu-check: {name} scaling efficiency on {n_workers} GPUs: "
                        f"{speed[n_workers] / (n_workers * speed[1]):.2f}",
                        flush=True,
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("vgg", "distributed"))
    parser.add_argument("address", nargs="?")
    parser.add_argument("n_workers", nargs="?", type=int, default=1)
    parser.add_argument("--small", action="store_true", help="tiny sizes (a smoke test, e.g. on a CPU)")
    opts = parser.parse_args()
    width = 0.125 if opts.small else 1.0
    if opts.what == "vgg":
        vgg(n=256 if opts.small else 8192, batch=32 if opts.small else 128, width=width)
    else:
        if not opts.address:
            parser.error("distributed needs the scheduler ADDRESS")
        distributed(
            opts.address,
            opts.n_workers,
            n_series=2048 if opts.small else 65536,
            n_patches=256 if opts.small else 8192,
            width=width,
            batch=32 if opts.small else 128,
        )


if __name__ == "__main__":
    main()
