"""Time travel: reading the version of 10 commits ago versus the latest version of a feature group.

Usage: python benchmarks/time_travel.py [--small]
Last line: ``time_travel_read_10_commits_ago_vs_latest: <ratio>x`` (target <= 1.5x).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import pandas as pd

from workbench.featurestore import FeatureStore


def _best_of(fn, repeats: int) -> float:  # noqa: ANN001 - a zero-argument callable
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="20 commits of 5k rows")
    args = parser.parse_args()
    commits, rows = (20, 5_000) if args.small else (30, 50_000)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        fg = FeatureStore(tmp).create_feature_group("pixels", 1, primary_key=["pid"], event_time="t")
        for c in range(commits):
            ids = np.arange(c * rows, (c + 1) * rows)
            fg.insert(
                pd.DataFrame(
                    {
                        "pid": ids,
                        "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(ids, "s"),
                        "ndvi": rng.random(rows),
                        "b8": rng.random(rows),
                        "label": ids % 5,
                    }
                )
            )
        latest = fg.current_version()
        old = latest - 10
        fg.read(version=latest)
        fg.read(version=old)
        t_latest = _best_of(lambda: fg.read(version=latest), 5)
        t_old = _best_of(lambda: fg.read(version=old), 5)
        when = fg.commit_details()[old]["committed_at"]
        t_wall = _best_of(lambda: fg.read(when), 5)
    print(f"commits: {commits} of {rows} rows")
    print(f"read latest (v{latest}, {commits * rows} rows): {t_latest * 1000:.1f} ms")
    print(
        f"read v{old} ({(old + 1) * rows} rows): {t_old * 1000:.1f} ms; by wall-clock time: {t_wall * 1000:.1f} ms"
    )
    print(f"time_travel_read_10_commits_ago_vs_latest: {t_old / t_latest:.2f}x")


if __name__ == "__main__":
    main()
