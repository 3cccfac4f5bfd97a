"""Insert cost of an online-enabled feature group against the same insert into an offline-only group.

Both runs insert the same pandas frame (pixel id, event time, a float32 feature,
an integer label, a tile string) into a new group; the online-enabled one also
upserts the rows into the sqlite online store, staged while the Delta commit
runs and committed after it. The floor of that upsert, sqlite's own
``executemany`` of the same rows in one transaction, is printed too.

Usage: python benchmarks/featurestore_online_insert.py [--small]
Last line: ``online_insert_vs_offline_insert: <ratio>x`` (median of the repeats).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.featurestore import FeatureStore


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "pixel_id": np.arange(rows),
        "observed": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, rows), "D"),
        "ndvi": rng.random(rows).astype("float32"),
        "label": rng.integers(0, 5, rows),
        "tile": rng.choice(["33TWM", "33TWN"], rows),
    })


def _insert(frame: pd.DataFrame, *, online: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        fs = FeatureStore(tmp, root=Path(tmp) / "fs", online_path=Path(tmp) / "online.sqlite")
        fg = fs.create_feature_group("px", 1, primary_key=["pixel_id"], event_time="observed", online_enabled=online)
        start = time.perf_counter()
        fg.insert(frame)
        return time.perf_counter() - start


def _sqlite_floor(frame: pd.DataFrame) -> float:
    rows = list(zip(frame["pixel_id"].tolist(), frame["observed"].astype(str).tolist(), frame["ndvi"].tolist(),
                    frame["label"].tolist(), frame["tile"].tolist()))
    with tempfile.TemporaryDirectory() as tmp:
        con = sqlite3.connect(Path(tmp) / "floor.sqlite", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE t (a INTEGER, b TEXT, c REAL, d INTEGER, e TEXT, PRIMARY KEY (a)) WITHOUT ROWID")
        start = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        elapsed = time.perf_counter() - start
        con.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="100k rows instead of 1M")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = 100_000 if args.small else 1_000_000
    frame = _frame(rows)
    offline, online = [], []
    for _ in range(args.repeats):
        offline.append(_insert(frame, online=False))
        online.append(_insert(frame, online=True))
    floor = _sqlite_floor(frame)
    off, on = statistics.median(offline), statistics.median(online)
    print(f"rows: {rows:,}")
    print(f"offline insert (baseline, Delta only): {off:.2f} s")
    print(f"online-enabled insert (Delta + sqlite upsert): {on:.2f} s")
    print(f"sqlite executemany floor of the same rows: {floor:.2f} s")
    print(f"online_insert_vs_offline_insert: {on / off:.2f}x")


if __name__ == "__main__":
    main()
