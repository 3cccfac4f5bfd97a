"""Scene classification throughput: ``classify_scene`` vs ``model.predict`` on pre-extracted patches.

Builds the sample scene (real SAFE metadata, simulated pixels) in a temporary
folder, preprocesses it to a 40 m cube, and classifies it with the ad-hoc CNN
(32×32 patches, stride 16; the weights are untrained: throughput does not
depend on them). Baseline: the same patches (each tile's centred patch)
extracted beforehand into one in-memory array and given to ``model.predict``
with the same batch size.

Usage: ``python benchmarks/seaice_classify.py [--small]`` (``--small``: 1024² raw → 256² cube).
The last line is ``classify_scene_throughput_vs_predict: <ratio>x`` (patches/s ratio; target ≥ 0.8).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="1024×1024 raw window (quick mode)")
    parser.add_argument("--model", default="adhoc", choices=["adhoc", "vgg16"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from workbench.datasets.patches import label_raster  # noqa: F401 - same import cost for both
    from workbench.models.seaice import build_model
    from workbench.samples.sentinel1 import CLASS_NAMES, build_sample_scene
    from workbench.sentinel1 import classify_scene, preprocess

    size = 1024 if args.small else 2048
    with tempfile.TemporaryDirectory() as tmp:
        scene = build_sample_scene(tmp, seed=2, size=size, register=False)
        cube = preprocess(scene.safe, window=scene.window, chunk=256).compute()
    sar = cube["sar"].values
    mean = np.nanmean(sar, axis=(0, 1))
    std = np.nanstd(sar, axis=(0, 1))
    patch, stride = 32, 16
    model = build_model(args.model, (patch, patch, 3), len(CLASS_NAMES), mean=mean, std=std, width=0.25)

    # baseline: the same centred patches, pre-extracted in memory
    margin = (patch - stride) // 2
    padded = np.pad(sar, ((margin, margin + stride), (margin, margin + stride), (0, 0)), mode="edge")
    ty, tx = -(-sar.shape[0] // stride), -(-sar.shape[1] // stride)
    patches = np.stack([padded[i * stride : i * stride + patch, j * stride : j * stride + patch]
                        for i in range(ty) for j in range(tx)]).astype(np.float32)
    model.predict(patches[: args.batch_size], batch_size=args.batch_size, verbose=0)  # warm-up
    classify_scene(model, cube.isel(y=slice(0, 64), x=slice(0, 64)), class_names=CLASS_NAMES)  # warm-up

    t_base = t_ours = float("inf")
    for _ in range(args.repeat):  # best of N, alternating, on a shared machine
        start = time.perf_counter()
        model.predict(patches, batch_size=args.batch_size, verbose=0)
        t_base = min(t_base, time.perf_counter() - start)
        start = time.perf_counter()
        result = classify_scene(model, cube, class_names=CLASS_NAMES, stride=stride, batch_size=args.batch_size)
        t_ours = min(t_ours, time.perf_counter() - start)
    n = result.n_patches
    assert n == len(patches), (n, len(patches))
    print(f"cube {sar.shape[0]}x{sar.shape[1]} px at 40 m, model {args.model}, {n} patches of {patch}x{patch}, "
          f"stride {stride}, batch {args.batch_size}, best of {args.repeat}")
    print(f"model.predict on pre-extracted patches: {t_base:.2f} s ({n / t_base:.0f} patches/s)")
    print(f"classify_scene (sliding patches over Dask chunks + geocoding + polygons): {t_ours:.2f} s "
          f"({n / t_ours:.0f} patches/s)")
    print(f"classify_scene_throughput_vs_predict: {(n / t_ours) / (n / t_base):.2f}x")


if __name__ == "__main__":
    main()
