"""The demo's foundation stages (setup, discover) run through papermill as a pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.notebook_checks import assert_showcases_shown
from workbench.cli import main
from workbench.pipeline import read_run, run_pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def foundation_pipeline(project_dir: Path) -> Path:
    """The first two stages of demo.yaml, in a pipeline file of the test project."""
    demo = yaml.safe_load((ROOT / "notebooks" / "pipelines" / "demo.yaml").read_text())
    stages = [dict(s, notebook=str(ROOT / s["notebook"])) for s in demo["stages"][:2]]
    assert [s["name"] for s in stages] == ["setup", "discover"]
    path = project_dir / "foundation.yaml"
    path.write_text(yaml.safe_dump({**demo, "name": "foundation", "stages": stages}))
    return path


def test_setup_and_discover(foundation_pipeline: Path, project_dir: Path) -> None:
    record = run_pipeline(foundation_pipeline, progress=False)
    assert record["status"] == "ok", json.dumps(record["stages"], indent=1)
    run = read_run(project_dir / "runs" / record["run_id"])
    setup, discover = run["stages"]
    assert setup["parameters"]["dask_address"] == ""
    catalog_json = Path(setup["outputs"]["catalog"]["path"])
    assert catalog_json == project_dir / "workbench-data" / "catalog" / "catalog.json"
    items = json.loads(Path(discover["outputs"]["items"]["path"]).read_text())
    assert items["type"] == "FeatureCollection" and len(items["features"]) > 0
    assert all(f["properties"]["proj:code"].startswith("EPSG:") for f in items["features"])
    assert Path(discover["outputs"]["footprints_map"]["path"]).read_text().count("leaflet") > 0
    assert discover["outputs"]["items"]["sha256"]
    assert_showcases_shown(discover["output_notebook"])

    # A second run reuses the sample data and gives the same items.
    again = run_pipeline(foundation_pipeline, progress=False)
    assert again["status"] == "ok"
    assert again["stages"][1]["outputs"]["items"]["sha256"] == discover["outputs"]["items"]["sha256"]


def test_bad_notebook_parameter_fails_the_stage(foundation_pipeline: Path, project_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(foundation_pipeline), "-q", "-p", "bbox=[16, 45, 14, 47]"])
    assert code == 1
    err = capsys.readouterr().err
    assert "CatalogError" in err and "west" in err


def test_empty_search_fails_in_discover_unless_allowed(foundation_pipeline: Path, project_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 6: nothing found is reported by the stage that searched, with the sample's real footprint."""
    code = main(["run", str(foundation_pipeline), "-q", "-p", "bbox=[0.0, 0.0, 1.0, 1.0]"])
    assert code == 1
    err = capsys.readouterr().err
    assert "stage 'discover' failed: EmptySearchError" in err
    assert "no sentinel-2-l2a items in [0.0, 0.0, 1.0, 1.0]" in err and "the sample collection covers [14." in err
    record = run_pipeline(foundation_pipeline, progress=False,
                          parameters={"bbox": [0.0, 0.0, 1.0, 1.0], "allow_empty": True})
    assert record["status"] == "ok"
    items = json.loads(Path(record["stages"][1]["outputs"]["items"]["path"]).read_text())
    assert items["features"] == []
    assert record["stages"][1]["used"]["catalogue_items"][0]["ids"] == []


def test_info(capsys: pytest.CaptureFixture[str], project_dir: Path) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "catalog_backend" in out and "papermill" in out
