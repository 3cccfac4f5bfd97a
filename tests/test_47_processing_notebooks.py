"""The feature-store and experiments notebooks run as the demo's chained stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from workbench import registry
from workbench.featurestore import FeatureStore
from workbench.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_feature_store_and_experiments_stages(project_dir: Path) -> None:
    demo = yaml.safe_load((ROOT / "notebooks" / "pipelines" / "demo.yaml").read_text())
    stages = {s["name"]: s for s in demo["stages"]}
    chain = [
        dict(stages["feature_store"], notebook=str(ROOT / stages["feature_store"]["notebook"])),
        dict(stages["experiments"], notebook=str(ROOT / stages["experiments"]["notebook"])),
    ]
    chain[0]["parameters"] = {**chain[0]["parameters"], "n_pixels": 800}
    chain[1]["parameters"] = {**chain[1]["parameters"], "num_trials": 2, "epochs": 1}
    pipeline = project_dir / "processing.yaml"
    pipeline.write_text(yaml.safe_dump({**demo, "name": "processing", "stages": chain, "kernel": "python3"}))
    record = run_pipeline(pipeline, progress=False)
    assert record["status"] == "ok", json.dumps(record["stages"], indent=1)[-3000:]
    outputs = record["stages"][1]["outputs"]
    exported = registry.load(outputs["model"]["path"])
    assert exported.metadata["name"] == "crop_pixel_classifier"
    assert exported.metadata["training_dataset"]["feature_view"] == {"name": "crop_pixels", "version": 1}
    example = exported.input_example
    assert exported.predict(example).shape == (4, 4)
    fs = FeatureStore(project_dir, root=record["stages"][0]["outputs"]["feature_store"]["path"])
    fg = fs.get_feature_group("crop_pixels", 1)
    assert sorted(fg.commit_details()) == [0, 1] and len(fg.read()) == 800
    assert registry.get_model("crop_pixel_classifier", alias="champion").version == 1
    assert np.isfinite(exported.metadata["metrics"]["accuracy"])
