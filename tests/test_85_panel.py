"""The processor panel without a browser: its state refuses what the processors refuse, with the same
messages; its widgets are driven as a user would (fields, draw events, the Run button) against the real
processors — locally through the JobManager, and over HTTP through a real OGC API server subprocess."""

from __future__ import annotations

import os

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.panel import panel_project
from tests.servers.processes import (
    CROP_DATES,
    SEAICE_DATES,
    free_port,
    inner_bbox,
    project_env,
    start_server,
    stop_server,
)
from workbench.processors import InputError, validate_inputs
from workbench.ui.state import (
    LATEST,
    JobRow,
    PanelState,
    bbox_fields,
    default_model,
    graticule,
    jobs_table_html,
    legend_of,
    parse_version,
    png_data_url,
    region_bbox,
    region_from_bbox_fields,
    region_from_draw,
    region_geojson,
    version_choices,
    view_of_bbox,
)

pytest.importorskip("ipyleaflet")

_GOOD = {"start": "2021-12-01", "end": "2021-12-31", "model": {"name": "seaice_tiny", "version": 1}}
_BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}


def _draw(geometry: dict[str, Any]) -> dict[str, Any]:
    """What ipyleaflet's DrawControl hands to ``on_draw`` callbacks."""
    return {"type": "Feature", "properties": {"style": {"color": "#d62728"}}, "geometry": geometry}


def _message(raw: dict[str, Any], processor: str = "sea_ice_chart") -> str:
    with pytest.raises(InputError) as info:
        validate_inputs(processor, raw)
    return str(info.value)


# --- the state and its pure functions ----------------------------------------------------------------


def test_bbox_fields_become_the_raw_region() -> None:
    assert region_from_bbox_fields("10", " 60.5", "20", "70") == {"bbox": [10, 60.5, 20, 70]}
    assert region_from_bbox_fields("", "", " ", "") is None
    assert region_from_bbox_fields("abc", "1", "2", "3") == {"bbox": ["abc", 1, 2, 3]}
    assert region_from_bbox_fields(1.5, 2, 3, 4) == {"bbox": [1.5, 2, 3, 4]}
    assert bbox_fields((10.123456789, -1, 2, 3)) == ("10.12346", "-1", "2", "3")
    assert bbox_fields(None) == ("", "", "", "")


def test_a_drawn_shape_becomes_the_raw_region() -> None:
    rect = {"type": "Polygon", "coordinates": [[[10, 60], [20, 60], [20, 70], [10, 70], [10, 60]]]}
    assert region_from_draw(_draw(rect)) == rect
    assert region_from_draw(rect) == rect
    assert region_bbox(region_from_draw(_draw(rect))) == (10.0, 60.0, 20.0, 70.0)
    with pytest.raises(InputError, match="no geometry"):
        region_from_draw({"type": "Feature", "properties": {}})
    with pytest.raises(InputError, match="not a GeoJSON object"):
        region_from_draw("POLYGON ((0 0, 1 0, 1 1, 0 0))")  # type: ignore[arg-type]


@pytest.mark.parametrize("raw_region", [
    {"bbox": [20, 60, 10, 70]},                      # west > east
    {"bbox": [10, 60, 20, 95]},                      # latitude out of range
    {"bbox": ["abc", 60, 20, 70]},                   # a field that is no number
    {"bbox": [10, 60, 20]},                          # three numbers
    _BOWTIE,                                         # self-intersecting polygon
    {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},  # a drawn line
])
def test_panel_state_refuses_bad_regions_with_the_processors_messages(raw_region: dict[str, Any]) -> None:
    state = PanelState(region=raw_region, start=dt.date(2021, 12, 1), end=dt.date(2021, 12, 31),
                       model_name="seaice_tiny", model_version="1")
    error = state.error()
    assert error is not None and error.input == "region"
    assert str(error) == _message({"region": raw_region, **_GOOD})


def test_panel_state_refuses_bad_dates_models_and_modes_like_the_api() -> None:
    base = PanelState(region={"bbox": [10, 60, 20, 70]}, start="2021-12-01", end="2021-12-31",
                      model_name="seaice_tiny", model_version="1")
    assert base.error() is None
    assert base.to_raw() == {"region": {"bbox": [10, 60, 20, 70]}, "mode": "embedded", **_GOOD}
    cases = [
        (base.replace(end=dt.date(2021, 11, 1)), "end"),
        (base.replace(start=None), "start"),
        (base.replace(start="01/12/2021"), "start"),
        (base.replace(model_name=""), "model"),
        (base.replace(model_version="not an alias!"), "model"),
        (base.replace(model_version="0"), "model"),
        (base.replace(mode="remote"), "serving_url"),
        (base.replace(mode="remote", serving_url="http://127.0.0.1:8500"), "api_key"),
        (base.replace(mode="remote", serving_url="ftp://x"), "serving_url"),
        (base.replace(mode="hybrid"), "mode"),
        (base.replace(options={"stride": -1}), "options.stride"),
        (base.replace(options={"strid": 4}), "options.strid"),
        (base.replace(region=None), "region"),
        (base.replace(processor="sea_ice_chartt"), "processor"),
    ]
    for state, name in cases:
        error = state.error()
        assert error is not None and error.input == name, (state, error)
        assert str(error) == _message(state.to_raw(), state.processor)
    remote = base.replace(mode="remote", serving_url=" http://127.0.0.1:8500/ ", api_key="k")
    assert remote.validate().serving_url == "http://127.0.0.1:8500"
    assert "api_key" not in remote.to_raw(secrets=False) and "k" not in repr(remote)


def test_model_versions_and_defaults() -> None:
    class V:
        def __init__(self, version: int, aliases: list[str]) -> None:
            self.version, self.aliases = version, aliases

    assert version_choices([V(1, []), V(3, ["champion"]), V(2, ["challenger"])]) == \
        [LATEST, "challenger", "champion", "3", "2", "1"]
    assert [parse_version(v) for v in (None, "", LATEST, "3", "v4", 5, "champion")] == \
        [None, None, None, 3, 4, 5, "champion"]
    assert PanelState(model_name="m", model_version="champion").model_raw() == {"name": "m", "version": "champion"}
    assert PanelState(model_name="m", model_version=LATEST).model_raw() == {"name": "m"}
    assert PanelState(model_path="/x/model", model_name="m").model_raw() == {"path": "/x/model"}
    names = ["crop_tiny", "seaice_tiny"]
    assert default_model("sea_ice_chart", names) == "seaice_tiny"
    assert default_model("crop_type_map", names) == "crop_tiny"
    assert default_model("sea_ice_chart", ["other"]) == ""


def test_products_jobs_and_map_helpers() -> None:
    legend = legend_of({"class_names": ["water", "ice", "x"], "class_colors": ["#000001", "#000002"]})
    assert legend == {"water": "#000001", "ice": "#000002", "x": "#888888"}
    with pytest.raises(ValueError, match="not a PNG"):
        png_data_url(b"GIF89a....")
    assert png_data_url(b"\x89PNG\r\n\x1a\nrest").startswith("data:image/png;base64,iVBORw0KGg")
    rows = [JobRow("a" * 32, "sea_ice_chart", "failed", 40, "failed: <boom>", "2026-12-01T10:00:00Z", error="<boom>"),
            JobRow("b" * 32, "sea_ice_chart", "successful", 100, "finished", "2026-12-01T09:00:00Z")]
    table = jobs_table_html(rows)
    assert table.index("wb-job-failed") < table.index("wb-job-successful")
    assert "&lt;boom&gt;" in table and "<boom>" not in table
    assert "No jobs" in jobs_table_html([])
    assert len(re.findall("<tr class", jobs_table_html(rows * 30, limit=20))) == 20
    info = {"jobID": "j1", "processID": "p", "status": "failed", "progress": 10, "message": "m",
            "exception": {"type": "X", "detail": "went wrong"}}
    assert JobRow.from_status_info(info).error == "went wrong" and JobRow.from_status_info(info).done
    assert region_geojson(None)["features"] == [] and region_geojson(_BOWTIE)["features"] == []
    assert len(region_geojson({"bbox": [1, 2, 3, 4]})["features"]) == 1
    grid = graticule(30)
    assert {f["properties"]["kind"] for f in grid["features"]} == {"meridian", "parallel"}
    with pytest.raises(ValueError):
        graticule(0)
    (lat, lon), zoom = view_of_bbox((14.08, 41.74, 14.13, 41.78), width=680, height=500)
    assert abs(lon - 14.105) < 1e-9 and 41.74 < lat < 41.78 and 12 <= zoom <= 14
    assert view_of_bbox((-180, -85, 180, 85))[1] <= 1


# --- the panel's widgets without a project --------------------------------------------------------------


@pytest.fixture()
def empty_project(project_dir: Path) -> Path:
    return project_dir


def test_panel_shows_the_validation_message_of_what_is_typed(empty_project: Path) -> None:
    from workbench.ui import ProcessorPanel

    panel = ProcessorPanel(processor="sea_ice_chart", start="2021-12-01", end="2021-12-31",
                           model="seaice_tiny", model_version="1", models=[])
    assert panel.error_message() == _message({**_GOOD, "mode": "embedded"})  # no region yet
    panel.west.value, panel.south.value, panel.east.value = "20", "60", "10"
    assert panel.region is None  # three fields of four: still typing
    panel.north.value = "70"
    assert panel.region == {"bbox": [20, 60, 10, 70]}
    assert panel.error_message() == _message({"region": {"bbox": [20, 60, 10, 70]}, **_GOOD})
    panel.west.value = "abc"
    assert panel.error_message() == _message({"region": {"bbox": ["abc", 60, 10, 70]}, **_GOOD})
    panel.west.value = "5"
    assert panel.error_message() == "" and panel.region_layer.data["features"]
    assert "catalogue" in panel.scenes_label.value  # no local catalogue in an empty project: said so
    # a drawn polygon replaces the box; a self-intersecting one is refused like the API refuses it
    panel._on_draw(panel.draw, "created", _draw(_BOWTIE))
    assert panel.region == _BOWTIE and panel.error_message() == _message({"region": _BOWTIE, **_GOOD})
    assert panel.region_layer.data["features"] == []
    square = {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]]]}
    panel._on_draw(panel.draw, "created", _draw(square))
    assert panel.region == square and panel.error_message() == ""
    assert (panel.west.value, panel.south.value, panel.east.value, panel.north.value) == ("1", "1", "2", "2")
    assert panel.map.zoom > 3 and abs(panel.map.center[1] - 1.5) < 1e-9
    # remote mode shows the server fields and asks for them with the processors' messages
    assert panel._remote_box.layout.display == "none"
    panel.mode_select.value = "remote"
    assert panel._remote_box.layout.display == ""
    assert panel.error_message() == _message({"region": square, **_GOOD, "mode": "remote"})
    panel.serving_url.value = "http://127.0.0.1:8500"
    assert "'api_key'" in panel.error_message()
    # Run with invalid inputs submits nothing and keeps the message
    panel.serving_url.value = "not a url"
    assert panel.run() is None and "'serving_url'" in panel.error_message()
    assert panel.job_id is None


def test_panel_refuses_bad_construction_arguments(empty_project: Path) -> None:
    from workbench.ui import ProcessorPanel
    from workbench.ui.backends import ApiBackend, ApiError

    with pytest.raises(InputError, match="no processor 'nope'"):
        ProcessorPanel(processor="nope", models=[])
    with pytest.raises(InputError) as info:
        ProcessorPanel(start="2021-13-01", models=[])
    assert info.value.input == "start"
    with pytest.raises(ApiError, match="processes_url must be an http"):
        ApiBackend("localhost:5000")
    with pytest.raises(ApiError, match="cannot be reached"):
        ProcessorPanel(processes_url=f"http://127.0.0.1:{free_port()}", models=[])


# --- real runs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    info = panel_project(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_PROJECT_DIR", str(info["root"]))
        mp.setenv("WORKBENCH_DASK_WORKERS", "1")
        mp.chdir(info["root"])
        yield info


@pytest.fixture(scope="module")
def manager(project: dict[str, Any]) -> Iterator[Any]:
    from workbench.processors.jobs import JobManager

    jobs = JobManager(max_running=1, timeout=300)
    yield jobs
    jobs.close()


def _fill_bbox(panel: Any, bbox: list[float]) -> None:
    panel.west.value, panel.south.value, panel.east.value, panel.north.value = (f"{v:.5f}" for v in bbox)


def test_panel_runs_the_sea_ice_chart_and_shows_the_product(project: dict[str, Any], manager: Any) -> None:
    import ipyleaflet

    from workbench.ui import ProcessorPanel
    from workbench.ui.backends import LocalBackend

    panel = ProcessorPanel(backend=LocalBackend(manager), processor="crop_type_map", poll_interval=0.2)
    assert [o[1] for o in panel.processor_select.options] == ["crop_type_map", "sea_ice_chart"]
    assert panel.model_select.value == "crop_tiny"  # preselected for the processor
    panel.processor_select.value = "sea_ice_chart"
    assert panel.model_select.value == "seaice_tiny"
    assert {"latest", "champion", "1"} <= set(panel.version_select.options)
    panel.start_picker.value = dt.date.fromisoformat(SEAICE_DATES[0])
    panel.end_picker.value = dt.date.fromisoformat(SEAICE_DATES[1])
    _fill_bbox(panel, inner_bbox(project["scene_bbox"], 0.6))
    # the footprint of the sample scene is on the map before running
    assert [f["properties"]["id"] for f in panel.footprint_layer.data["features"]] == ["s1-sample-0"]
    assert "1 scene of sentinel-1-grd" in panel.scenes_label.value
    assert panel.error_message() == ""
    panel.version_select.value = "champion"
    seen: list[int] = []
    panel.progress.observe(lambda change: seen.append(change["new"]), names="value")
    panel.run_button.click()
    assert panel.job_id is not None
    row = panel.wait(240)
    assert row is not None and row.status == "successful", (row, panel.error_message())
    assert seen and seen[-1] == 100 and seen == sorted(seen)
    assert panel.progress.bar_style == "success"
    overlays = [layer for layer in panel.map.layers if isinstance(layer, ipyleaflet.ImageOverlay)]
    assert len(overlays) == 1 and overlays[0].url.startswith("data:image/png;base64,")
    (s, w), (n, e) = overlays[0].bounds
    assert s < n and w < e and list(row.product["bbox"]) == [w, s, e, n]
    features = panel.polygons_layer.data["features"]
    assert {f["properties"]["class_name"] for f in features} <= {"water", "ice"} and features
    assert all(f["properties"]["style"]["fillColor"] == panel.legend.legend[f["properties"]["class_name"]]
               for f in features)
    assert panel.legend in panel.map.controls
    assert f"data-job='{panel.job_id}'" in panel.jobs_table.value
    assert re.search(rf"wb-job-successful' data-job='{panel.job_id}'", panel.jobs_table.value)
    assert row.product["model"]["name"] == "seaice_tiny"
    # a second product replaces the first on the map
    panel.show_product(row.product)
    assert sum(isinstance(layer, ipyleaflet.ImageOverlay) for layer in panel.map.layers) == 1


def test_panel_runs_the_crop_type_map(project: dict[str, Any], manager: Any) -> None:
    import ipyleaflet

    from workbench.ui import ProcessorPanel
    from workbench.ui.backends import LocalBackend

    panel = ProcessorPanel(backend=LocalBackend(manager), processor="crop_type_map", start=CROP_DATES[0],
                           end=CROP_DATES[1], region=inner_bbox(project["tile_bbox"], 0.8), poll_interval=0.2)
    assert panel.model_select.value == "crop_tiny"
    assert panel.footprint_layer.data["features"], panel.scenes_label.value  # the Sentinel-2 items of the tile
    assert "sentinel-2-l2a" in panel.scenes_label.value
    job_id = panel.run()
    row = panel.wait(240)
    assert job_id and row is not None and row.status == "successful", (row, panel.error_message())
    assert any(isinstance(layer, ipyleaflet.ImageOverlay) for layer in panel.map.layers)
    assert set(panel.legend.legend) == set(row.product["class_names"]) and len(panel.legend.legend) > 2


def test_a_job_that_fails_shows_its_error_and_a_failed_row(project: dict[str, Any], manager: Any) -> None:
    from workbench.ui import ProcessorPanel
    from workbench.ui.backends import LocalBackend

    panel = ProcessorPanel(backend=LocalBackend(manager), processor="sea_ice_chart", start=SEAICE_DATES[0],
                           end=SEAICE_DATES[1], region=[100.0, 10.0, 100.5, 10.5], poll_interval=0.2)
    assert panel.footprint_layer.data["features"] == [] and "0 scenes" in panel.scenes_label.value
    assert panel.error_message() == ""  # valid inputs: the processor finds out there is no scene
    job_id = panel.run()
    row = panel.wait(120)
    assert row is not None and row.status == "failed" and job_id
    assert "no sentinel-1-grd scene" in panel.error_message()
    assert re.search(rf"wb-job-failed' data-job='{job_id}'", panel.jobs_table.value)
    # a model that is not registered is refused at submission, with the JobManager's message
    panel.model_select.value = "no_such_model"
    assert panel.run() is None
    assert panel.error_message().startswith("input 'model': model no_such_model")


@pytest.fixture(scope="module")
def api(project: dict[str, Any]) -> Iterator[dict[str, str]]:
    """``workbench processes serve`` on loopback in the project, and a key with scope processes:execute."""
    from workbench.serving.auth import AuthStore

    root = project["root"]
    key = AuthStore().create_project("panel", owner="ursula")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(["workbench.cli", "processes", "serve", "--port", str(port), "--max-running", "1"],
                        env=project_env(root), url=f"{url}/processes", log=root / "processes.log", cwd=root)
    try:
        yield {"url": url, "key": key}
    finally:
        stop_server(proc)


def test_panel_over_the_ogc_api(project: dict[str, Any], api: dict[str, str]) -> None:
    import ipyleaflet

    from workbench.ui import ProcessorPanel
    from workbench.ui.backends import ApiBackend, ApiError

    panel = ProcessorPanel(processes_url=api["url"], api_key=api["key"], processor="sea_ice_chart",
                           start=SEAICE_DATES[0], end=SEAICE_DATES[1], poll_interval=0.3)
    assert {o[1] for o in panel.processor_select.options} == {"sea_ice_chart", "crop_type_map"}
    assert panel._collection() == "sentinel-1-grd"  # from the server's process description
    # the server refuses a bad region with the very message the panel shows
    bad = {"region": {"bbox": [20, 60, 10, 70]}, **_GOOD}
    with pytest.raises(ApiError) as info:
        ApiBackend(api["url"], api["key"]).submit("sea_ice_chart", bad)
    assert info.value.status == 400 and info.value.input == "region"
    assert info.value.detail == _message(bad)
    panel.set_region({"bbox": [20, 60, 10, 70]})
    panel.revalidate()
    assert panel.error_message() == info.value.detail
    # a wrong key: the server's 401 message is shown, nothing runs
    wrong = ProcessorPanel(processes_url=api["url"], api_key="wb_not_a_key", processor="sea_ice_chart",
                           region=inner_bbox(project["scene_bbox"], 0.5), start=SEAICE_DATES[0],
                           end=SEAICE_DATES[1], model="seaice_tiny")
    assert wrong.run() is None and wrong.error_message()
    # a real run through the server
    _fill_bbox(panel, inner_bbox(project["scene_bbox"], 0.5))
    job_id = panel.run()
    assert job_id, panel.error_message()
    row = panel.wait(240)
    assert row is not None and row.status == "successful", (row, panel.error_message())
    assert any(isinstance(layer, ipyleaflet.ImageOverlay) for layer in panel.map.layers)
    assert re.search(rf"wb-job-successful' data-job='{job_id}'", panel.jobs_table.value)


# --- the notebook, executed with papermill ------------------------------------------------------------


def _execute_panel_notebook(project: dict[str, Any], tmp_path: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    import json

    import papermill

    out = tmp_path / "08_processor_panel.ipynb"
    papermill.execute_notebook(str(Path(__file__).resolve().parents[1] / "notebooks" / "08_processor_panel.ipynb"),
                               str(out), parameters=parameters, kernel_name="workbench", cwd=str(project["root"]),
                               progress_bar=False)
    return json.loads(out.read_text())


def test_panel_notebook_runs_with_papermill(project: dict[str, Any], tmp_path: Path) -> None:
    bbox = inner_bbox(project["scene_bbox"], 0.6)
    nb = _execute_panel_notebook(project, tmp_path, {"region": bbox, "model_version": "champion"})
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    # the widget state saved with the notebook: the region in the bbox fields, the scene found
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    texts = {tuple(m["state"].get("_dom_classes", ())): m["state"].get("value") for m in state.values()}
    assert float(texts[("wb-bbox-west",)]) == pytest.approx(bbox[0])
    assert float(texts[("wb-bbox-north",)]) == pytest.approx(bbox[3])
    assert "1 scene of sentinel-1-grd" in texts[("wb-scenes",)]
    assert texts[("wb-version",)] == "champion" and texts[("wb-model",)] == "seaice_tiny"
    assert texts[("wb-error",)] == ""


def test_panel_notebook_refuses_a_bad_parameter(project: dict[str, Any], tmp_path: Path) -> None:
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="no processor 'sea_ice'"):
        _execute_panel_notebook(project, tmp_path, {"processor": "sea_ice"})
