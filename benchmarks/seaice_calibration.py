"""σ⁰ calibration + thermal-noise removal + dB on a 4096×4096 window vs xarray-sentinel.

Baseline: ``xarray_sentinel.calibrate_intensity(dn, sigmaNought, as_db=True)``
on the same window; it interpolates the calibration LUT with xarray and does
*no* noise removal. Ours interpolates the sigmaNought LUT and both noise LUTs
(range + per-sub-swath azimuth blocks) bilinearly, subtracts the noise, clips
and converts to dB. Both run in memory on the same ``float32`` digital numbers
(random gamma-distributed DN: the speed does not depend on the values) with
the real LUTs of the sarsen GRD product.

Usage: ``python benchmarks/seaice_calibration.py [--small]`` (``--small``: 1024×1024).
The last line is ``sigma0_time_vs_xarray_sentinel: <ratio>x`` (ours / baseline; target ≤ 1.3).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from xarray_sentinel import sentinel1 as xs

    from workbench.samples.sarsen_assets import find_grd_safe
    from workbench.sentinel1 import azimuth_noise, open_safe, read_metadata, sigma0_db

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="1024×1024 window (quick mode)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = 1024 if args.small else 4096
    safe = find_grd_safe()
    meta = read_metadata(open_safe(str(safe), require_measurement=False), "VV")
    cal_file = next((safe / "annotation" / "calibration").glob("calibration-*.xml"))
    cal = xs.open_calibration_dataset(cal_file, attrs={})
    row0, col0 = 6000, 7000  # crosses the IW1/IW2 sub-swath boundary at pixel 8890
    rows = np.arange(row0, row0 + size, dtype=np.float64)
    cols = np.arange(col0, col0 + size, dtype=np.float64)
    rng = np.random.default_rng(0)
    dn = (rng.gamma(4.4, 1 / 4.4, size=(size, size)) * 120).astype(np.float32)
    dn_da = xr.DataArray(dn, dims=("line", "pixel"), coords={"line": rows.astype(int), "pixel": cols.astype(int)})

    def ours() -> np.ndarray:
        a = meta.sigma_nought.at(rows, cols)
        noise = meta.noise_range.at(rows, cols) * azimuth_noise(meta.noise_azimuth, rows, cols)
        return sigma0_db(dn, a, noise)

    def baseline() -> np.ndarray:
        return xs.calibrate_intensity(dn_da, cal.sigmaNought, as_db=True).values

    ours(), baseline()  # warm-up
    t_ours = _best(ours, args.repeat)
    t_base = _best(baseline, args.repeat)
    no_noise = sigma0_db(dn, meta.sigma_nought.at(rows, cols), None)
    diff = float(np.abs(no_noise - np.maximum(baseline(), -40.0)).max())
    print(f"window: {size}x{size} pixels, best of {args.repeat}")
    print(f"workbench sigma0 (calibration + range/azimuth noise removal + dB): {t_ours:.3f} s "
          f"({size * size / t_ours / 1e6:.1f} Mpx/s)")
    print(f"xarray-sentinel calibrate_intensity (calibration + dB, no noise removal): {t_base:.3f} s "
          f"({size * size / t_base / 1e6:.1f} Mpx/s)")
    print(f"max |difference| without noise removal: {diff:.4f} dB")
    print(f"sigma0_time_vs_xarray_sentinel: {t_ours / t_base:.2f}x")


if __name__ == "__main__":
    main()
