"""notebooks/10_validation.ipynb runs as the demo's ``validation`` stage (papermill), on a small crop map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely
import yaml

from tests.notebook_checks import assert_showcases_shown, demo_stage_pipeline
from tests.test_64_validation_federated import _crop_map
from workbench.pipeline import run_pipeline
from workbench.validation import ValidationReport

ROOT = Path(__file__).resolve().parents[1]


def _stage_pipeline(directory: Path, **parameters: Any) -> Path:
    return demo_stage_pipeline("validation", directory, **parameters)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("validation-stage")
    product = directory / "parcel_labels.parquet"  # shaped like the crop_map stage's parcel labels
    _crop_map(120, seed=7).to_parquet(product)
    record = run_pipeline(_stage_pipeline(directory, parcel_product=str(product)), progress=False)
    return {"record": record, "directory": directory}


def test_the_stage_follows_the_crop_map_and_linked_data(run: dict[str, Any]) -> None:
    demo = yaml.safe_load((ROOT / "notebooks" / "pipelines" / "demo.yaml").read_text())
    names = [s["name"] for s in demo["stages"]]
    stage = next(s for s in demo["stages"] if s["name"] == "validation")
    after = "interlinking" if "interlinking" in names else "linked_data"
    assert names.index("validation") > names.index(after) > names.index("crop_map")
    assert stage["parameters"]["parcel_product"] == "{crop_map.parcel_labels}"


def test_notebook_shows_the_report(run: dict[str, Any]) -> None:
    record = run["record"]
    assert record["status"] == "ok", json.dumps(record["stages"], indent=1)[-3000:]
    stage = record["stages"][0]
    outputs = stage["outputs"]
    report = ValidationReport.read_parquet(outputs["validation_report"]["path"])
    assert len(report.points) > 30 and 0 < report.total.iloc[0].negative < len(report.points)
    assert Path(outputs["map_html"]["path"]).read_text().count("circle_marker") >= len(report.points)
    assert Path(outputs["bar_plot"]["path"]).stat().st_size > 10_000
    executed = Path(stage["output_notebook"])
    text = executed.read_text()
    assert "federated == geopandas truth: True" in text
    assert "exclusive group" in text  # the federation's plan is shown
    assert_showcases_shown(executed)


def test_bad_parameters_fail_the_stage(run: dict[str, Any], tmp_path: Path) -> None:
    missing = run_pipeline(_stage_pipeline(tmp_path, parcel_product=str(tmp_path / "nope.parquet")), progress=False)
    assert missing["status"] == "failed"
    assert "nope.parquet" in json.dumps(missing["stages"][0]["error"])
    product = run["directory"] / "parcel_labels.parquet"
    bad = run_pipeline(_stage_pipeline(tmp_path / "b", parcel_product=str(product), distance_m=-5), progress=False)
    assert bad["status"] == "failed"
    assert "distance_m" in json.dumps(bad["stages"][0]["error"])
    survey = tmp_path / "survey.parquet"  # a survey without its codes
    gpd.GeoDataFrame({"point_id": ["x"]}, geometry=[shapely.Point(14.5, 46.0)], crs=4326).to_parquet(survey)
    codeless = run_pipeline(_stage_pipeline(tmp_path / "c", parcel_product=str(product), insitu_points=str(survey)),
                            progress=False)
    assert codeless["status"] == "failed"
    assert "lucas_code" in json.dumps(codeless["stages"][0]["error"])
