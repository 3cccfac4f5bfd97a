"""Monthly composites with the compiled median kernel: identical to xarray, on threads and on process clusters."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from workbench.errors import DataError
from workbench.sentinel2 import (
    agronomic_months,
    chunk_progress,
    composite_tile,
    fill_gaps,
    mask_cube,
    monthly_composite,
    monthly_count,
    monthly_median,
    nanmedian_axis0,
)
from workbench.sentinel2.median_kernel import NETWORK_MAX, grouped_median_count, network

warnings.filterwarnings("ignore", category=RuntimeWarning)


def _cube(seed: int, n_times: int, *, ny: int = 9, nx: int = 7, n_bands: int = 3, masked: float = 0.45,
          per_band: bool = False, empty_months: tuple[int, ...] = (), shuffle: bool = False) -> xr.DataArray:
    """A masked cube with irregular dates (some outside the agronomic year 2023)."""
    rng = np.random.default_rng(seed)
    days = np.arange(-15, 380)
    months = (np.datetime64("2023-09-01") + days.astype("timedelta64[D]")).astype("datetime64[M]")
    idx = (months - np.datetime64("2023-09", "M")).astype(int)
    days = days[~np.isin(idx, empty_months)]
    times = np.sort(np.datetime64("2023-09-01") + rng.choice(days, n_times, replace=n_times > days.size).astype("timedelta64[D]"))
    data = (rng.random((n_times, n_bands, ny, nx)) * 0.6 - 0.05).astype(np.float32)
    data = np.where(rng.random(data.shape) < 0.3, np.round(data, 2), data)  # ties
    shape = data.shape if per_band else (n_times, 1, ny, nx)
    cloud = np.broadcast_to(rng.random(shape) < masked, data.shape)
    data[cloud] = np.nan
    cube = xr.DataArray(data.astype(np.float32), dims=("time", "band", "y", "x"),
                        coords={"time": times, "band": [f"B{i}" for i in range(n_bands)],
                                "y": np.arange(ny) * -10.0, "x": np.arange(nx) * 10.0})
    if shuffle:
        cube = cube.isel(time=rng.permutation(n_times))
    return cube


def _xarray_reference(cube: xr.DataArray) -> xr.DataArray:
    """xarray's resample-median, on the 12 months of agronomic year 2023 (NaN for a month without dates)."""
    ref = cube.sortby("time").resample(time="1MS").median()
    return ref.reindex(time=agronomic_months(2023))


def _same(a: np.ndarray, b: np.ndarray, *, signed_zeros: bool = False) -> bool:
    """Same dtype and values, NaN equal to NaN (``signed_zeros``: -0.0 told from 0.0 too).

    Where -0.0 and 0.0 tie in the middle of a month, which of the two is "the"
    median depends on the sort, so the composite tests compare zeros as equal.
    """
    a, b = np.asarray(a), np.asarray(b)
    same = (a == b) & (np.signbit(a) == np.signbit(b)) if signed_zeros else a == b
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.all((np.isnan(a) & np.isnan(b)) | same))


# ---------------------------------------------------------------- identity with xarray


@pytest.mark.parametrize("seed, n_times, kwargs", [
    (0, 70, {}),
    (1, 40, {"per_band": True}),  # each band its own NaN pattern
    (2, 120, {"masked": 0.8, "empty_months": (2, 3)}),  # even counts, months without dates, all-masked pixels
    (3, 24, {"shuffle": True, "nx": 1300 // 9, "chunk": 200}),  # unsorted times, blocks of several kernel tiles
    (4, 400, {"ny": 3, "nx": 4}),  # repeated dates, ~34 a month: groups above the network fall back to a sort
])
def test_composite_is_identical_to_xarray_resample_median(seed: int, n_times: int, kwargs: dict[str, Any]) -> None:
    chunk = kwargs.pop("chunk", 4)
    cube = _cube(seed, n_times, **kwargs)
    comp = monthly_composite(cube, agronomic_year=2023, fill=False, chunk=chunk).compute()
    ref = _xarray_reference(cube)
    assert _same(comp["reflectance"].values, ref.values.astype(np.float32))
    # the valid count: observations finite in every band, per month
    in_year = cube.sortby("time").sel(time=slice("2023-09-01", "2024-08-31"))
    valid = np.isfinite(in_year.values).all(axis=1)
    month = (in_year["time"].values.astype("datetime64[M]") - np.datetime64("2023-09", "M")).astype(int)
    expected = np.stack([valid[month == m].sum(axis=0) for m in range(12)])
    np.testing.assert_array_equal(comp["valid_count"].values, expected)
    assert comp["valid_count"].dtype == np.uint16 and comp["reflectance"].dtype == np.float32
    np.testing.assert_array_equal(comp["filled"].values, expected == 0)
    counts = np.isfinite(in_year.values).reshape(len(month), -1)
    per_month = np.array([counts[month == m].sum(axis=0) for m in range(12)])
    if seed == 2:
        assert (per_month % 2 == 0).any() and (per_month == 0).any() and (per_month > 0).any()
        assert np.isnan(comp["reflectance"].values[2]).all()  # no date in November
    if seed == 4:
        assert np.bincount(month).max() > NETWORK_MAX


def test_filled_months_are_interpolated_and_flagged() -> None:
    cube = _cube(5, 50, masked=0.6, empty_months=(4,))
    comp = monthly_composite(cube, agronomic_year=2023, fill=True, chunk=5).compute()
    ref = _xarray_reference(cube).values.astype(np.float32)
    assert _same(comp["reflectance"].values, fill_gaps(ref))
    assert comp["filled"].values[4].all()
    assert np.isfinite(comp["reflectance"].values[4]).all()
    # where a month had a value, filling does not touch it
    has = ~np.isnan(ref)
    assert _same(comp["reflectance"].values[has], ref[has])


def test_kernel_rules_for_odd_even_empty_and_extreme_values() -> None:
    big = np.float32(3.0e38)
    x = np.array([
        [1.0, 1.0, np.nan, big, -0.0, np.inf, 2.0, np.nan],
        [3.0, 2.0, np.nan, big, np.nan, np.inf, -np.inf, np.nan],
        [2.0, np.nan, np.nan, big, np.nan, 1.0, np.nan, np.nan],
        [np.nan, 4.0, np.nan, np.nan, np.nan, np.nan, np.nan, 5.0],
    ], dtype=np.float32)
    got = nanmedian_axis0(x)
    # odd: the middle value itself (also when doubling it would overflow, and -0.0 kept);
    # even: the mean of the two middle values; none: NaN; +inf is a value, not a gap
    assert _same(got, np.array([2.0, 2.0, np.nan, big, -0.0, np.inf, -np.inf, 5.0], dtype=np.float32),
                 signed_zeros=True)
    # numpy's small-array nanmedian averages the middle value with itself for an odd count, so it
    # overflows to inf at 3e38 and turns -0.0 into 0.0; everywhere else it agrees bit for bit
    ordinary = [0, 1, 2, 5, 6, 7]
    assert _same(got[ordinary], np.nanmedian(x, axis=0)[ordinary], signed_zeros=True)
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64, np.float16):
        for k in (0, 1, 2, 3, 4, 5, 8, 13, 31, 32, 33, 70):
            a = rng.normal(size=(k, 5, 7)).astype(dtype)
            a[rng.random(a.shape) < 0.35] = np.nan
            ref = np.nanmedian(a, axis=0) if k else np.full((5, 7), np.nan, dtype)
            assert _same(nanmedian_axis0(a), ref.astype(dtype)), (dtype, k)
    ints = rng.integers(0, 100, size=(6, 4)).astype(np.int16)
    assert _same(nanmedian_axis0(ints), np.median(ints.astype(np.float64), axis=0))


def test_monthly_median_and_count_of_plain_arrays() -> None:
    rng = np.random.default_rng(11)
    data = rng.random((30, 4, 3)).astype(np.float64)
    data[rng.random(data.shape) < 0.3] = np.nan
    months = rng.integers(-1, 12, size=30)
    got = monthly_median(data, months)
    for m in range(12):
        sel = data[months == m]
        ref = np.nanmedian(sel, axis=0) if len(sel) else np.full((4, 3), np.nan)
        assert _same(got[m], ref)
    valid = np.isfinite(data)
    np.testing.assert_array_equal(monthly_count(valid, months)[3], valid[months == 3].sum(axis=0))
    med, count = grouped_median_count(data.reshape(30, 1, 12), np.flatnonzero(months == 3), np.array([0, (months == 3).sum()]))
    assert _same(med[0, 0], got[3].reshape(-1)) and count[0].tolist() == valid[months == 3].reshape(-1, 12).sum(0).tolist()
    # the sorting networks sort every 0/1 input (so every input)
    for k in range(2, 12):
        for bits in range(2 ** k):
            v = [(bits >> i) & 1 for i in range(k)]
            for i, j in network(k):
                if v[i] > v[j]:
                    v[i], v[j] = v[j], v[i]
            assert v == sorted(v), (k, bits)


# ---------------------------------------------------------------- bad input


def test_bad_input_gives_clear_errors() -> None:
    cube = _cube(6, 20)
    with pytest.raises(DataError, match=r"dims \(time, band, y, x\)"):
        monthly_composite(cube.transpose("band", "time", "y", "x"), agronomic_year=2023)
    with pytest.raises(DataError, match=r"dims \(time, band, y, x\)"):
        monthly_composite(cube.isel(band=0), agronomic_year=2023)
    with pytest.raises(DataError, match="no acquisition in agronomic year 2023.*no time steps"):
        monthly_composite(cube.isel(time=slice(0, 0)), agronomic_year=2023)
    with pytest.raises(DataError, match="empty band axis"):
        monthly_composite(cube.isel(band=slice(0, 0)), agronomic_year=2023)
    with pytest.raises(DataError, match="xarray.DataArray"):
        monthly_composite(cube.values, agronomic_year=2023)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="chunk must be a positive"):
        monthly_composite(cube, agronomic_year=2023, chunk=0)
    with pytest.raises(DataError, match="must hold numbers"):
        monthly_composite(cube.astype(str), agronomic_year=2023)
    with pytest.raises(DataError, match="datetime64 'time'"):
        monthly_composite(cube.assign_coords(time=np.arange(20)), agronomic_year=2023)
    with pytest.raises(DataError, match="agronomic_year must be an integer"):
        monthly_composite(cube, agronomic_year="2023")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="5 month indices for 20 time steps"):
        monthly_median(cube.values, np.zeros(5, dtype=int))
    with pytest.raises(DataError, match="in -1..11"):
        monthly_median(cube.values, np.full(20, 12))
    with pytest.raises(DataError, match="integers"):
        monthly_median(cube.values, np.zeros(20))
    with pytest.raises(DataError, match="mask of 19 time steps for 20 month indices"):
        monthly_count(np.ones((19, 4, 4), bool), np.zeros(20, dtype=int))
    with pytest.raises(DataError, match="scalar"):
        nanmedian_axis0(np.float32(1.0))
    for chunk in (0, -5, 2.5, True):  # the notebook's chunk parameter reaches composite_tile as is
        with pytest.raises(DataError, match="chunk must be a positive"):
            composite_tile([], "unused.zarr", agronomic_year=2023, chunk=chunk)  # type: ignore[arg-type]
    # a cloud mask that does not match the reflectance grid
    times = cube["time"].values[:3]
    for scl in [(("time", "row", "col"), np.full((3, 5, 4), 4, np.uint8)),
                (("time", "band", "y", "x"), np.full((3, 2, 4, 4), 4, np.uint8))]:
        bad = xr.Dataset({
            "dn": (("time", "band", "y", "x"), np.full((3, 2, 4, 4), 2000, np.uint16)), "scl": scl,
            "scale": ("time", np.full(3, 1e-4, np.float32)), "offset": ("time", np.full(3, -0.1, np.float32))},
            coords={"time": times})
        with pytest.raises(DataError, match="'scl' .* does not match"):
            mask_cube(bad)


# ---------------------------------------------------------------- the same code path on process clusters


@pytest.fixture(scope="module")
def cube_and_reference() -> tuple[xr.DataArray, xr.Dataset]:
    cube = _cube(7, 60, ny=40, nx=33, n_bands=4, per_band=True)
    with chunk_progress(disable=True) as bar:
        ref = monthly_composite(cube, agronomic_year=2023, chunk=16).compute(scheduler="threads")
        assert (bar.done, bar.total) == (9, 9)  # 3 x 3 spatial chunks, counted on the threaded scheduler
    return cube, ref


def test_local_process_cluster_gives_the_same_composite(cube_and_reference: tuple[xr.DataArray, xr.Dataset]) -> None:
    from distributed import Client, LocalCluster

    cube, ref = cube_and_reference
    lazy = monthly_composite(cube.chunk({"time": 7, "y": 10, "x": 11}), agronomic_year=2023, chunk=16)
    # chunked along space only: one task per 16 x 16 tile holds the whole time series of every band
    assert lazy["reflectance"].data.chunks[:2] == ((12,), (4,))
    assert lazy["reflectance"].data.numblocks == (1, 1, 3, 3)
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        with chunk_progress(disable=True) as bar:  # the bar moves on events from the worker processes
            lazy = monthly_composite(cube.chunk({"time": 7, "y": 10, "x": 11}), agronomic_year=2023, chunk=16)
            got = lazy.compute()
        workers = client.run(os.getpid)
    assert (bar.done, bar.total) == (9, 9)
    assert len(set(workers.values())) == 2 and os.getpid() not in workers.values()
    for name in ("reflectance", "valid_count", "filled"):
        assert _same(got[name].values.astype(float), ref[name].values.astype(float)), name
    assert _same(ref["reflectance"].values, fill_gaps(_xarray_reference(cube).values.astype(np.float32)))


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two workers started with the ``dask`` command line."""
    from tests.conftest import free_port

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = str(Path(sys.executable).with_name("dask"))
    log = tmp_path_factory.mktemp("dask-cli")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    logs = [open(log / name, "w") for name in ("scheduler.log", "worker0.log", "worker1.log")]  # noqa: SIM115
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0", "--no-show"],
                              stdout=logs[0], stderr=subprocess.STDOUT, env=env)]
    try:
        for i in range(2):
            procs.append(subprocess.Popen([dask_cli, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                           "--no-dashboard", "--name", f"w{i}", "--local-directory", str(log)],
                                          stdout=logs[i + 1], stderr=subprocess.STDOUT, env=env))
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for f in logs:
            f.close()


def test_cli_started_scheduler_and_workers_give_the_same_composite(
    cli_cluster: str, cube_and_reference: tuple[xr.DataArray, xr.Dataset]
) -> None:
    from distributed import Client

    cube, ref = cube_and_reference
    with Client(cli_cluster, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        got = monthly_composite(cube, agronomic_year=2023, chunk=16).compute()
        names = {w["name"] for w in client.scheduler_info()["workers"].values()}
        pids = client.run(os.getpid)
    assert names == {"w0", "w1"} and len(set(pids.values())) == 2
    for name in ("reflectance", "valid_count", "filled"):
        assert _same(got[name].values.astype(float), ref[name].values.astype(float)), name

