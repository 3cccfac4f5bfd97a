"""Online store: the latest row of each primary key of online-enabled feature groups, in sqlite.

One table per feature group (``WITHOUT ROWID``, keyed by its primary key);
inserts are upserts. Lookups reuse one connection per thread and sqlite's
prepared-statement cache, so a lookup by key costs tens of microseconds.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.featurestore._common import FeatureStoreError

if TYPE_CHECKING:
    from workbench.featurestore.feature_group import FeatureGroup

__all__ = ["OnlineStore"]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_type(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        return "INTEGER"
    if pd.api.types.is_float_dtype(dtype):
        return "REAL"
    return "TEXT"


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (np.integer, np.bool_)):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def _column_cells(series: pd.Series) -> list[Any]:
    """The sqlite values of a column, converted per column (not per cell): what :func:`_cell` gives each value."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        if series.hasnans:
            return [None if pd.isna(v) else int(v) for v in series.to_numpy(dtype=object)]
        return series.to_numpy(dtype=np.int64).tolist()
    if pd.api.types.is_integer_dtype(dtype):
        if series.hasnans:  # nullable Int64 with <NA>
            return [None if pd.isna(v) else int(v) for v in series.to_numpy(dtype=object)]
        return series.to_numpy(dtype=np.int64).tolist()
    if pd.api.types.is_float_dtype(dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        out = values.astype(object)
        out[np.isnan(values)] = None
        return out.tolist()
    if pd.api.types.is_datetime64_any_dtype(dtype) and getattr(dtype, "tz", None) is None:
        return _iso_strings(series.to_numpy(dtype="datetime64[ns]"))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return [None if v is pd.NaT else v.isoformat() for v in series]
    if dtype == object and pd.api.types.infer_dtype(series, skipna=False) == "string":
        return series.tolist()
    return [_cell(v) for v in series.to_numpy(dtype=object)]


def _iso_strings(values: np.ndarray) -> list[Any]:
    """``Timestamp.isoformat()`` of naive datetime64[ns] values, vectorised (NaT → None)."""
    nat = np.isnat(values)
    ns = values.astype(np.int64)[~nat]
    unit = "s" if not (ns % 10**9).any() else "us" if not (ns % 1000).any() else "ns"
    out = np.datetime_as_string(values, unit=unit).astype(object)
    out[nat] = None
    return out.tolist()


class OnlineStore:
    """sqlite online store at ``path`` (WAL mode; safe for several processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._columns: dict[str, list[str]] = {}
        self._statements: dict[tuple[str, tuple[str, ...]], str] = {}

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False, cached_statements=256
            )
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    @staticmethod
    def table_name(group: "FeatureGroup") -> str:
        """Name of the sqlite table of a feature group."""
        return f"fg_{group.name}_{group.version}"

    def upsert(self, group: "FeatureGroup", frame: pd.DataFrame, tensors: Mapping[str, np.ndarray]) -> int:
        """Insert or replace the rows of ``frame`` (and tensor features as raw bytes); return the row count."""
        staged = self.stage_upsert(group, frame, tensors)
        return staged.commit()

    def stage_upsert(
        self, group: "FeatureGroup", frame: pd.DataFrame, tensors: Mapping[str, np.ndarray]
    ) -> "StagedUpsert":
        """Start writing the rows in a background thread, in one open transaction; commit or roll back later.

        A feature-group insert stages its online rows while the offline (Delta)
        commit runs, then commits them only if that commit succeeded: the online
        table never shows rows the offline table lacks.
        """
        return StagedUpsert(self, group, frame, tensors)

    def _write(
        self, con: sqlite3.Connection, group: "FeatureGroup", frame: pd.DataFrame, tensors: Mapping[str, np.ndarray]
    ) -> int:
        """Create/extend the table, then BEGIN and insert every row (the caller commits or rolls back)."""
        table = self.table_name(group)
        columns = [str(c) for c in frame.columns] + list(tensors)
        types = {str(c): _sql_type(frame[c].dtype) for c in frame.columns}
        types.update({t: "BLOB" for t in tensors})
        defs = ", ".join(f"{_q(c)} {types[c]}" for c in columns)
        keys = ", ".join(_q(k) for k in group.primary_key)
        con.execute("BEGIN IMMEDIATE")
        con.execute(f"CREATE TABLE IF NOT EXISTS {_q(table)} ({defs}, PRIMARY KEY ({keys})) WITHOUT ROWID")
        existing = [r[1] for r in con.execute(f"PRAGMA table_info({_q(table)})")]
        for c in columns:
            if c not in existing:
                con.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(c)} {types[c]}")
        cells = [_column_cells(frame[c]) for c in frame.columns]
        blobs = [np.ascontiguousarray(a) for a in tensors.values()]
        cells += [[row.tobytes() for row in b] for b in blobs]
        values = list(zip(*cells)) if cells else []
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT OR REPLACE INTO {_q(table)} ({', '.join(_q(c) for c in columns)}) VALUES ({marks})"
        con.executemany(sql, values)
        return len(values)

    def columns(self, group: "FeatureGroup") -> list[str]:
        """Columns of a feature group's online table (empty if it has none)."""
        table = self.table_name(group)
        if table not in self._columns:
            self._columns[table] = [r[1] for r in self._con().execute(f"PRAGMA table_info({_q(table)})")]
        return self._columns[table]

    def get(
        self, group: "FeatureGroup", key: Sequence[Any], features: Sequence[str]
    ) -> tuple[Any, ...] | None:
        """The values of ``features`` for primary-key values ``key``, or None when absent."""
        table = self.table_name(group)
        signature = (table, tuple(features))
        sql = self._statements.get(signature)
        if sql is None:
            have = self.columns(group)
            if not have:
                raise FeatureStoreError(
                    f"feature group {group.name!r} v{group.version} has no online data: create it with "
                    "online_enabled=True and insert rows"
                )
            if missing := [f for f in features if f not in have]:
                raise FeatureStoreError(f"online table of {group.name!r} has no column(s) {missing}")
            where = " AND ".join(f"{_q(k)} = ?" for k in group.primary_key)
            sql = f"SELECT {', '.join(_q(f) for f in features)} FROM {_q(table)} WHERE {where}"
            self._statements[signature] = sql
        return self._con().execute(sql, tuple(_cell(k) for k in key)).fetchone()

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


class StagedUpsert:
    """Online rows being written in a background thread inside one sqlite transaction."""

    def __init__(
        self, store: OnlineStore, group: "FeatureGroup", frame: pd.DataFrame, tensors: Mapping[str, np.ndarray]
    ) -> None:
        self._store = store
        self._table = store.table_name(group)
        self._con = sqlite3.connect(store.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._rows = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(group, frame, tensors), daemon=True,
                                        name=f"online-upsert-{self._table}")
        self._thread.start()

    def _run(self, group: "FeatureGroup", frame: pd.DataFrame, tensors: Mapping[str, np.ndarray]) -> None:
        try:
            self._rows = self._store._write(self._con, group, frame, tensors)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of commit()
            self._error = exc

    def commit(self) -> int:
        """Wait for the rows, commit them and return their count (re-raises the writer's error)."""
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            self._con.execute("COMMIT")
        except BaseException:
            self._abort()
            raise
        finally:
            self._con.close()
            self._store._columns.pop(self._table, None)
        return self._rows

    def rollback(self) -> None:
        """Wait for the writer, then drop everything it wrote."""
        self._thread.join()
        self._abort()
        self._con.close()

    def _abort(self) -> None:
        if self._con.in_transaction:
            self._con.execute("ROLLBACK")
