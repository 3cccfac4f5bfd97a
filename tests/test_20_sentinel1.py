"""Sentinel-1 preprocessing: calibration maths on the real LUTs, geolocation, filters, SAFE reading, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from workbench.errors import DataError
from workbench.samples.sarsen_assets import find_grd_safe
from workbench.sentinel1 import (
    Window,
    azimuth_noise,
    boxcar,
    dn_from_sigma0,
    open_cube,
    open_safe,
    preprocess,
    read_metadata,
    read_window,
    sigma0_db,
    write_cube,
)


@pytest.fixture(scope="module")
def real_safe() -> Path:
    try:
        return find_grd_safe()
    except DataError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def real_meta(real_safe: Path):
    return read_metadata(open_safe(str(real_safe), require_measurement=False), "VV")


@pytest.fixture(scope="module")
def scene(real_safe: Path, tmp_path_factory: pytest.TempPathFactory):
    from workbench.samples.sentinel1 import build_sample_scene

    out = tmp_path_factory.mktemp("s1")
    return build_sample_scene(out, seed=3, size=512, origin=(8192, 8704), register=False)


def _copy(scene, tmp_path: Path) -> Path:
    target = tmp_path / scene.safe.name
    shutil.copytree(scene.safe, target)
    return target


# --- calibration maths on the real LUTs -------------------------------------------------


def test_sigma0_round_trip_through_real_luts(real_meta) -> None:
    """DN built from known σ⁰ through the real sigmaNought and noise LUTs gives σ⁰ back within 0.01 dB."""
    rng = np.random.default_rng(0)
    rows = np.arange(8000, 8300, dtype=float)
    cols = np.arange(8700, 9100, dtype=float)  # crosses the IW1/IW2 boundary at pixel 8889/8890
    a = real_meta.sigma_nought.at(rows, cols)
    noise = real_meta.noise_range.at(rows, cols) * azimuth_noise(real_meta.noise_azimuth, rows, cols)
    truth_db = rng.uniform(-30.0, -3.0, size=a.shape).astype(np.float32)
    dn = dn_from_sigma0(10 ** (truth_db / 10), a, noise)
    back = sigma0_db(dn, a, noise)
    assert np.abs(back - truth_db).max() < 0.01
    # the noise matters: without removing it the same DN read brighter than the truth
    assert (sigma0_db(dn, a, None) - truth_db).mean() > 0.5


def test_luts_equal_annotation_at_their_nodes(real_meta, real_safe: Path) -> None:
    """Bilinear interpolation returns the LUT values themselves at the LUT nodes."""
    from xarray_sentinel import sentinel1 as xs

    cal_file = next((real_safe / "annotation" / "calibration").glob("calibration-*.xml"))
    cal = xs.open_calibration_dataset(cal_file, attrs={})
    got = real_meta.sigma_nought.at(cal.line.values.astype(float), cal.pixel.values.astype(float))
    np.testing.assert_allclose(got, cal.sigmaNought.values, rtol=1e-6)


def test_incidence_angle_equals_annotation_at_grid_nodes(real_meta, real_safe: Path) -> None:
    from xarray_sentinel import sentinel1 as xs

    ann = next((real_safe / "annotation").glob("s1?-iw-grd-vv-*.xml"))
    gcp = xs.open_gcp_dataset(ann, attrs={})
    got = real_meta.incidence.at(gcp.line.values.astype(float), gcp.pixel.values.astype(float))
    np.testing.assert_allclose(got, gcp.incidenceAngle.values, atol=1e-4)
    assert 29.0 < got.min() < got.max() < 47.0


def test_azimuth_noise_blocks_follow_sub_swaths(real_meta) -> None:
    """Each IW sub-swath has its own azimuth noise vector; the boundary pixel switches vectors."""
    blocks = real_meta.noise_azimuth
    assert [b.first_pixel for b in blocks] == [0, 8890, 17701]
    rows = np.array([158.0, 5000.0])
    field = azimuth_noise(blocks, rows, np.array([8889.0, 8890.0]))
    np.testing.assert_allclose(field[:, 0], np.interp(rows, blocks[0].lines, blocks[0].lut), rtol=1e-6)
    np.testing.assert_allclose(field[:, 1], np.interp(rows, blocks[1].lines, blocks[1].lut), rtol=1e-6)


def test_boxcar_equals_scipy_uniform_filter() -> None:
    rng = np.random.default_rng(1)
    arr = rng.gamma(4.4, 1 / 4.4, size=(97, 83)).astype(np.float32)
    got = boxcar(da.from_array(arr, chunks=(20, 30)), 3).compute()
    np.testing.assert_allclose(got, ndimage.uniform_filter(arr, size=3, mode="nearest"), rtol=1e-5)
    got5 = boxcar(da.from_array(arr, chunks=(16, 16)), 5).compute()
    np.testing.assert_allclose(got5, ndimage.uniform_filter(arr, size=5, mode="nearest"), rtol=1e-5)
    with pytest.raises(DataError, match="odd"):
        boxcar(da.from_array(arr), 4)


# --- the chunked pipeline ------------------------------------------------------------------


def test_preprocess_equals_direct_calibration(scene) -> None:
    """With no multilook or filter, the chunked cube equals the pure functions on the raw window."""
    win = Window(scene.window.row + 100, scene.window.col + 60, 150, 130)
    cube = preprocess(scene.safe, window=win, multilook=1, boxcar_size=1, chunk=64)
    assert cube["sar"].data.chunks[0] == (64, 64, 22)  # lazy, chunked: never a whole band
    product = open_safe(str(scene.safe))
    for i, pol in enumerate(("HH", "HV")):
        meta = read_metadata(product, pol)
        dn = read_window(product.pol(pol).measurement, win)
        rows = np.arange(win.row, win.row + win.height, dtype=float)
        cols = np.arange(win.col, win.col + win.width, dtype=float)
        noise = meta.noise_range.at(rows, cols) * azimuth_noise(meta.noise_azimuth, rows, cols)
        expected = sigma0_db(dn, meta.sigma_nought.at(rows, cols), noise)
        np.testing.assert_allclose(cube["sar"].values[..., i], expected, atol=1e-4)


def test_cube_incidence_equals_annotation_at_grid_node(scene, real_meta) -> None:
    """A window around geolocation node (line 8020, pixel 7836): the cube's incidence there is the node's."""
    cube = preprocess(scene.safe, window=Window(8016, 7832, 8, 8), multilook=1, boxcar_size=1)
    node_line, node_pixel = 8020, 7836
    li = list(real_meta.incidence.lines).index(node_line)
    pi = list(real_meta.incidence.pixels).index(node_pixel)
    value = cube["sar"].sel(band="incidence").values[4, 4]
    assert cube["line"].values[4] == node_line and cube["pixel"].values[4] == node_pixel
    assert value == pytest.approx(real_meta.incidence.values[li, pi], abs=1e-4)
    lat = cube["latitude"].values[4, 4]
    assert lat == pytest.approx(real_meta.latitude.values[li, pi], abs=1e-5)


def test_preprocess_multilook_boxcar_and_zarr(scene, tmp_path: Path) -> None:
    import geopandas as gpd

    from workbench.datasets.patches import label_raster
    from workbench.samples.sentinel1 import SIGMA0_MODELS

    cube = preprocess(scene.safe, window=scene.window, chunk=64)
    assert cube.sizes["y"] == 128 and cube.sizes["x"] == 128
    assert list(cube["band"].values) == ["HH_db", "HV_db", "incidence"]
    assert cube.attrs["pixel_spacing_m"] == 40.0
    url = write_cube(cube, tmp_path / "cube.zarr")
    back = open_cube(url)
    np.testing.assert_allclose(back["sar"].values, cube["sar"].values)
    labels = label_raster(back, gpd.read_parquet(scene.chart))
    hh = back["sar"].values[..., 0]
    inc = back["sar"].values[..., 2]
    level = labels == 3
    assert level.sum() > 50
    m = SIGMA0_MODELS["level_first_year_ice"]
    expected = m.hh_db30 + m.hh_slope * (inc[level].mean() - 30)
    assert abs(np.median(hh[level]) - expected) < 1.0  # the simulated class level is recovered


def test_land_mask(scene) -> None:
    import geopandas as gpd

    from workbench.sentinel1 import apply_land_mask

    cube = preprocess(scene.safe, window=scene.window, chunk=64).compute()
    chart = gpd.read_parquet(scene.chart)
    masked = apply_land_mask(cube, chart[chart["is_land"]])
    land = masked["land"].values
    assert 0 < land.mean() < 0.5
    assert np.isnan(masked["sar"].values[..., 0][land]).all()
    assert not np.isnan(masked["sar"].values[..., 2]).any()  # incidence is kept


def test_preprocess_from_s3(scene, s3_bucket: str, s3_server) -> None:
    from workbench import storage

    so = s3_server["storage_options"]
    fs, _ = storage.filesystem(s3_bucket, so)
    remote = f"{s3_bucket}/{scene.safe.name}"
    fs.put(str(scene.safe), remote.removeprefix("s3://"), recursive=True)
    win = Window(scene.window.row, scene.window.col, 128, 128)
    remote_cube = preprocess(remote, window=win, storage_options=so, chunk=16).compute()
    local_cube = preprocess(scene.safe, window=win, chunk=16).compute()
    np.testing.assert_allclose(remote_cube["sar"].values, local_cube["sar"].values)


# --- bad input -------------------------------------------------------------------------------


def test_missing_calibration_file(scene, tmp_path: Path) -> None:
    safe = _copy(scene, tmp_path)
    victim = next((safe / "annotation" / "calibration").glob("calibration-*-hv-*.xml"))
    victim.unlink()
    with pytest.raises(DataError, match=r"calibration file of polarisation HV is missing.*calibration-s1b-iw-grd-hv"):
        preprocess(safe, window=scene.window)


def test_missing_noise_file(scene, tmp_path: Path) -> None:
    safe = _copy(scene, tmp_path)
    next((safe / "annotation" / "calibration").glob("noise-*-hh-*.xml")).unlink()
    with pytest.raises(DataError, match=r"noise file of polarisation HH is missing"):
        open_safe(str(safe))


def test_polarisation_not_in_product(scene) -> None:
    with pytest.raises(DataError, match=r"polarisation 'VV' is not in product .*\['HH', 'HV'\]"):
        preprocess(scene.safe, polarisations=("VV", "VH"))


def test_truncated_xml_names_the_file(scene, tmp_path: Path) -> None:
    safe = _copy(scene, tmp_path)
    victim = next((safe / "annotation" / "calibration").glob("noise-*-hh-*.xml"))
    victim.write_bytes(victim.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"{victim.name} is not well-formed XML"):
        preprocess(safe, window=scene.window)


def test_empty_xml_names_the_file(scene, tmp_path: Path) -> None:
    safe = _copy(scene, tmp_path)
    victim = next((safe / "annotation").glob("s1b-iw-grd-hv-*.xml"))
    victim.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{victim.name} is empty"):
        preprocess(safe, window=scene.window)


def test_window_outside_image(scene) -> None:
    with pytest.raises(DataError, match=r"reaches outside measurement raster .*s1b-iw-grd-hh-.*\.tiff \(16705 lines"):
        preprocess(scene.safe, window=(16700, 0, 64, 64))
    with pytest.raises(DataError, match="window"):
        preprocess(scene.safe, window=(0, 0, -5, 4))
    with pytest.raises(DataError, match="reaches outside"):
        read_window(open_safe(str(scene.safe)).pol("HH").measurement, Window(0, 26100, 4, 4))


def test_not_a_safe(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_safe(str(tmp_path / "nothing.SAFE"))
    (tmp_path / "empty.SAFE").mkdir()
    with pytest.raises(DataError, match="not a Sentinel-1 GRD SAFE"):
        open_safe(str(tmp_path / "empty.SAFE"))


def test_bad_preprocess_arguments(scene) -> None:
    with pytest.raises(DataError, match="multilook"):
        preprocess(scene.safe, multilook=0)
    with pytest.raises(DataError, match="polarisations"):
        preprocess(scene.safe, polarisations=())


def test_missing_sarsen_cache(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="sarsen_assets"):
        find_grd_safe(tmp_path)


def test_sample_scene_is_registered_in_the_local_catalogue(real_safe: Path, project_dir: Path) -> None:
    import pystac

    from workbench.config import load_settings
    from workbench.samples.sentinel1 import COLLECTION_ID, build_sample_scene

    scene = build_sample_scene(seed=7, size=256)
    catalog = pystac.Catalog.from_file(str(load_settings().local_catalog_path))
    collection = catalog.get_child(COLLECTION_ID)
    assert collection is not None
    item = collection.get_item(scene.item_id)
    assert item is not None and item.properties["workbench:simulated"] is True
    assert item.properties["sar:polarizations"] == ["HH", "HV"]
    assert Path(item.assets["safe"].href) == scene.safe and Path(item.assets["ice-chart"].href).is_file()
    lon, lat = np.asarray(item.geometry["coordinates"][0]).T
    assert 13 < lon.mean() < 15 and 41 < lat.mean() < 43  # the real product's geolocation


def test_sample_scene_is_reproducible(real_safe: Path, tmp_path: Path) -> None:
    from workbench.samples.sentinel1 import build_sample_scene

    a = build_sample_scene(tmp_path / "a", seed=11, size=256, register=False)
    b = build_sample_scene(tmp_path / "b", seed=11, size=256, register=False)
    win = a.window
    hh_a = read_window(open_safe(str(a.safe)).pol("HH").measurement, win)
    hh_b = read_window(open_safe(str(b.safe)).pol("HH").measurement, win)
    np.testing.assert_array_equal(hh_a, hh_b)
    with pytest.raises(DataError, match="multiple of 256"):
        build_sample_scene(tmp_path / "c", size=300, register=False)


def test_sigma0_without_noise_equals_xarray_sentinel(real_meta, real_safe: Path) -> None:
    """Without noise removal our calibration equals xarray-sentinel's calibrate_intensity."""
    import xarray as xr
    from xarray_sentinel import sentinel1 as xs

    cal = xs.open_calibration_dataset(next((real_safe / "annotation" / "calibration").glob("calibration-*.xml")), attrs={})
    rows = np.arange(3000, 3064)
    cols = np.arange(8860, 8924)
    dn = np.random.default_rng(2).uniform(20, 400, size=(64, 64)).astype(np.float32)
    expected = xs.calibrate_intensity(
        xr.DataArray(dn, dims=("line", "pixel"), coords={"line": rows, "pixel": cols}), cal.sigmaNought, as_db=True
    ).values
    got = sigma0_db(dn, real_meta.sigma_nought.at(rows.astype(float), cols.astype(float)), None)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_cli_preprocess(scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from workbench.sentinel1.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    w = scene.window
    args = parser.parse_args(["seaice", "preprocess", str(scene.safe), str(tmp_path / "c.zarr"),
                              "--window", str(w.row), str(w.col), "256", "256"])
    assert args.func(args) == 0
    assert open_cube(capsys.readouterr().out.strip()).sizes["y"] == 64
    args = parser.parse_args(["seaice", "preprocess", str(scene.safe), str(tmp_path / "d.zarr"), "--polarisations", "VV"])
    with pytest.raises(DataError, match="polarisation 'VV'"):
        args.func(args)
