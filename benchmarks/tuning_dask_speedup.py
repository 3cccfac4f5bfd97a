"""Tuning on Dask: wall time of 8 trials on 1 worker vs 2 workers (one trial per worker at a time).

Each trial does CPU-bound numpy work (single-threaded) for about a second,
broadcasting its metric ten times. The time measured is lagom's trial phase
(submitting, running and tracking the trials), not the cluster start-up.

Usage: python benchmarks/tuning_dask_speedup.py [--small]
Last line: ``tuning_speedup_2_vs_1_workers: <ratio>x`` (target >= 1.7x).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from workbench.experiments import OptimizationConfig, Reporter, Searchspace, lagom  # noqa: E402


def make_train(seconds: float):  # noqa: ANN201 - returns a train function
    def train(hp: dict[str, Any], reporter: Reporter) -> float:
        import numpy as np

        rng = np.random.default_rng(int(hp["layers"]))
        a = rng.random((200, 200))
        for epoch in range(10):  # ten "epochs" of CPU work, the metric broadcast after each
            end = time.perf_counter() + seconds / 10
            while time.perf_counter() < end:
                a = np.tanh(a @ a.T / 200.0)
            reporter.broadcast(float(a.mean()) * hp["lr"], epoch)
        return float(a.mean()) * hp["lr"]

    return train


def _run(workers: int, trials: int, seconds: float, project: str) -> float:
    from distributed import Client, LocalCluster

    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", env=env
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: bool(__import__("optuna") and __import__("optuna_integration")))
        space = Searchspace(lr=("DOUBLE", [1e-4, 1e-2], "log"), layers=("INTEGER", [2, 4]))
        config = OptimizationConfig(
            num_trials=trials,
            optimizer="randomsearch",
            searchspace=space,
            es_policy="none",
            name=f"speedup-{workers}",
        )
        result = lagom(make_train(seconds), config, cluster=client, project=project)
    assert (result.table["state"] == "COMPLETE").all()
    return result.timings["trials"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="trials of 0.5 s")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    seconds = 0.5 if args.small else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        _run(1, 1, 0.1, tmp)  # creates the MLflow store and imports everything once
        one = _run(1, 8, seconds, tmp)
        two = _run(2, 8, seconds, tmp)
    print(
        f"8 trials of {seconds:g} s CPU work: 1 worker {one:.2f} s, 2 workers {two:.2f} s (cores: {os.cpu_count()})"
    )
    print(f"tuning_speedup_2_vs_1_workers: {one / two:.2f}x")


if __name__ == "__main__":
    main()
