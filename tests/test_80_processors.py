"""Processors end to end on the sample data: products, catalogue, GeoSPARQL store, semantic search;
embedded and remote (a real model server subprocess on loopback) give identical products."""

from __future__ import annotations

import os

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.servers.processes import (
    CROP_DATES,
    SEAICE_DATES,
    build_project,
    free_port,
    inner_bbox,
    project_env,
    start_server,
    stop_server,
)
from workbench.errors import DataError
from workbench.processors import InputError, get_processor, validate_inputs


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from workbench.samples.sarsen_assets import find_grd_safe

    try:
        find_grd_safe()
    except DataError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("processors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_PROJECT_DIR", str(root))
        mp.setenv("WORKBENCH_DASK_WORKERS", "1")
        mp.chdir(root)
        info = build_project(root)
        info["root"] = root
        yield info


@pytest.fixture(scope="module")
def serving(project: dict[str, Any]) -> Iterator[dict[str, str]]:
    """The model server of the serving layer (``workbench serve start``) with both tiny models, and a key."""
    from workbench.serving.auth import AuthStore
    from workbench.serving.repository import ServingConfig, ServingStore

    root = project["root"]
    key = AuthStore().create_project("tep", owner="alice")
    env = project_env(root)
    for name in ("seaice_tiny", "crop_tiny"):
        ServingStore().put(ServingConfig(name=name, project="tep", model_name=name, model_version=1, status="running"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(["workbench.cli", "serve", "start", "--port", str(port), "--no-inference-log"],
                        env=env, url=f"{url}/v1/models/seaice_tiny", log=root / "serving.log", cwd=root)
    try:
        import httpx

        for _ in range(200):  # the servings load their models after the server answers
            ok = all(httpx.get(f"{url}/v1/models/{n}", headers={"Authorization": f"ApiKey {key}"}).status_code == 200
                     for n in ("seaice_tiny", "crop_tiny"))
            if ok:
                break
            import time

            time.sleep(0.2)
        yield {"url": url, "key": key}
    finally:
        stop_server(proc)


def _seaice_raw(project: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"region": {"bbox": inner_bbox(project["scene_bbox"], 0.6)}, "start": SEAICE_DATES[0],
            "end": SEAICE_DATES[1], "model": project["seaice"], **extra}


def _crop_raw(project: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"region": {"bbox": inner_bbox(project["tile_bbox"], 0.8)}, "start": CROP_DATES[0],
            "end": CROP_DATES[1], "model": project["crop"], **extra}


def _run(pid: str, raw: dict[str, Any], out: Path) -> tuple[Any, list[tuple[float, str]]]:
    from workbench.processors.models import registry_lookup

    seen: list[tuple[float, str]] = []
    inputs = validate_inputs(pid, raw, model_lookup=registry_lookup)
    product = get_processor(pid).execute(inputs, out_dir=out, progress=lambda f, m: seen.append((f, m)))
    return product, seen


def _pixels(path: str) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def seaice_embedded(project: dict[str, Any]) -> tuple[Any, list[tuple[float, str]]]:
    return _run("sea_ice_chart", _seaice_raw(project), project["root"] / "out")


def test_sea_ice_chart_product_files(seaice_embedded: Any, project: dict[str, Any]) -> None:
    import geopandas as gpd
    import rasterio

    product, seen = seaice_embedded
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) > 5
    assert any("classify s1-sample-0" in m for _, m in seen)
    with rasterio.open(product.cog) as src:
        assert src.dtypes == ("uint8",) and src.nodata == 255
        assert src.overviews(1), "the COG has overviews"
        cmap = src.colormap(1)
        assert cmap[0][:3] == tuple(int(product.class_colors[0][i:i + 2], 16) for i in (1, 3, 5))
        assert src.crs.to_epsg() == 4326
        data = src.read(1)
        assert set(np.unique(data)) <= {0, 1, 255} and (data != 255).sum() > 1000
    assert product.class_names == ["water", "ice"]
    assert sum(product.class_pixels.values()) == int((data != 255).sum())
    polygons = gpd.read_parquet(product.polygons)
    assert {"class_id", "class_name", "image_id"} <= set(polygons.columns) and len(polygons) >= 1
    assert set(polygons["image_id"]) == {"s1-sample-0"}
    w, s, e, n = inner_bbox(project["scene_bbox"], 0.6)
    b = polygons.total_bounds
    assert b[0] >= w - 1e-3 and b[1] >= s - 1e-3 and b[2] <= e + 1e-3 and b[3] <= n + 1e-3
    assert Path(product.quicklook).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = Path(product.map_html).read_text()
    assert "leaflet" in html.lower() and "water" in html and "openstreetmap" not in html.lower()


def test_sea_ice_chart_stac_item_has_provenance_and_is_searchable(seaice_embedded: Any,
                                                                  project: dict[str, Any]) -> None:
    import pystac

    from workbench.catalog import search

    product, _ = seaice_embedded
    item = pystac.Item.from_file(product.stac_item)
    props = item.properties
    assert any("processing" in e for e in item.stac_extensions)
    assert props["workbench:processor"] == "sea_ice_chart" and props["workbench:processor_version"] == "1.0.0"
    assert props["workbench:model"] == {"mode": "embedded", "name": "seaice_tiny", "version": 1,
                                        "serving_url": None, "serving_name": None}
    assert props["workbench:input_items"] == ["s1-sample-0"]
    assert props["workbench:parameters"]["options"]["batch_size"] == 256
    assert "api_key" not in json.dumps(props)
    assert props["processing:lineage"].startswith("sea_ice_chart 1.0.0")
    assert {"cog", "polygons", "thumbnail", "map", "rdf"} <= set(item.assets)
    found = search("sea-ice-charts", project["scene_bbox"], "2021-12-01", "2021-12-31")
    assert product.id in [i.id for i in found]
    cli = subprocess.run([sys.executable, "-m", "workbench.cli", "search", "sea-ice-charts", "--bbox",
                          *map(str, project["scene_bbox"]), "--start", "2021-12-01", "--end", "2021-12-31"],
                         env=project_env(project["root"]), cwd=project["root"], capture_output=True, text=True)
    assert cli.returncode == 0 and product.id in cli.stdout


def test_polygons_are_in_the_geosparql_store_and_found_semantically(seaice_embedded: Any,
                                                                      project: dict[str, Any]) -> None:
    from workbench.catalog.semantic import semantic_search
    from workbench.processors.products import with_product_store

    product, _ = seaice_embedded
    query = ("PREFIX polar: <http://extremeearth.eu/ontology/polar#>\n"
             f"SELECT ?obs ?img WHERE {{ ?obs polar:hasImageID ?img . FILTER(STRSTARTS(STR(?obs), "
             f"\"http://extremeearth.eu/resource/ice/{product.id}_\")) }}")
    rows = with_product_store(lambda store: [{k: str(getattr(v, "value", v)) for k, v in r.items()}
                                             for r in store.select(query)])
    assert rows and {str(getattr(r["img"], "value", r["img"])) for r in rows} == {"s1-sample-0"}
    shown = [n for n, c in product.class_pixels.items() if c > 0]
    for name in shown:
        hits = semantic_search(name, region={"bbox": project["scene_bbox"]})
        assert [h.image_id for h in hits] == ["s1-sample-0"]
        assert hits[0].item is not None and hits[0].collection == "sentinel-1-grd"
        assert hits[0].observations >= 1
    assert semantic_search(shown[0], region={"bbox": [0.0, 0.0, 1.0, 1.0]}) == []
    assert semantic_search(shown[0], region={"bbox": project["scene_bbox"]}, start="2022-01-01") == []
    assert semantic_search(shown[0], region={"bbox": project["scene_bbox"]}, start="2021-12-01",
                           end="2021-12-31")
    with pytest.raises(InputError, match="did you mean 'deformed_ice'") as info:
        semantic_search("deformd_ice", region={"bbox": project["scene_bbox"]})
    assert info.value.input == "class_name"
    with pytest.raises(InputError) as info:
        semantic_search("water", region={"bbox": [5, 5, 4, 6]})
    assert info.value.input == "region"


def test_blocks_on_the_cluster_equal_the_library_classification(project: dict[str, Any]) -> None:
    """The processor's self-contained blocks (halo, boxcar margin, edge padding) give exactly the labels of
    ``classify_scene`` on the same land- and region-masked cut of the scene's cube."""
    import shapely
    import xarray as xr

    from workbench.cluster import get_client
    from workbench.processors import sea_ice_chart as sic
    from workbench.processors.models import predictor, resolve_model
    from workbench.sentinel1 import apply_land_mask, classify_scene

    w, s, e, n = project["scene_bbox"]
    region = {"type": "Polygon", "coordinates": [[[w + (e - w) * 0.2, s + (n - s) * 0.1], [e - (e - w) * 0.1, s],
                                                  [e - (e - w) * 0.3, n - (n - s) * 0.2], [w, n], [w + (e - w) * 0.2,
                                                  s + (n - s) * 0.1]]]}
    inputs = validate_inputs("sea_ice_chart", _seaice_raw(project, region=region, options={"chunk": 32}))
    item = sic._scenes(inputs, "sentinel-1-grd", 1)[0]
    spec = resolve_model(inputs.model, mode="embedded")
    cube, lat, lon = sic._scene_cube(item, inputs.options)
    cut = sic._region_cut(lat, lon, inputs.region)
    assert cut is not None and cut != (0, cube.sizes["y"], 0, cube.sizes["x"])
    labels = sic._labels(item, cube, cut, spec, inputs, client=get_client(), progress=None)
    r0, r1, c0, c1 = cut
    masked = apply_land_mask(cube, sic._land(item, inputs.options)).isel(y=slice(r0, r1), x=slice(c0, c1))
    keep = xr.DataArray(shapely.contains_xy(inputs.region, lon[r0:r1, c0:c1], lat[r0:r1, c0:c1]), dims=("y", "x"))
    masked = masked.assign(sar=masked["sar"].where(keep).astype("float32"))
    reference = classify_scene(predictor(spec), masked, class_names=list(spec.class_names), chunk=32)
    assert labels.shape == reference.labels.shape and np.array_equal(labels, reference.labels.values)
    assert (labels == 255).any() and (labels != 255).any()


def test_region_without_scenes_is_an_input_error(project: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="no sentinel-1-grd scene") as info:
        _run("sea_ice_chart", _seaice_raw(project, region={"bbox": [100.0, 10.0, 100.1, 10.1]}),
             project["root"] / "none")
    assert info.value.input == "region"
    with pytest.raises(InputError, match="no sentinel-1-grd scene"):
        _run("sea_ice_chart", _seaice_raw(project, start="2020-01-01", end="2020-02-01"), project["root"] / "none")


def test_dismissing_through_progress_stops_the_run(project: dict[str, Any]) -> None:
    from workbench.processors._compute import Cancelled

    inputs = validate_inputs("sea_ice_chart", _seaice_raw(project, options={"chunk": 32}))

    def progress(fraction: float, message: str) -> None:
        if "classify" in message:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        get_processor("sea_ice_chart").execute(inputs, out_dir=project["root"] / "cancelled", progress=progress)
    assert not list((project["root"] / "cancelled").glob("*/*.tif"))


def test_exported_model_path_gives_the_same_chart(seaice_embedded: Any, project: dict[str, Any]) -> None:
    from workbench import registry

    exported = registry.export("seaice_tiny", 1, project["root"] / "export" / "seaice_tiny")
    product, _ = _run("sea_ice_chart", _seaice_raw(project, model={"path": str(exported)},
                                                  options={"publish": False}), project["root"] / "out-path")
    assert np.array_equal(_pixels(product.cog), _pixels(seaice_embedded[0].cog))


def test_sea_ice_chart_remote_equals_embedded(seaice_embedded: Any, serving: dict[str, str],
                                              project: dict[str, Any]) -> None:
    import geopandas as gpd
    import pystac

    remote, seen = _run("sea_ice_chart", _seaice_raw(project, mode="remote", serving_url=serving["url"],
                                                    api_key=serving["key"]), project["root"] / "out-remote")
    embedded = seaice_embedded[0]
    assert np.array_equal(_pixels(remote.cog), _pixels(embedded.cog))
    assert remote.class_pixels == embedded.class_pixels
    a, b = gpd.read_parquet(remote.polygons), gpd.read_parquet(embedded.polygons)
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=1e-9).all()
    model = pystac.Item.from_file(remote.stac_item).properties["workbench:model"]
    assert model == {"mode": "remote", "name": "seaice_tiny", "version": 1, "serving_url": serving["url"],
                     "serving_name": "seaice_tiny"}
    with pytest.raises(Exception, match="401|API key"):
        _run("sea_ice_chart", _seaice_raw(project, mode="remote", serving_url=serving["url"],
                                          api_key="wb_nope_notakey", options={"publish": False}),
             project["root"] / "out-bad")


def test_crop_type_map_remote_equals_embedded(serving: dict[str, str], project: dict[str, Any]) -> None:
    import geopandas as gpd
    import rasterio

    from workbench.catalog.semantic import semantic_search

    embedded, seen = _run("crop_type_map", _crop_raw(project), project["root"] / "crop")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    remote, _ = _run("crop_type_map", _crop_raw(project, mode="remote", serving_url=serving["url"],
                                                api_key=serving["key"]), project["root"] / "crop-remote")
    pixels = _pixels(embedded.cog)
    assert np.array_equal(_pixels(remote.cog), pixels) and (pixels != 255).sum() > 100
    with rasterio.open(embedded.cog) as src:
        assert src.crs.to_epsg() == 32633 and src.colormap(1)
    parcels = gpd.read_parquet(embedded.polygons)
    assert {"parcel_id", "predicted_name", "agreement", "image_id"} <= set(parcels.columns)
    assert len(parcels) > 3 and parcels["predicted_id"].ge(0).all()
    assert parcels["predicted_name"].tolist() == gpd.read_parquet(remote.polygons)["predicted_name"].tolist()
    assert set(parcels["image_id"]) <= set(project["tile_items"])
    crop = parcels["predicted_name"].iloc[0]
    hits = semantic_search(crop, region={"bbox": project["tile_bbox"]}, start=CROP_DATES[0], end=CROP_DATES[1])
    assert [h.image_id for h in hits] == sorted(set(parcels["image_id"]))
    assert hits[0].collection == "sentinel-2-l2a"


def test_cli_lists_describes_and_executes(project: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import main

    env = project_env(project["root"])
    listed = subprocess.run([sys.executable, "-m", "workbench.cli", "processes", "list"], env=env,
                            capture_output=True, text=True, check=True)
    assert "sea_ice_chart" in listed.stdout and "crop_type_map" in listed.stdout
    assert main(["processes", "describe", "crop_type_map"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["inputs"]["region"]["minOccurs"] == 1 and "schema" in described["outputs"]["product"]
    assert main(["processes", "describe", "sea_ice"]) == 2
    assert "did you mean 'sea_ice_chart'" in capsys.readouterr().err
    raw = _seaice_raw(project, options={"publish": False})
    assert main(["processes", "execute", "sea_ice_chart", "{not json"]) == 2
    assert "JSON" in capsys.readouterr().err
    assert main(["processes", "execute", "sea_ice_chart", "@/nonexistent/inputs.json"]) == 2
    assert "inputs file" in capsys.readouterr().err
    assert main(["processes", "execute", "sea_ice_chart", json.dumps({**raw, "start": "2021-02-30"})]) == 2
    assert "input 'start'" in capsys.readouterr().err
    assert main(["processes", "execute", "sea_ice_chart", json.dumps({**raw, "model": {"name": "nope"}})]) == 2
    err = capsys.readouterr().err
    assert "input 'model'" in err and "not found" in err
    inputs = project["root"] / "inputs.json"
    inputs.write_text(json.dumps(raw))
    assert main(["processes", "execute", "sea_ice_chart", f"@{inputs}", "--quiet",
                 "--out-dir", str(project["root"] / "cli-out")]) == 0
    product = json.loads(capsys.readouterr().out)
    assert Path(product["cog"]).is_file() and product["source_items"] == ["s1-sample-0"]


def test_run_processor_notebook_remote_and_a_bad_parameter(project: dict[str, Any], seaice_embedded: Any) -> None:
    """notebooks/08_run_processor.ipynb through papermill: a remote run from parameters with the model server the
    notebook starts itself (as the demo chain does), then a bad parameter."""
    import re

    import papermill

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "08_run_processor.ipynb"
    root = project["root"]
    params = {"processor": "sea_ice_chart", "bbox": inner_bbox(project["scene_bbox"], 0.6), "start": SEAICE_DATES[0],
              "end": SEAICE_DATES[1], "model": "seaice_tiny", "version": "1", "mode": "remote", "start_server": True,
              "options": {"serving_name": "seaice_notebook"}, "out_dir": str(root / "nb-out")}
    out = root / "run_processor.ipynb"
    papermill.execute_notebook(str(notebook), str(out), parameters=params, kernel_name="workbench", cwd=str(root),
                               progress_bar=False)
    assert not re.search(r"wb_[A-Za-z0-9]+_[A-Za-z0-9]{12,}", out.read_text()), "no API key in the notebook"
    products = list((root / "nb-out").glob("*/*.tif"))
    assert len(products) == 1 and np.array_equal(_pixels(str(products[0])), _pixels(seaice_embedded[0].cog))
    item = json.loads(next((root / "nb-out").glob("*/*_item.json")).read_text())
    assert item["properties"]["workbench:model"]["mode"] == "remote"
    assert item["properties"]["workbench:model"]["serving_name"] == "seaice_notebook"
    with pytest.raises(papermill.PapermillExecutionError, match="input 'region'"):
        papermill.execute_notebook(str(notebook), str(root / "bad.ipynb"), kernel_name="workbench", cwd=str(root),
                                   parameters={**params, "mode": "embedded", "bbox": [14.2, 41.7, 14.1, 41.8]},
                                   progress_bar=False)
