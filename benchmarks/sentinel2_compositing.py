"""Benchmark: monthly median composites on Dask vs xarray's ``resample(time="1MS").median()``.

A masked reflectance cube (``dates × 10 bands × size²`` float32, NaN where
clouds were masked, irregular dates over one agronomic year) is generated
and persisted in the memory of a LocalCluster of 2 workers, chunked in space
only. It is then

* read plainly (a sum: the memory floor),
* composited with :func:`workbench.sentinel2.monthly_composite` (no gap filling),
* composited with xarray's ``resample(time="1MS").median()`` (the baseline),

and the outputs are checked to be identical. Prints the times, the effective
GB/s of each against the plain read, the peak cluster memory and, last, the
speed-up.

Usage: ``python benchmarks/sentinel2_compositing.py [--small] [--size N] [--dates N]``
(full size: 60 dates × 10 bands × 2048²; ``--small``: 512²).
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np


def _masked_cube(*, n_dates: int, size: int, chunk: int, seed: int) -> "Any":
    import dask.array as da
    import xarray as xr

    rng = np.random.default_rng(seed)
    days = np.sort(rng.choice(np.arange(0, 366), n_dates, replace=False))
    times = np.datetime64("2023-09-01") + days.astype("timedelta64[D]")
    rs = da.random.RandomState(seed)
    chunks = (n_dates, 10, chunk, chunk)
    data = rs.random_sample((n_dates, 10, size, size), chunks=chunks).astype(np.float32)
    cloud = rs.random_sample((n_dates, 1, size, size), chunks=(n_dates, 1, chunk, chunk)) < 0.4
    data = da.where(cloud, np.float32(np.nan), data)
    return xr.DataArray(data, dims=("time", "band", "y", "x"), name="reflectance",
                        coords={"time": times, "band": [f"B{i:02d}" for i in range(10)]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="512 x 512 pixels instead of 2048 x 2048")
    parser.add_argument("--size", type=int, default=None, help="pixels per side (overrides --small)")
    parser.add_argument("--dates", type=int, default=60)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    size = args.size or (512 if args.small else 2048)
    warnings.filterwarnings("ignore")

    import dask.array as da
    from distributed import wait
    from distributed.diagnostics import MemorySampler

    from workbench.cluster import get_client
    from workbench.sentinel2 import monthly_composite

    get_client(n_workers=args.workers)
    t0 = time.perf_counter()
    cube = _masked_cube(n_dates=args.dates, size=size, chunk=args.chunk, seed=0).persist()
    wait(cube.data)
    nbytes = args.dates * 10 * size * size * 4
    print(f"cube: {args.dates} dates x 10 bands x {size}^2 float32 = {nbytes / 1e9:.2f} GB, 40 % masked "
          f"(generated and persisted in {time.perf_counter() - t0:.1f} s), {args.workers} Dask workers")
    try:
        sampler = MemorySampler()
        timings: dict[str, float] = {}
        results: dict[str, Any] = {}
        with sampler.sample("plain read"):
            t0 = time.perf_counter()
            cube.sum(skipna=False).compute()  # touches every byte once
            timings["plain read"] = time.perf_counter() - t0
        with sampler.sample("workbench"):
            t0 = time.perf_counter()
            results["workbench"] = monthly_composite(cube, agronomic_year=2023, fill=False,
                                                     chunk=args.chunk)["reflectance"].data.persist()
            wait(results["workbench"])
            timings["workbench"] = time.perf_counter() - t0
        with sampler.sample("xarray resample median"):
            t0 = time.perf_counter()
            results["baseline"] = cube.resample(time="1MS").median().data.persist()
            wait(results["baseline"])
            timings["xarray resample median"] = time.perf_counter() - t0
        a, b = results["workbench"], results["baseline"].rechunk(results["workbench"].chunks)
        identical = a.shape == b.shape and bool(((a == b) | (da.isnan(a) & da.isnan(b))).all().compute())
        peaks = sampler.to_pandas().max()
        for name, seconds in timings.items():
            print(f"{name:>24}: {seconds:8.2f} s  {nbytes / seconds / 1e9:6.2f} GB/s  "
                  f"peak cluster memory {peaks.get(name, float('nan')) / 2**30:.2f} GiB")
        print(f"workbench throughput vs the plain read (memory floor): {timings['plain read'] / timings['workbench']:.2f}")
        print(f"identical output: {identical}")
        if not identical:
            raise SystemExit("the composites differ from xarray's resample median")
        print(f"compositing_speedup_vs_xarray_resample_median: "
              f"{timings['xarray resample median'] / timings['workbench']:.1f}x")
    finally:
        del cube, results


if __name__ == "__main__":
    main()
