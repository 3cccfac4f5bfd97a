"""Tuning overhead: ``lagom`` (Optuna TPE + MLflow tracking of every trial) vs calling ``train_fn`` directly.

The train function sleeps 50 ms in 5 steps (stands for training) and
broadcasts its metric at each step.

Usage: python benchmarks/tuning_overhead.py [--small]
The overhead per trial is the time lagom spends running and tracking the
trials, less the direct calls, per trial; the fixed cost of an experiment's
summary (plots, summary run) is reported apart.

Last lines: the overhead per trial in ms (target <= 50 ms), then
``tuning_time_vs_direct_calls: <ratio>x`` (the whole experiment).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from typing import Any

from workbench.experiments import OptimizationConfig, Reporter, Searchspace, lagom


def train(hp: dict[str, Any], reporter: Reporter) -> float:
    value = 0.0
    for step in range(5):
        time.sleep(0.01)
        value = -((hp["lr"] - 0.003) ** 2) + step * 1e-6 + hp["layers"] * 1e-7
        reporter.broadcast(value, step)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="20 trials")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    n = 20 if args.small else 60
    space = Searchspace(lr=("DOUBLE", [1e-4, 1e-2], "log"), layers=("INTEGER", [2, 4]))
    with tempfile.TemporaryDirectory() as tmp:
        warm = OptimizationConfig(
            num_trials=4, optimizer="tpe", searchspace=space, es_policy="none", name="warm"
        )
        lagom(train, warm, project=tmp)  # creates the MLflow store, imports matplotlib: not per-trial costs
        t0 = time.perf_counter()
        for i in range(n):
            train({"lr": 1e-3 + i * 1e-5, "layers": 2 + i % 3}, Reporter())
        direct = time.perf_counter() - t0
        config = OptimizationConfig(
            num_trials=n,
            optimizer="tpe",
            searchspace=space,
            es_policy="none",
            optimization_key="metric",
            name="overhead",
        )
        t0 = time.perf_counter()
        result = lagom(train, config, project=tmp)
        total = time.perf_counter() - t0
    assert len(result.table) == n
    per_trial = (result.timings["trials"] - direct) / n
    print(
        f"{n} trials: direct calls {direct:.2f} s; lagom {total:.2f} s = trials {result.timings['trials']:.2f} s "
        f"+ summary (plots, summary run) {result.timings['summary']:.2f} s"
    )
    print(
        f"overhead per trial (Optuna TPE ask/tell + MLflow child run): {per_trial * 1000:.1f} ms "
        f"(target <= 50 ms: {'met' if per_trial * 1000 <= 50 else 'NOT met'})"
    )
    print(f"tuning_time_vs_direct_calls: {total / direct:.2f}x")


if __name__ == "__main__":
    main()
