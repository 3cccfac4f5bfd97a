"""Online lookup latency: ``fv.get_feature_vector`` for one entry among N, against a bare sqlite SELECT by key.

Usage: python benchmarks/featurestore_online_lookup.py [--small]
Last line: ``online_lookup_p99_vs_bare_sqlite: <ratio>x`` (target: p99 <= 1 ms in-process).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.featurestore import FeatureStore


def _percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="10k rows, 2k lookups")
    args = parser.parse_args()
    rows, lookups = (10_000, 2_000) if args.small else (100_000, 10_000)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        fs = FeatureStore(tmp)
        fg = fs.create_feature_group("pixels", 1, primary_key=["pid"], online_enabled=True)
        frame = pd.DataFrame(
            {
                "pid": np.arange(rows),
                "tile": np.array(["33TWM", "33TWN"])[np.arange(rows) % 2],
                **{f"b{i}": rng.random(rows) for i in range(10)},
                "label": rng.integers(0, 5, rows),
            }
        )
        fg.insert(frame)
        fv = fs.create_feature_view("pixels_view", 1, query=fg.select_all(), labels=["label"])
        keys = rng.integers(0, rows, lookups).tolist()
        for k in keys[:200]:
            fv.get_feature_vector({"pid": k})
        store_times = []
        for k in keys:
            t0 = time.perf_counter()
            fv.get_feature_vector({"pid": k})
            store_times.append(time.perf_counter() - t0)

        con = sqlite3.connect(Path(tmp) / ".workbench" / "online_store.sqlite")
        columns = ", ".join(f'"{c}"' for c in fv.features)
        sql = f'SELECT {columns} FROM "fg_pixels_1" WHERE "pid" = ?'
        for k in keys[:200]:
            con.execute(sql, (k,)).fetchone()
        bare_times = []
        for k in keys:
            t0 = time.perf_counter()
            con.execute(sql, (k,)).fetchone()
            bare_times.append(time.perf_counter() - t0)
        con.close()
    s50, s99 = _percentiles(store_times)
    b50, b99 = _percentiles(bare_times)
    print(f"rows: {rows}, lookups: {lookups}")
    print(f"get_feature_vector: p50 {s50:.3f} ms, p99 {s99:.3f} ms")
    print(f"bare sqlite SELECT: p50 {b50:.3f} ms, p99 {b99:.3f} ms")
    print(f"target p99 <= 1 ms: {'met' if s99 <= 1.0 else 'NOT met'}")
    print(f"online_lookup_p99_vs_bare_sqlite: {s99 / b99:.1f}x")


if __name__ == "__main__":
    main()
