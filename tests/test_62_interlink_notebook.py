"""notebooks/09_interlinking.ipynb runs as the demo's ``interlinking`` stage (papermill) on the linked_data store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.notebook_checks import assert_showcases_shown, demo_stage_pipeline
from workbench.pipeline import run_pipeline, stage_summary

ROOT = Path(__file__).resolve().parents[1]


def _stage_pipeline(directory: Path, **parameters: Any) -> Path:
    return demo_stage_pipeline("interlinking", directory, **parameters)


@pytest.fixture(scope="module")
def linked_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the linked_data stage leaves: a store with the sample parcels and in-situ points mapped in."""
    from workbench.linked.mapping import map_to_store
    from workbench.linked.store import GeoStore
    from workbench.linked.synthetic import write_sample_products

    directory = tmp_path_factory.mktemp("linked-data")
    products = write_sample_products(directory / "samples")
    store = GeoStore(directory / "store")
    for name in ("crop_parcels", "insitu_points", "sea_ice_chart"):
        map_to_store(name, store, source=products[name])
    store.flush()
    del store
    return directory / "store"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, linked_store: Path) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("interlinking-stage")
    with pytest.MonkeyPatch.context() as mp:  # run records go to the test's project, not the checkout
        mp.setenv("WORKBENCH_PROJECT_DIR", str(directory))
        record = run_pipeline(_stage_pipeline(directory, rdf_store=str(linked_store), synthetic_n=1500), progress=False)
    return {"record": record, "directory": directory}


def test_the_stage_follows_linked_data_and_takes_its_store() -> None:
    demo = yaml.safe_load((ROOT / "notebooks" / "pipelines" / "demo.yaml").read_text())
    names = [s["name"] for s in demo["stages"]]
    assert names[names.index("linked_data") + 1] == "interlinking"
    stage = next(s for s in demo["stages"] if s["name"] == "interlinking")
    assert stage["parameters"]["rdf_store"] == "{linked_data.rdf_store}"


def test_notebook_links_parcels_and_points_and_the_store_answers_them(run: dict[str, Any], linked_store: Path) -> None:
    from workbench.linked.store import GeoStore

    record = run["record"]
    assert record["status"] == "ok", json.dumps(record["stages"], indent=1)[-3000:]
    stage = record["stages"][0]
    assert stage_summary(record)[0]["seconds"] < 60
    outputs = stage["outputs"]
    links = pd.read_parquet(outputs["links"]["path"])
    contains = links[links.relation == "sfContains"]
    assert len(contains) >= 10 and contains.target_id.str.contains("/insitu/").all()
    assert Path(outputs["recall_plot"]["path"]).stat().st_size > 10_000
    curve = pd.read_csv(outputs["recall_curve"]["path"])
    at20 = curve[curve.fraction == 0.2].set_index("weighting")["recall"]
    assert at20["chi2*mbro"] > at20["random"]
    executed = Path(stage["output_notebook"])
    text = executed.read_text()
    assert "the store answers" in text and "recall" in text
    assert_showcases_shown(executed)
    # the links are in the linked_data store, answered without geometry computation
    store = GeoStore(linked_store)
    rows = store.select("SELECT ?p ?q WHERE { ?p geo:sfContains ?q }", rewrite=False)
    assert {(r["p"], r["q"]) for r in rows} == set(zip(contains.source_id, contains.target_id))


@pytest.mark.parametrize(("parameters", "message"), [
    ({"budget_fraction": 0}, "budget_fraction must be in (0, 1]"),
    ({"weighting": "chi2*bogus"}, "unknown weighting 'bogus'"),
    ({"relations": "sfNear"}, "unknown relation 'sfNear'"),
    ({"synthetic_n": 5}, "synthetic_n must be a whole number of geometries >= 100, got 5"),
    ({"rdf_store": "/nonexistent/store"}, "rdf_store /nonexistent/store does not exist"),
])
def test_bad_parameters_fail_the_stage(project_dir: Path, parameters: dict[str, Any], message: str) -> None:
    record = run_pipeline(_stage_pipeline(project_dir, **{"rdf_store": "", **parameters}), progress=False)
    assert record["status"] == "failed"
    error = json.dumps(record["stages"][0]["error"])
    assert message.replace("'", "\\'") in error or message in error, error[:500]
    assert "InterlinkError" in error
