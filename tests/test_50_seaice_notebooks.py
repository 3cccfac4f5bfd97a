"""The polar notebooks 02-05 run in a chain with papermill (small scene, few epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.notebook_checks import assert_showcases_shown

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture()
def sarsen_cache() -> Path:
    from workbench.errors import DataError
    from workbench.samples.sarsen_assets import find_grd_safe

    try:
        return find_grd_safe()
    except DataError as exc:
        pytest.skip(str(exc))


def _run(name: str, out_dir: Path, cwd: Path, parameters: dict) -> dict:
    import papermill

    out = out_dir / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name), str(out), parameters=parameters, kernel_name="python3", cwd=str(cwd),
        progress_bar=False,
    )
    return json.loads(out.read_text())


def test_polar_notebooks_chain(sarsen_cache: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARSEN_ASSETS_DIR", str(sarsen_cache.parent))
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "2")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("WORKBENCH_DASK_WORKERS", "1")
    out = project_dir / "executed"
    out.mkdir()
    data = "workbench-data"
    _run("02_preprocess_s1.ipynb", out, project_dir, {"data_dir": data, "size": 1024, "chunk": 128})
    cube = f"{data}/polar/s1-sample-0_cube.zarr"
    chart = f"{data}/samples/sentinel1/s1-sample-0/ice_chart.parquet"
    assert (project_dir / cube).is_dir()
    _run("03_seaice_patches.ipynb", out, project_dir,
         {"data_dir": data, "cube_path": cube, "chart_path": chart, "patch_size": 16, "stride": 8, "block": 64})
    assert (project_dir / data / "polar" / "seaice_patches.zarr").is_dir()
    nb = _run("04_train_seaice.ipynb", out, project_dir,
              {"data_dir": data, "epochs": 1, "vgg_epochs": 1, "classes_epochs": 1, "classes_vgg_epochs": 1,
               "vgg_width": 0.125, "register": True})
    text = json.dumps(nb["cells"])
    assert "paper, Table III" in text and "0.9853" in text and "0.9989" in text
    assert "five classes" in text and "per-pixel" in text  # both tasks, beside the per-pixel baseline
    from workbench import registry

    for name in ("seaice_adhoc_binary", "seaice_vgg16_binary", "seaice_adhoc_classes", "seaice_vgg16_classes"):
        assert registry.get_best_model(name, "val_accuracy").name == name
    assert_showcases_shown(nb)  # the accuracy table, and the learning curves and confusion matrices drawn
    model = f"{data}/polar/models/seaice_adhoc.keras"
    assert (project_dir / model).is_file()
    nb = _run("05_seaice_chart.ipynb", out, project_dir,
              {"data_dir": data, "model_path": model, "cube_path": cube, "chart_path": chart})
    assert (project_dir / data / "polar" / "charts" / "seaice_chart.tif").is_file()
    assert "folium" in json.dumps(nb["cells"]) and "agreement" in json.dumps(nb["cells"])
    assert_showcases_shown(nb)
