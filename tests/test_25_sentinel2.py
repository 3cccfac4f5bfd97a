"""Sentinel-2 sample time series, SCL masking and monthly composites (workbench.samples.sentinel2, workbench.sentinel2)."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr

from workbench import storage
from workbench.errors import DataError
from workbench.samples.sentinel2 import (
    BANDS,
    CROP_CLASSES,
    SCL_CLASSES,
    find_sample_parcels,
    generate_sentinel2_samples,
    sample_paths,
)
from workbench.sentinel2 import (
    agronomic_months,
    composite_tile,
    composite_tiles,
    group_by_tile,
    invalid_classes,
    load_cube,
    mask_cube,
    month_index,
    monthly_composite,
    nanmedian_axis0,
    ndvi,
    valid_mask,
)
from workbench.sentinel2.composite import check_has_valid

warnings.filterwarnings("ignore", category=RuntimeWarning)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three 32 x 32 tiles, generated once, not registered."""
    root = tmp_path_factory.mktemp("s2")
    items = generate_sentinel2_samples(root, n_tiles=3, size=32, seed=3, register=False)
    return {"root": root, "items": items, "tiles": group_by_tile(items)}


@pytest.fixture(scope="module")
def composites(sample: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import dask

    with dask.config.set(scheduler="threads"):
        return composite_tiles(sample["items"], tmp_path_factory.mktemp("comp"), agronomic_year=2023, chunk=32)


# ---------------------------------------------------------------- sample data


def test_sample_items_are_cdse_style_stac_1_1(sample: dict[str, Any]) -> None:
    items: list[pystac.Item] = sample["items"]
    assert len(sample["tiles"]) == 3
    item = items[0]
    d = item.to_dict()
    assert d["stac_version"] == "1.1.0"
    assert d["collection"] == "sentinel-2-l2a"
    assert item.properties["proj:code"] == "EPSG:32633"
    assert {f"{b}_{'10m' if b in ('B02', 'B03', 'B04', 'B08') else '20m'}" for b in BANDS} | {"SCL_20m"} == set(item.assets)
    for key, asset in item.assets.items():
        assert Path(asset.href).is_absolute() and Path(asset.href).is_file(), key
        assert asset.extra_fields["proj:code"] == "EPSG:32633"
    b04 = item.assets["B04_10m"].extra_fields
    assert (b04["raster:scale"], b04["raster:offset"], b04["nodata"]) == (0.0001, -0.1, 0)
    # the items are inside the demo's search box and agronomic year
    for it in items:
        lon0, lat0, lon1, lat1 = it.bbox
        assert 14.0 <= lon0 and lon1 <= 16.0 and 45.5 <= lat0 and lat1 <= 47.0
        assert dt.datetime(2023, 9, 1, tzinfo=dt.timezone.utc) <= it.datetime < dt.datetime(2024, 9, 1, tzinfo=dt.timezone.utc)
    # tiles have different, irregular samplings
    counts = {t: len(v) for t, v in sample["tiles"].items()}
    assert len(set(counts.values())) > 1, counts
    days = np.diff([i.datetime.timestamp() / 86400 for i in sample["tiles"]["33TVM"]])
    assert days.min() >= 4.9 and len(set(np.round(days))) > 2


def test_sample_bands_scl_and_parcels(sample: dict[str, Any]) -> None:
    import geopandas as gpd

    scl_codes: set[int] = set()
    refl = []
    for item in sample["items"]:
        with rasterio.open(item.assets["SCL_20m"].href) as src:
            assert src.crs.to_epsg() == 32633 and src.res == (20.0, 20.0) and src.dtypes[0] == "uint8"
            scl = src.read(1)
        scl_codes |= set(np.unique(scl).tolist())
        with rasterio.open(item.assets["B08_10m"].href) as src:
            assert src.res == (10.0, 10.0) and src.dtypes[0] == "uint16" and src.nodata == 0
            dn = src.read(1)
        clear = np.repeat(np.repeat(scl == 4, 2, 0), 2, 1)
        refl.append(dn[clear] * 1e-4 - 0.1)
    assert scl_codes <= set(SCL_CLASSES)
    assert {3, 4, 8, 9, 11} <= scl_codes  # shadows, vegetation, clouds, snow all occur
    vals = np.concatenate(refl)
    assert 0.1 < np.median(vals) < 0.6 and vals.min() > -0.1  # NIR reflectance of vegetation
    parcels = gpd.read_parquet(sample_paths(sample["root"])["parcels"])
    assert find_sample_parcels(sample["items"]) == sample_paths(sample["root"])["parcels"]
    assert find_sample_parcels([]) is None
    assert parcels.crs.to_epsg() == 32633
    assert set(parcels["crop_name"]) <= set(CROP_CLASSES)
    shares = parcels["crop_name"].value_counts(normalize=True)
    assert shares.index[0] in ("grassland", "maize") and shares.iloc[0] > 2 * shares.iloc[-1]
    points = gpd.read_parquet(sample_paths(sample["root"])["insitu"])
    assert points.crs.to_epsg() == 4326 and len(points) > 5
    assert points["lucas_code"].str.match(r"^[A-Z]\d\d$").all()


def test_sample_is_reproducible_and_registered(project_dir: Path) -> None:
    from workbench.catalog import search

    a = generate_sentinel2_samples(project_dir / "a", n_tiles=1, size=16, seed=7)
    b = generate_sentinel2_samples(project_dir / "b", n_tiles=1, size=16, seed=7, register=False)
    assert [i.id for i in a] == [i.id for i in b]
    with rasterio.open(a[5].assets["B04_10m"].href) as s1, rasterio.open(b[5].assets["B04_10m"].href) as s2:
        assert np.array_equal(s1.read(), s2.read())
    found = search("sentinel-2-l2a", [14.0, 45.5, 16.0, 47.0], "2023-09-01", "2024-08-31")
    assert {i.id for i in found} == {i.id for i in a}


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_tiles": 0}, "n_tiles"), ({"n_tiles": 9}, "n_tiles"), ({"size": 15}, "size"),
     ({"size": 4096}, "size"), ({"agronomic_year": 1990}, "agronomic_year")],
)
def test_sample_bad_input(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(DataError, match=match):
        generate_sentinel2_samples(tmp_path, register=False, **kwargs)


# ---------------------------------------------------------------- pure compositing


def _random_cube(seed: int, n_times: int, *, year: int = 2023) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    start = np.datetime64(f"{year}-08-20")
    times = np.sort(start + rng.choice(np.arange(0, 390), n_times, replace=False).astype("timedelta64[D]"))
    data = rng.random((n_times, 3, 6, 5)).astype(np.float32)
    data[rng.random(data.shape[:1] + (1,) + data.shape[2:]).repeat(3, 1) < 0.45] = np.nan
    return xr.DataArray(data, dims=("time", "band", "y", "x"),
                        coords={"time": times, "band": ["B04", "B08", "B11"], "y": np.arange(6.0), "x": np.arange(5.0)})


def test_composite_equals_numpy_nanmedian_per_month() -> None:
    cube = _random_cube(0, 70)
    comp = monthly_composite(cube, agronomic_year=2023, fill=False, chunk=4).compute()
    months = month_index(cube["time"].values, agronomic_year=2023)
    assert (months == -1).any()  # some dates fall outside the year and are ignored
    for m in range(12):
        sel = cube.values[months == m]
        expected = np.nanmedian(sel, axis=0) if len(sel) else np.full(sel.shape[1:], np.nan)
        np.testing.assert_array_equal(comp["reflectance"].values[m], expected.astype(np.float32))
        np.testing.assert_array_equal(comp["valid_count"].values[m], np.isfinite(sel[:, 0]).sum(axis=0))
    assert list(comp["month"].values) == list(agronomic_months(2023))
    for k in (0, 1, 2, 7, 30):
        x = np.random.default_rng(k).random((k, 4, 9)).astype(np.float32)
        x[x < 0.3] = np.nan
        ref = np.nanmedian(x, axis=0) if k else np.full((4, 9), np.nan)
        np.testing.assert_array_equal(nanmedian_axis0(x), ref.astype(np.float32))


def test_gap_filling_interpolates_and_flags() -> None:
    times = np.array(["2023-09-10", "2023-12-05", "2024-08-03"], dtype="datetime64[ns]")
    data = np.array([1.0, 4.0, 2.0], dtype=np.float32).reshape(3, 1, 1, 1)
    cube = xr.DataArray(data, dims=("time", "band", "y", "x"), coords={"time": times, "band": ["B04"]})
    comp = monthly_composite(cube, agronomic_year=2023).compute()
    series = comp["reflectance"].values[:, 0, 0, 0]
    np.testing.assert_allclose(series[:4], [1, 2, 3, 4])  # Sep..Dec: linear between Sep and Dec
    np.testing.assert_allclose(series[11], 2.0)
    assert comp["filled"].values[:, 0, 0].tolist() == [m not in (0, 3, 11) for m in range(12)]
    assert comp["valid_count"].values[:, 0, 0].tolist() == [1 if m in (0, 3, 11) else 0 for m in range(12)]


def _synthetic_cube(scl: np.ndarray, dn: np.ndarray, times: np.ndarray) -> xr.Dataset:
    return xr.Dataset(
        {"dn": (("time", "band", "y", "x"), dn), "scl": (("time", "y", "x"), scl),
         "scale": ("time", np.full(len(times), 1e-4, np.float32)), "offset": ("time", np.full(len(times), -0.1, np.float32))},
        coords={"time": times, "band": ["B04", "B08"], "y": np.arange(scl.shape[1]) * -10.0, "x": np.arange(scl.shape[2]) * 10.0},
    )


def test_cloud_masked_values_never_enter_a_composite() -> None:
    rng = np.random.default_rng(1)
    n = 40
    times = np.datetime64("2023-09-02") + np.sort(rng.choice(360, n, replace=False)).astype("timedelta64[D]")
    scl = rng.choice([4, 5, 0, 1, 3, 8, 9, 10], size=(n, 8, 8)).astype(np.uint8)
    dn = rng.integers(1000, 4000, size=(n, 2, 8, 8)).astype(np.uint16)
    poison = np.isin(scl, (0, 1, 3, 8, 9, 10))
    dn[np.repeat(poison[:, None], 2, 1)] = 60000  # reflectance 5.9 where masked
    comp = monthly_composite(mask_cube(_synthetic_cube(scl, dn, times)), agronomic_year=2023).compute()
    values = comp["reflectance"].values
    assert np.nanmax(values) < 0.4 and np.isfinite(values).any()
    assert (comp["valid_count"].values.sum(axis=0) == (~poison).sum(axis=0)).all()
    # with snow allowed as invalid too, snow pixels drop out; dilation grows the mask
    scl2 = np.full((1, 9, 9), 4, np.uint8)
    scl2[0, 4, 4] = 9
    assert valid_mask(scl2).sum() == 80 and valid_mask(scl2, dilation=1).sum() == 72
    assert valid_mask(np.array([11, 2]), invalid=invalid_classes(mask_snow=True, mask_dark=True)).tolist() == [False, False]
    # the lazy (Dask) path with dilation: a cloud pixel masks its 8 neighbours too
    times2 = np.array(["2023-10-01", "2023-10-11"], dtype="datetime64[ns]")
    cube2 = _synthetic_cube(np.concatenate([scl2, np.full((1, 9, 9), 4, np.uint8)]),
                            np.full((2, 2, 9, 9), 2000, np.uint16), times2)
    masked = mask_cube(cube2, dilation=1).values
    assert np.isnan(masked[0, :, 3:6, 3:6]).all() and np.isfinite(masked[0, :, :3]).all()
    assert np.isfinite(masked[1]).all()
    with pytest.raises(DataError, match="SCL class"):
        invalid_classes(extra=[12])


def test_year_without_valid_data_is_an_error() -> None:
    times = np.array(["2023-10-01", "2024-02-01"], dtype="datetime64[ns]")
    cube = _synthetic_cube(np.full((2, 4, 4), 9, np.uint8), np.full((2, 2, 4, 4), 2000, np.uint16), times)
    comp = monthly_composite(mask_cube(cube), agronomic_year=2023)
    with pytest.raises(DataError, match="no valid observation"):
        check_has_valid(comp, name="tile X")
    with pytest.raises(DataError, match="no acquisition in agronomic year 2019"):
        monthly_composite(mask_cube(cube), agronomic_year=2019)
    with pytest.raises(DataError, match="dims"):
        monthly_composite(cube["dn"].transpose("band", "time", "y", "x"), agronomic_year=2023)


# ---------------------------------------------------------------- tiles end to end


def test_unequal_tile_samplings_give_identical_shapes(sample: dict[str, Any], composites: dict[str, str]) -> None:
    assert set(composites) == set(sample["tiles"])
    shapes, n_acq = set(), set()
    for tile, url in composites.items():
        ds = storage.open_zarr(url)
        shapes.add(ds["reflectance"].shape)
        n_acq.add(ds.attrs["n_acquisitions"])
        assert ds.attrs["tile"] == tile and ds.attrs["crs"] == "EPSG:32633"
        assert list(ds["band"].values) == list(BANDS)
        assert ds["valid_count"].sum() > 0
        v = ndvi(ds)
        amplitude = float(np.nanmedian((v.max("month") - v.min("month")).values))
        assert float(v.mean(("y", "x")).max()) > 0.4 and amplitude > 0.3, amplitude  # a growing season shows up
    assert shapes == {(12, 10, 32, 32)}
    assert len(n_acq) > 1


def test_fully_cloudy_month_is_filled_and_flagged(sample: dict[str, Any], composites: dict[str, str]) -> None:
    ds = storage.open_zarr(composites["33TVM"])  # January of this tile is fully cloudy by construction
    jan = 4
    assert int(ds["valid_count"][jan].max()) == 0
    assert bool((ds["filled"][jan] == 1).all())
    assert bool(np.isfinite(ds["reflectance"][jan]).all())
    # the composite equals a straightforward masked nan-median on the loaded cube
    cube = load_cube(sample["tiles"]["33TVM"], chunk=32)
    refl = mask_cube(cube).values
    months = month_index(cube["time"].values, agronomic_year=2023)
    sep = np.nanmedian(refl[months == 0], axis=0)
    got = ds["reflectance"][0].values
    has = ds["valid_count"][0].values > 0
    np.testing.assert_array_equal(got[:, has], sep[:, has])


def test_load_cube_bad_inputs(sample: dict[str, Any], tmp_path: Path) -> None:
    items = [i.clone() for i in sample["tiles"]["33TVM"][:3]]
    other_crs = items[1].clone()
    for asset in other_crs.assets.values():
        asset.extra_fields["proj:code"] = "EPSG:32632"
    other_crs.properties["proj:code"] = "EPSG:32632"
    with pytest.raises(DataError, match="different CRS"):
        load_cube([items[0], other_crs])
    coarse = items[1].clone()
    coarse.assets = {k.replace("_10m", "_20m"): v for k, v in coarse.assets.items()}
    for v in coarse.assets.values():
        v.extra_fields["proj:transform"] = [20.0, 0, 460000.0, 0, -20.0, 5110000.0]
    with pytest.raises(DataError, match="different resolutions"):
        load_cube([items[0], coarse])
    no_scl = items[2].clone()
    del no_scl.assets["SCL_20m"]
    with pytest.raises(DataError, match="no asset for band 'SCL'"):
        load_cube([items[0], no_scl])
    with pytest.raises(DataError, match="no items"):
        load_cube([])
    with pytest.raises(DataError, match="no valid observation"):
        composite_tile(items, tmp_path / "x.zarr", agronomic_year=2023, invalid=range(12))
    assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(DataError, match="no acquisition"):
        composite_tile(items, tmp_path / "y.zarr", agronomic_year=2020)


def test_composite_from_and_to_s3(s3_bucket: str, s3_server: dict[str, Any]) -> None:
    opts = s3_server["storage_options"]
    items = generate_sentinel2_samples(s3_bucket, n_tiles=1, size=16, seed=5, register=False, storage_options=opts)
    assert items[0].assets["B04_10m"].href.startswith(s3_bucket + "/sentinel2/33TVM/")
    out = composite_tile(items[:8], f"{s3_bucket}/composites/33TVM.zarr", agronomic_year=2023, chunk=16,
                         storage_options=opts)
    ds = storage.open_zarr(out, storage_options=opts)
    assert ds["reflectance"].shape == (12, 10, 16, 16)
    assert int(ds["valid_count"].sum()) > 0


def test_cli_samples_and_composite(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json

    from workbench.sentinel2.cli import register

    parser = argparse.ArgumentParser(prog="workbench")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["s2", "samples", "workbench-data", "--tiles", "1", "--size", "16"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tiles"] == ["MGRS-33TVM"] and printed["items"] == len(_search_all()) > 10
    args = parser.parse_args(["s2", "composite", "out", "--bbox", "14", "45.5", "16", "47", "--year", "2023",
                              "--chunk", "16"])
    assert args.func(args) == 0
    paths = json.loads(capsys.readouterr().out)
    assert list(paths) == ["33TVM"] and storage.open_zarr(paths["33TVM"])["reflectance"].shape == (12, 10, 16, 16)
    args = parser.parse_args(["s2", "composite", "out", "--year", "2023"])
    with pytest.raises(DataError, match="--items"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["s2", "composite", "out"])  # --year is required


def _search_all() -> list[pystac.Item]:
    from workbench.catalog import search

    return search("sentinel-2-l2a", [14.0, 45.5, 16.0, 47.0], "2023-09-01", "2024-08-31")


def test_insitu_points_lie_in_their_parcels_and_bad_input(sample: dict[str, Any]) -> None:
    import geopandas as gpd

    from workbench.samples.insitu import CROP_TO_LUCAS, generate_insitu_points

    parcels = gpd.read_parquet(sample_paths(sample["root"])["parcels"])
    points = generate_insitu_points(parcels, fraction=1.0, error_rate=0.0, seed=1).to_crs(parcels.crs)
    joined = points.merge(parcels[["parcel_id", "crop_name", "geometry"]], on="parcel_id", suffixes=("", "_parcel"))
    assert len(joined) == len(points) > 0.8 * len(parcels)
    assert all(poly.contains(pt) for pt, poly in zip(joined.geometry, joined["geometry_parcel"]))
    assert (joined["lucas_code"] == joined["crop_name"].map(CROP_TO_LUCAS)).all()  # no survey error asked for
    # points are near the border (the road side), not in the middle of the field
    assert (joined.geometry.distance(joined["geometry_parcel"].boundary) <= 15.0 + 1e-6).all()
    with pytest.raises(DataError, match="projected"):
        generate_insitu_points(parcels.to_crs(4326))
    with pytest.raises(DataError, match="crop_name"):
        generate_insitu_points(parcels.drop(columns="crop_name"))
    with pytest.raises(DataError, match="fraction"):
        generate_insitu_points(parcels, fraction=0)
