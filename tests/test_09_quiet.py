"""Noise a user cannot act on is gone, and what they can act on stays (issue 17, item 16)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port


def _workbench(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240, env={**os.environ, "WORKBENCH_PROJECT_DIR": str(cwd), **(env or {})})


def test_pipeline_kernels_do_not_warn_about_tcp(project_dir: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cell = new_code_cell("x = 1")
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, new_code_cell("print(x)")])
    nb.metadata["kernelspec"] = {"name": "workbench", "display_name": "ExtremeEarth Workbench", "language": "python"}
    nbformat.write(nb, project_dir / "one.ipynb")
    (project_dir / "p.yaml").write_text("name: p\nstages:\n  - name: one\n    notebook: one.ipynb\n")
    done = _workbench("run", "p.yaml", "-q", cwd=project_dir)
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stderr and "without encryption" not in done.stdout


def test_zarr_writes_give_no_consolidation_notice(tmp_path: Path) -> None:
    import xarray as xr

    from workbench._quiet import quiet_zarr
    from workbench.storage import open_zarr, write_zarr

    data = xr.Dataset({"a": (("y", "x"), np.zeros((4, 4)))})
    with warnings.catch_warnings(record=True) as loud:
        warnings.simplefilter("always")  # as if nothing had been silenced
        write_zarr(data, tmp_path / "a.zarr")
    assert [w for w in loud if "Consolidated metadata" in str(w.message)], "zarr no longer warns: drop the filter"
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        quiet_zarr()  # what workbench.storage does on import
        write_zarr(data, tmp_path / "b.zarr")
        open_zarr(tmp_path / "b.zarr").load()
    assert not [w for w in quiet if "Consolidated metadata" in str(w.message)]


def test_tensorflow_retracing_notices_are_dropped_other_warnings_kept(caplog: pytest.LogCaptureFixture) -> None:
    import workbench.models.seaice  # noqa: F401 - installs the filter

    logger = logging.getLogger("tensorflow")
    with caplog.at_level(logging.WARNING):
        logger.warning("5 out of the last 5 calls to <function f> triggered tf.function retracing. Tracing is expensive")
        logger.warning("a model input has NaN values")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["a model input has NaN values"]


def test_info_cluster_prints_no_dask_info_lines(project_dir: Path) -> None:
    done = _workbench("info", "--cluster", cwd=project_dir)
    assert done.returncode == 0, done.stderr
    assert "cluster:" in done.stdout
    assert "INFO" not in done.stderr, done.stderr[:2000]


def test_unreachable_stac_gives_one_error_not_a_warning_per_retry(project_dir: Path) -> None:
    port = free_port()  # nothing listens there
    done = _workbench("search", "sentinel-2-l2a", "--bbox", "14", "45", "15", "46", "--start", "2023-01-01",
                      "--end", "2023-02-01", cwd=project_dir,
                      env={"WORKBENCH_CATALOG_BACKEND": "stac", "WORKBENCH_STAC_URL": f"http://127.0.0.1:{port}/stac"})
    assert done.returncode == 2
    assert "Retrying" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "cannot open the STAC API" in done.stderr
