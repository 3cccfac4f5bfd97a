"""The serving notebook (06) runs as the demo's ``serving`` stage with papermill, on a registered sea-ice CNN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from workbench.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[1]


def _register_seaice_model(project_dir: Path) -> None:
    """What the chain's patches and training stages leave: a training dataset and a registered binary CNN."""
    from workbench.datasets.patches import PatchSet, to_training_dataset
    from workbench.featurestore import FeatureStore
    from workbench.training.seaice import TrainConfig, fit, register_model

    rng = np.random.default_rng(0)
    n, size = 240, 16
    y = rng.integers(0, 5, size=n)
    x = rng.normal(-18.0, 3.0, size=(n, size, size, 3)).astype("float32")
    x[..., 0] += np.where(y > 0, 6.0, 0.0)[:, None, None]
    x[..., 2] = 35.0 + rng.normal(0, 1, size=(n, size, size))
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    patches = PatchSet(x=x, y=y.astype(np.int16), scene=np.array(["s0"] * n), row=np.arange(n) * size,
                       col=np.zeros(n, dtype=np.int64), purity=np.ones(n, np.float32), split=split,
                       class_names=("water", "new_ice", "young_ice", "first_year_ice", "old_ice"),
                       bands=("HH_db", "HV_db", "incidence"))
    td = to_training_dataset(patches, store=FeatureStore(project_dir))
    result = fit(patches, TrainConfig(model="adhoc", binary=True, epochs=1, augment=False, batch_size=32))
    register_model(result, "seaice_adhoc_binary", training_dataset=td, project=project_dir)


def test_serving_stage(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    _register_seaice_model(project_dir)
    demo = yaml.safe_load((ROOT / "notebooks" / "pipelines" / "demo.yaml").read_text())
    names = [s["name"] for s in demo["stages"]]
    assert names[names.index("train_seaice") + 1] == "serving"
    stage = next(s for s in demo["stages"] if s["name"] == "serving")
    stage = dict(stage, notebook=str(ROOT / stage["notebook"]),
                 parameters={**stage["parameters"], "port": free_port(), "n_requests": 60})
    pipeline = project_dir / "serving.yaml"
    pipeline.write_text(yaml.safe_dump({**demo, "name": "serving", "stages": [stage], "kernel": "python3"}))
    record = run_pipeline(pipeline, progress=False)
    assert record["status"] == "ok", json.dumps(record["stages"], indent=1)[-3000:]
    outputs = record["stages"][0]["outputs"]
    summary = json.loads(Path(outputs["monitoring_summary"]["path"]).read_text())
    assert summary["requests"] >= 60 + 4 and summary["error_rate"] > 0
    assert set(summary["classes"]["names"]) == {"water", "ice"} and "tvd" in summary["drift"]
    assert Path(outputs["monitoring_plot"]["path"]).stat().st_size > 10_000
    executed = json.loads(Path(record["stages"][0]["output_notebook"]).read_text())
    text = json.dumps(executed["cells"])
    assert "latency p99 (ms)" in text and "notebook-1" in text


def test_serving_stage_rejects_a_bad_parameter(project_dir: Path) -> None:
    demo = yaml.safe_load((ROOT / "notebooks" / "pipelines" / "demo.yaml").read_text())
    stage = next(s for s in demo["stages"] if s["name"] == "serving")
    stage = dict(stage, notebook=str(ROOT / stage["notebook"]), parameters={**stage["parameters"], "metric": "nope"})
    pipeline = project_dir / "serving.yaml"
    pipeline.write_text(yaml.safe_dump({**demo, "name": "serving", "stages": [stage], "kernel": "python3"}))
    record = run_pipeline(pipeline, progress=False)
    assert record["status"] == "failed"
    assert "seaice_adhoc_binary" in json.dumps(record["stages"][0]["error"])
