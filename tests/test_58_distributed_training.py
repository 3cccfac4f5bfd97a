"""Data-parallel training on a real command-line Dask cluster: one TensorFlow process per worker.

The runs read their shards of real feature-store training datasets (synthetic, learnable crop series and
sea-ice patches) on 2 workers of ``dask worker --nthreads 1``; a 2-worker run is compared with a 1-worker
run of the same data and seed, a rank's process is killed mid-run, and GPU resources are declared on a
second small cluster.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from workbench.errors import ArgumentError, ClusterError, DataError

#: A 2-worker run must reach the 1-worker run's validation accuracy within this (absolute) tolerance.
ACCURACY_TOLERANCE = 0.05
N_CLASSES = 3


def _crop_samples(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Series whose class sets each band's level and seasonal phase (learnable in a few epochs); 3:2:1 classes."""
    from workbench.datasets.pixels import feature_columns

    rng = np.random.default_rng(seed)
    y = rng.choice(N_CLASSES, size=n, p=[0.5, 0.33, 0.17])
    t = np.arange(12)
    x = rng.normal(0.0, 1.2, (n, 12, 2)).astype(np.float32)  # noisy: the accuracy stays below 1
    x[:, :, 0] += np.sin(2 * np.pi * t / 12 + 2.0 * y[:, None])
    x[:, :, 1] += 0.8 * y[:, None]
    frame = pd.DataFrame(x.reshape(n, -1), columns=feature_columns(["B04", "B08"], 12))
    frame.insert(0, "sample_id", [f"T-{i}" for i in range(n)])
    frame["tile"] = np.where(np.arange(n) < int(0.75 * n), "A", "B")
    frame["split"] = np.where(frame["tile"] == "A", "train", "validation")
    frame["label"] = y
    return frame


def _patches(n: int = 480, seed: int = 1) -> Any:
    """16x16 patches: water (class 0) dark in HH/HV, four ice classes brighter; splits train/val."""
    from workbench.datasets.patches import PatchSet

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    x = np.empty((n, 16, 16, 3), np.float32)
    x[..., 0] = np.where(y[:, None, None] == 0, -22.0, -14.0 + y[:, None, None]) + rng.normal(
        0, 1.5, (n, 16, 16)
    )
    x[..., 1] = np.where(y[:, None, None] == 0, -30.0, -24.0) + rng.normal(0, 1.5, (n, 16, 16))
    x[..., 2] = 35.0 + rng.normal(0, 0.2, (n, 16, 16))
    return PatchSet(
        x=x,
        y=y.astype(np.int16),
        scene=np.full(n, "S1-synthetic", object),
        row=np.arange(n) * 16,
        col=np.zeros(n, int),
        purity=np.ones(n, np.float32),
        split=np.where(np.arange(n) < 360, "train", "val"),
        class_names=("water", "new_ice", "young_ice", "first_year_ice", "old_ice"),
        bands=("HH_db", "HV_db", "incidence"),
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distributed-project")


@pytest.fixture(scope="module")
def crop_dataset(project: Path) -> Any:
    from workbench.datasets.pixels import to_training_dataset
    from workbench.featurestore import FeatureStore

    return to_training_dataset(_crop_samples(), store=FeatureStore(project))


@pytest.fixture(scope="module")
def client(dask_cli_cluster: str) -> Iterator[Any]:
    from distributed import Client

    with Client(dask_cli_cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def crop_runs(client: Any, crop_dataset: Any, project: Path) -> dict[int, Any]:
    """The weighted two-phase LSTM (RMSprop) on 1 and on 2 workers: same data, same seed."""
    from workbench.training.distributed import CropBuilder, fit_distributed

    runs = {}
    for n in (1, 2):
        runs[n] = fit_distributed(
            CropBuilder("lstm", {"n_layers": 1, "units": 16, "dropout": 0.1}),
            crop_dataset,
            client=client,
            n_workers=n,
            n_classes=N_CLASSES,
            weighted_epochs=4,
            unweighted_epochs=8,
            batch_size=32,
            learning_rate=1e-2,
            seed=3,
            register_as="crop_lstm_distributed",
            project=project,
            timeout=240,
        )
    return runs


def test_two_workers_reach_the_one_worker_accuracy(crop_runs: dict[int, Any], crop_dataset: Any) -> None:
    one, two = crop_runs[1], crop_runs[2]
    print(f"validation accuracy: 1 worker {one.val_accuracy:.4f}, 2 workers {two.val_accuracy:.4f}")
    assert one.val_accuracy > 0.65, (
        one.history
    )  # learnt (the largest class is 50 %): the comparison means something
    assert abs(two.val_accuracy - one.val_accuracy) <= ACCURACY_TOLERANCE, (one.history, two.history)
    # each rank read its own half of the training split, the halves cover it; the steps are synchronous
    assert one.shard_rows == [900] and two.shard_rows == [450, 450]
    assert {r["train_rows"] for r in two.ranks} == {450} and len({r["worker"] for r in two.ranks}) == 2
    assert one.steps_per_epoch == two.steps_per_epoch == 900 // 32
    assert [h["phase"] for h in two.history] == [1] * 4 + [2] * 8
    # phase 1 weights are those of the whole training split, counted over the shards
    from workbench.training.fit import class_weights

    y_train = crop_dataset.arrays("train")[1]
    expected = class_weights(y_train, N_CLASSES)
    for result in (one, two):
        assert result.class_weight == pytest.approx(expected)
        assert result.validation.n == 300
    assert two.allreduce_seconds_per_step > 0 and two.samples_per_second > 0


def test_chief_saves_and_registers_the_model(
    crop_runs: dict[int, Any], crop_dataset: Any, project: Path
) -> None:
    from workbench import registry
    from workbench.training.fit import evaluate

    two = crop_runs[2]
    assert two.registered is not None and two.registered[0] == "crop_lstm_distributed"
    assert crop_runs[1].registered[1] < two.registered[1]
    model = two.load_model()
    x_val, y_val = crop_dataset.arrays("validation")
    report = evaluate(model, x_val, np.asarray(y_val), n_classes=N_CLASSES)
    assert report.overall_accuracy == pytest.approx(two.val_accuracy, abs=1 / 300)
    best = registry.get_best_model("crop_lstm_distributed", "val_accuracy", project=project)
    assert best.version in (crop_runs[1].registered[1], two.registered[1])
    assert Path(two.model_url).is_file() and not list(Path(two.model_url).parent.glob("*.tmp*"))


def test_sea_ice_cnn_on_two_workers(client: Any, project: Path) -> None:
    """The ad-hoc CNN with augmentation, Adam and class weights, five classes mapped to water/ice."""
    from workbench.datasets.patches import to_training_dataset
    from workbench.featurestore import FeatureStore
    from workbench.training.distributed import DatasetRef, SeaIceBuilder, fit_distributed

    td = to_training_dataset(_patches(), store=FeatureStore(project))
    ref = DatasetRef.of(td, label_map=(0, 1, 1, 1, 1))
    result = fit_distributed(
        SeaIceBuilder("adhoc", augment=True, params={"dropout": 0.2}),
        ref,
        client=client,
        n_workers=2,
        weighted_epochs=2,
        unweighted_epochs=0,
        batch_size=32,
        optimizer="adam",
        class_names=("water", "ice"),
        seed=0,
        project=project,
        timeout=240,
    )
    assert result.validation.class_names == ("water", "ice") and result.validation.n == 120
    assert result.val_accuracy > 0.9, result.history
    assert result.shard_rows == [180, 180]
    model = result.load_model()
    assert model.input_shape[1:] == (16, 16, 3) and model.output_shape[-1] == 2


def test_tempcnn_trains_on_two_workers(client: Any, crop_dataset: Any, project: Path) -> None:
    """TempCNN (batch normalisation, L2 regularisation) trains data-parallel too (StarRNN: the worker-death test)."""
    from workbench.training.distributed import CropBuilder, fit_distributed

    kind, params = "tempcnn", {"filters": 8, "dense_units": 16}

    result = fit_distributed(
        CropBuilder(kind, params),
        crop_dataset,
        client=client,
        n_workers=2,
        weighted_epochs=1,
        unweighted_epochs=1,
        batch_size=64,
        learning_rate=5e-3,
        project=project,
        timeout=240,
    )
    assert result.shard_rows == [450, 450] and len(result.history) == 2
    assert np.isfinite([h["loss"] for h in result.history]).all()
    first, second = result.history
    assert second["loss"] < first["loss"] and second["accuracy"] > first["accuracy"], result.history
    model = result.load_model()
    assert model.name == kind
    # the batch-normalisation statistics were updated in the synchronous steps
    assert np.abs(model.get_layer("bn_0").moving_mean.numpy()).max() > 0


def _rank_pids(run_id: str, rank: int) -> list[int]:
    """PIDs of the TensorFlow processes of ``run_id``'s ``rank`` (found by their command line in /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"workbench.training._distributed_worker" in argv and run_id.encode() in argv
        if ours and argv[argv.index(b"--rank") + 1] == str(rank).encode():
            pids.append(int(entry.name))
    return pids


def _tf_port(pid: int) -> int:
    """The port of the rank's TensorFlow server, from the ``TF_CONFIG`` in its environment."""
    import json

    env = dict(
        item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
    )
    config = json.loads(env[b"TF_CONFIG"])
    return int(config["cluster"]["worker"][config["task"]["index"]].rsplit(":", 1)[1])


def _listening(port: int) -> bool:
    """Whether some process listens on TCP ``port`` (``/proc/net/tcp``, state 0A)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_fails_the_run_in_bounded_time(client: Any, crop_dataset: Any, project: Path) -> None:
    from workbench.training.distributed import CropBuilder, DistributedTrainingError, fit_distributed

    run_id = f"killtest{os.getpid()}"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            fit_distributed(
                CropBuilder("lstm", {"n_layers": 1, "units": 8}),
                crop_dataset,
                client=client,
                n_workers=2,
                weighted_epochs=400,
                unweighted_epochs=0,
                batch_size=32,
                project=project,
                run_id=run_id,
                timeout=300,
            )
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not _rank_pids(run_id, 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = _rank_pids(run_id, 1)
    assert pids, "rank 1's process never started"
    port = _tf_port(pids[0])
    while not _listening(port) and time.monotonic() < deadline:  # its TensorFlow server is up: the ranks met
        time.sleep(0.2)
    time.sleep(2.0)  # into the training
    killed = time.monotonic()
    os.kill(pids[0], signal.SIGKILL)
    thread.join(90)
    assert not thread.is_alive(), "the run hung after a rank was killed"
    error = outcome["error"]
    assert isinstance(error, DistributedTrainingError), repr(error)
    assert "rank 1" in str(error) and "signal 9" in str(error)
    assert outcome["ended"] - killed < 60
    deadline = time.monotonic() + 20
    while (_rank_pids(run_id, 0) or _rank_pids(run_id, 1)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _rank_pids(run_id, 0), "rank 0's process outlived the failed run"


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the rank's process through /proc")
def test_a_dask_worker_that_dies_fails_the_run(crop_dataset: Any, project: Path) -> None:
    """Its own 2-worker CLI cluster (the shared one must survive): a ``dask worker`` is SIGKILLed mid-run.

    The run trains the StarRNN (custom recurrent cell), so it also shows that model stepping in sync.
    """
    from distributed import Client

    from tests.servers.dask_cli import cli_cluster
    from workbench.training.distributed import CropBuilder, DistributedTrainingError, fit_distributed

    run_id = f"workerkill{os.getpid()}"
    outcome: dict[str, Any] = {}
    with cli_cluster(2, nthreads=1) as cluster, Client(cluster.address, set_as_default=False) as c:

        def run() -> None:
            try:
                fit_distributed(
                    CropBuilder("starrnn", {"n_layers": 1, "units": 8}),
                    crop_dataset,
                    client=c,
                    n_workers=2,
                    weighted_epochs=400,
                    unweighted_epochs=0,
                    batch_size=32,
                    project=project,
                    run_id=run_id,
                )
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                outcome["error"] = exc
            outcome["ended"] = time.monotonic()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while not (_rank_pids(run_id, 0) and _rank_pids(run_id, 1)) and time.monotonic() < deadline:
            time.sleep(0.2)
        pids = {rank: _rank_pids(run_id, rank)[0] for rank in (0, 1)}
        while not all(_listening(_tf_port(p)) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        victim = cluster.workers[1]
        killed = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        thread.join(90)
        assert not thread.is_alive(), "the run hung after its worker died"
    error = outcome["error"]
    assert isinstance(error, DistributedTrainingError) and "left the Dask cluster" in str(error), repr(error)
    assert outcome["ended"] - killed < 30
    deadline = time.monotonic() + 20
    while (_rank_pids(run_id, 0) or _rank_pids(run_id, 1)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _rank_pids(run_id, 0) and not _rank_pids(run_id, 1), "a rank's process outlived its run"


def test_bad_input_is_named(client: Any, crop_dataset: Any, project: Path) -> None:
    from workbench.training.distributed import CropBuilder, DatasetRef, fit_distributed

    builder = CropBuilder("lstm", {"n_layers": 1, "units": 4})
    common = {"client": client, "project": project}
    cases = [
        ({"n_workers": 0}, DataError, "n_workers"),
        ({"n_workers": 2, "batch_size": 33}, DataError, "multiple of n_workers"),
        ({"weighted_epochs": 0, "unweighted_epochs": 0}, DataError, "nothing to train"),
        ({"optimizer": "sgd"}, DataError, "optimizer"),
        ({"learning_rate": 0}, DataError, "learning_rate"),
        ({"class_weight": "inverse"}, DataError, "class_weight"),
        ({"batch_size": 4096}, DataError, "larger than the training split"),
        ({"model_url": str(project / "m.h5")}, DataError, ".keras"),
        ({"n_workers": 3, "batch_size": 30}, ClusterError, "n_workers=3"),
    ]
    for kwargs, exc, match in cases:
        with pytest.raises(exc, match=match):
            fit_distributed(builder, crop_dataset, **{**common, **kwargs})
    with pytest.raises(ArgumentError, match="n_worker"):
        fit_distributed(builder, crop_dataset, n_worker=2, **common)
    with pytest.raises(DataError, match="build_fn"):
        fit_distributed("lstm", crop_dataset, **common)
    with pytest.raises(DataError, match="TrainingDataset"):
        fit_distributed(builder, "crop_series", **common)
    with pytest.raises(DataError, match="validation_split 'test'"):
        fit_distributed(builder, DatasetRef.of(crop_dataset, validation_split="test"), **common)
    with pytest.raises(DataError, match="not a tensor feature"):
        fit_distributed(builder, DatasetRef.of(crop_dataset, feature="patch"), **common)
    # found by a rank, in its own process: the error comes back with the rank named, as a DataError
    with pytest.raises(DataError, match="rank 0 .*label_map has 2 entries"):
        fit_distributed(
            builder, DatasetRef.of(crop_dataset, label_map=(0, 1)), n_workers=1, timeout=120, **common
        )


def test_gpu_resource_holds_one_trial_at_a_time(client: Any, crop_dataset: Any, project: Path) -> None:
    """A worker with 2 threads but one GPU runs GPU-requesting trials one after another; training asks for it."""
    from distributed import Client

    from tests.servers.dask_cli import cli_cluster
    from workbench.cluster import gpu_workers, task_resources
    from workbench.experiments import OptimizationConfig, Searchspace, lagom
    from workbench.training.distributed import CropBuilder, fit_distributed

    assert task_resources(client) is None and gpu_workers(client) == []  # the CPU cluster asks for nothing

    def trial(hparams: dict[str, Any], reporter: Any) -> dict[str, float]:
        start = time.time()
        time.sleep(1.5)
        return {"score": float(hparams["x"]), "start": start, "end": time.time()}

    config = OptimizationConfig(
        num_trials=2,
        optimizer="gridsearch",
        searchspace=Searchspace(x=("DISCRETE", [1, 2])),
        optimization_key="score",
        direction="max",
        es_policy="none",
        name="gpu-slots",
    )
    with (
        cli_cluster(1, nthreads=2, resources="GPU=1") as gpu_cluster,
        Client(gpu_cluster.address, set_as_default=False) as gpu,
    ):
        assert task_resources(gpu) == {"GPU": 1.0} and len(gpu_workers(gpu)) == 1
        table = lagom(trial, config, cluster=gpu, project=project).table.sort_values("start")
        assert len(table) == 2 and (table["state"] == "COMPLETE").all()
        assert table["start"].iloc[1] >= table["end"].iloc[0] - 0.05  # the second waited for the GPU
        with pytest.raises(ClusterError, match="1 workers with a GPU resource"):
            fit_distributed(CropBuilder("lstm"), crop_dataset, client=gpu, n_workers=2, project=project)


def test_gpu_check_says_so_without_a_gpu() -> None:
    import subprocess
    import sys

    from workbench.cluster import detect_gpus

    if detect_gpus():
        pytest.skip("this machine has a GPU: scripts/gpu_check.sh measures it instead")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        ["bash", str(root / "scripts" / "gpu_check.sh")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VENV_PYTHON": sys.executable},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no GPU on this machine" in out.stdout
