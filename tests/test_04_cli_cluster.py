"""The workbench on a real cluster started from the command line (issue 13, item 3).

``dask scheduler`` and two ``dask worker --nthreads 1`` processes run on 127.0.0.1, each worker in a working
and temporary directory of its own (:mod:`tests.servers.dask_cli`). With ``WORKBENCH_DASK_ADDRESS`` set to that
scheduler, a tuning experiment (notebook 04_experiments) and S2 compositing run unchanged. Each test checks that
the cluster did the work (tasks on the scheduler), that the outputs are in the project's store and complete, and
that no worker left a file in its own working or temporary directory.

The demo's Polar chain (preprocess_s1 -> seaice_patches -> train_seaice -> seaice_chart, papermill) runs on this
same session cluster in tests/test_05_pipeline_replay.py, with the same checks, twice (a deterministic run and
its replay), so that the suite pays for that chain once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from tests.notebook_checks import demo_stage_pipeline

@dataclass
class Cluster:
    """The CLI cluster as the tests see it: its address and each worker's own directories."""

    address: str
    client: Any
    worker_dirs: list[tuple[Path, Path, Path]]  # (cwd, TMPDIR, dask local directory) per worker

    def task_prefixes(self) -> set[str]:
        """Names of every task prefix the scheduler has seen."""
        return set(self.client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))

    def processed(self) -> int:
        """Tasks the workers have run so far (all workers)."""
        counts = self.client.run(lambda dask_worker: dask_worker.state.transition_counter)
        return sum(counts.values())

    def stray_files(self) -> list[str]:
        """Files under a worker's cwd or TMPDIR, apart from Dask's own local directory."""
        found = []
        for cwd, tmp, local in self.worker_dirs:
            for base in {cwd, tmp}:
                for path in base.rglob("*"):
                    if path.is_file() and local not in path.parents:
                        found.append(str(path))
        return sorted(found)


#: (cwd, TMPDIR, Dask local directory) of a worker; a lambda, so that it is pickled by value (no ``tests`` there)
_worker_dirs = lambda dask_worker: (  # noqa: E731
    os.getcwd(), __import__("tempfile").gettempdir(), str(dask_worker.local_directory))


@pytest.fixture(scope="module")
def cluster(dask_cli_cluster: str) -> Iterator[Cluster]:
    from distributed import Client

    with Client(dask_cli_cluster, timeout=30, set_as_default=False) as client:
        dirs = [tuple(Path(p).resolve() for p in d) for d in client.run(_worker_dirs).values()]
        assert len(dirs) == 2 and len({d[0] for d in dirs}) == 2, dirs
        assert all(Path(d[1]).is_relative_to(d[0]) for d in dirs), "each worker's TMPDIR is its own"
        yield Cluster(dask_cli_cluster, client, dirs)  # type: ignore[arg-type]


@pytest.fixture()
def on_cluster(cluster: Cluster, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The project directory with ``WORKBENCH_DASK_ADDRESS`` naming the CLI cluster; checks the workers' dirs after."""
    from workbench.cluster import close_client

    monkeypatch.setenv("WORKBENCH_DASK_ADDRESS", cluster.address)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    before = cluster.stray_files()
    yield cluster
    close_client()
    assert cluster.stray_files() == before, "a worker wrote outside the storage layer (in its own cwd or TMPDIR)"


def test_get_client_honours_the_address_setting(on_cluster: Cluster) -> None:
    from workbench.cluster import get_client

    client = get_client()
    assert client.scheduler.address == on_cluster.address
    assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2


def test_sentinel2_compositing_on_the_cluster(on_cluster: Cluster, project_dir: Path) -> None:
    """Composites written by the CLI workers (relative output path) equal those of the threaded scheduler."""
    import dask

    from workbench.cluster import get_client
    from workbench.samples.sentinel2 import generate_sentinel2_samples
    from workbench.sentinel2 import composite_tiles
    from workbench.storage import open_zarr

    items = generate_sentinel2_samples("s2", n_tiles=2, size=32, seed=5, register=False)
    get_client()  # as notebook 02_preprocess_s2 does: the client becomes the default scheduler
    done = on_cluster.processed()
    composites = composite_tiles(items, Path("data") / "composites", agronomic_year=2023, chunk=32)
    assert on_cluster.processed() > done, "the composites were not computed on the CLI workers"
    with dask.config.set(scheduler="threads"):
        reference = composite_tiles(items, project_dir / "reference", agronomic_year=2023, chunk=32)
    assert set(composites) == set(reference) and len(composites) == 2
    for tile, url in composites.items():
        assert Path(url).resolve().is_relative_to(project_dir)
        got, want = open_zarr(url).load(), open_zarr(reference[tile]).load()
        assert set(got.data_vars) == set(want.data_vars)
        for name in want.data_vars:
            np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=f"{tile}: {name}")


def test_tuning_experiment_notebook_on_the_cluster(on_cluster: Cluster, project_dir: Path) -> None:
    """Notebook 04_experiments with ``dask_address="local"`` (the workbench's cluster) runs its trials on the workers."""
    from workbench.pipeline import run_pipeline

    fs = demo_stage_pipeline("feature_store", project_dir / "p", n_pixels=400)
    first = run_pipeline(fs, progress=False)
    assert first["status"] == "ok", first.get("error")
    store = first["stages"][0]["outputs"]["feature_store"]["path"]
    pipeline = demo_stage_pipeline("experiments", project_dir / "p", feature_store=store, num_trials=2, epochs=1,
                                   dask_address="local")
    record = run_pipeline(pipeline, progress=False)
    assert record["status"] == "ok", record["stages"][0].get("error")
    assert any(p.startswith("trial-") for p in on_cluster.task_prefixes()), "no trial ran on the CLI cluster"
    model = record["stages"][0]["outputs"]["model"]
    assert Path(model["path"]).is_file() and Path(model["path"]).is_relative_to(project_dir) and model["sha256"]


def test_exported_archive_model_is_loaded_by_the_workers_from_the_project(on_cluster: Cluster,
                                                                          project_dir: Path) -> None:
    """An embedded processor model given as an exported archive: unpacked once under the project, not by
    each worker into its own temporary directory (where ``registry.load`` keeps a copy)."""
    import keras

    from workbench import registry
    from workbench.processors.base import ModelRef
    from workbench.processors.models import resolve_model, warm_workers

    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")])
    registry.save_model("tiny_chart", model, input_example=np.zeros((2, 4, 4, 3), "float32"))
    archive = registry.export("tiny_chart", 1, project_dir / "export" / "tiny_chart.tar.gz")
    spec = resolve_model(ModelRef(path=str(archive)), mode="embedded")
    assert Path(spec.path).is_dir() and Path(spec.path).is_relative_to(project_dir / "processors" / "models")
    assert resolve_model(ModelRef(path=str(archive)), mode="embedded").path == spec.path  # unpacked once
    done = on_cluster.processed()
    warm_workers(spec, client=on_cluster.client)
    assert on_cluster.processed() > done
