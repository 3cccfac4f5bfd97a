"""Feature groups: one Delta table per (name, version); every insert is one Delta commit."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from workbench import storage
from workbench.featurestore import _tensors
from workbench.featurestore._common import FeatureStoreError
from workbench.featurestore._log import commit_infos
from workbench.featurestore._time import to_wallclock
from workbench.featurestore.statistics import frame_statistics, merge_statistics

if TYPE_CHECKING:
    import deltalake

    from workbench.featurestore.query import Query
    from workbench.featurestore.store import FeatureStore

__all__ = ["FeatureGroup", "INSERT_MODES"]

log = logging.getLogger(__name__)

INSERT_MODES = ("append", "upsert", "overwrite")
#: Narrower column types a wider input may be cast to when every value survives the cast exactly.
_NARROWING = {
    "double": {"float"},
    "long": {"integer", "short", "byte"},
    "integer": {"short", "byte"},
    "short": {"byte"},
}
COMMIT_KEY = "workbench.commit"
_WIDENING = {
    "byte": {"byte"},
    "short": {"byte", "short"},
    "integer": {"byte", "short", "integer"},
    "long": {"byte", "short", "integer", "long"},
    "float": {"float"},
    "double": {"float", "double"},
}


def _delta_type(field: Any) -> str:
    text = str(field.type)
    if text.startswith('PrimitiveType("'):
        return text[len('PrimitiveType("') : -2]
    return text


def cast_lossless(table: pa.Table, target: pa.Schema, what: str) -> pa.Table:
    """Cast ``table`` to ``target``, refusing a narrowing cast that would change any value.

    float64 → float32 is allowed when every value is exactly representable in
    float32 (NaN stays NaN); int64 → int32 (and smaller) when every value is in
    range. Otherwise the error names the column, the numpy types and the first
    value that would change.
    """
    import pyarrow.compute as pc

    columns = []
    for name in target.names:
        have, want = table.schema.field(name).type, target.field(name).type
        column = table.column(name)
        numeric = all(pa.types.is_floating(t) or pa.types.is_integer(t) for t in (have, want))
        if have == want or not numeric or want.bit_width >= have.bit_width:
            try:
                columns.append(column.cast(want))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise FeatureStoreError(f"{what}: column {name!r} cannot be converted to {want}: {exc}") from exc
            continue
        try:
            back = column.cast(want, safe=False).cast(have)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FeatureStoreError(
                f"{what}: column {name!r} cannot be cast to {want.to_pandas_dtype().__name__}: {exc}"
            ) from exc
        changed = pc.fill_null(pc.and_(pc.not_equal(column, back),
                                       pc.invert(pc.and_(pc.is_nan(column), pc.is_nan(back)))
                                       if pa.types.is_floating(have) else pc.not_equal(column, back)), False)
        if pc.any(changed).as_py():
            first = column.filter(changed)[0].as_py()
            raise FeatureStoreError(
                f"{what}: column {name!r} is {have.to_pandas_dtype().__name__} and the feature group stores "
                f"{want.to_pandas_dtype().__name__}; value {first!r} (and {pc.sum(changed).as_py() - 1} more) would "
                f"change in the cast; cast it yourself (e.g. frame[{name!r}].astype('{want.to_pandas_dtype().__name__}')) "
                "if that is acceptable"
            )
        columns.append(back.cast(want, safe=False))
    return pa.Table.from_arrays(columns, schema=target)


class FeatureGroup:
    """A versioned table of features keyed by a primary key (a Delta table).

    Get one from :meth:`FeatureStore.create_feature_group` or
    :meth:`FeatureStore.get_feature_group`; do not build it directly.
    """

    def __init__(self, store: "FeatureStore", meta: Mapping[str, Any]) -> None:
        self._store = store
        self._meta = dict(meta)
        self._zarr_cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        """Name of the feature group."""
        return str(self._meta["name"])

    @property
    def version(self) -> int:
        """Version of the feature group (its definition, not its data)."""
        return int(self._meta["version"])

    @property
    def primary_key(self) -> list[str]:
        """Primary-key columns."""
        return list(self._meta["primary_key"])

    @property
    def event_time(self) -> str | None:
        """Event-time column, used for point-in-time joins."""
        return self._meta.get("event_time")

    @property
    def description(self) -> str:
        """Free-text description."""
        return str(self._meta.get("description", ""))

    @property
    def online_enabled(self) -> bool:
        """Whether inserts are also upserted into the online store."""
        return bool(self._meta.get("online_enabled", False))

    @property
    def tensor_features(self) -> dict[str, dict[str, Any]]:
        """Tensor features: ``{name: {"shape": [...], "dtype": "float32"}}``."""
        return {k: dict(v) for k, v in self._meta.get("tensor_features", {}).items()}

    @property
    def location(self) -> str:
        """URL of the Delta table."""
        return storage.join(self._store._group_dir(self.name, self.version), "table")

    def _tensor_url(self, feature: str, store_id: str) -> str:
        return storage.join(
            self._store._group_dir(self.name, self.version), "tensors", feature, f"{store_id}.zarr"
        )

    def __repr__(self) -> str:
        return f"FeatureGroup(name={self.name!r}, version={self.version}, primary_key={self.primary_key})"

    # ------------------------------------------------------------------ Delta access
    def _table(self, version: int | None = None) -> "deltalake.DeltaTable":
        import deltalake

        try:
            return deltalake.DeltaTable(
                self.location, version=version, storage_options=self._store._delta_options
            )
        except deltalake.exceptions.TableNotFoundError:
            raise FeatureStoreError(
                f"feature group {self.name!r} v{self.version} has no data yet: insert a DataFrame first"
            ) from None
        except Exception as exc:  # noqa: BLE001 - delta-rs raises generic errors for a missing version
            if version is not None and "version" in str(exc).lower():
                raise FeatureStoreError(
                    f"feature group {self.name!r} v{self.version} has no commit {version}: {exc}"
                ) from exc
            raise

    def _history(self, limit: int | None = None) -> list[dict[str, Any]]:
        return commit_infos(self.location, storage_options=self._store.storage_options, limit=limit)

    def has_data(self) -> bool:
        """Whether at least one insert was committed."""
        # asked through fsspec: deltalake's is_deltatable holds the GIL while it waits on the network
        log_dir = storage.join(self.location, "_delta_log")
        fs, path = storage.filesystem(log_dir, self._store.storage_options)
        fs.invalidate_cache(path)
        try:
            return any(p.endswith(".json") for p in fs.ls(path, detail=False))
        except FileNotFoundError:
            return False

    def current_version(self) -> int:
        """Delta version (commit number) of the latest commit."""
        return int(self._table().version())

    def version_at(self, wallclock_time: Any) -> int:
        """Delta version in force at ``wallclock_time``.

        ``wallclock_time`` follows :func:`workbench.featurestore._time.to_wallclock`: a datetime or
        date (naive means UTC), an ISO-8601 or ``"%Y%m%d%H%M%S"``-style string, or integer epoch
        milliseconds; ambiguous numbers are refused.
        """
        when = to_wallclock(wallclock_time, "wallclock_time")
        table = self._table()
        history = self._history()
        first = min(h["timestamp"] for h in history)
        if when.timestamp() * 1000 < first:
            raise FeatureStoreError(
                f"feature group {self.name!r} v{self.version}: wallclock_time {when.isoformat()} is before "
                f"its first commit ({_dt.datetime.fromtimestamp(first / 1000, _dt.timezone.utc).isoformat()})"
            )
        table.load_as_version(when)
        return int(table.version())

    def _dataset(self, version: int) -> Any:
        return self._table(version).to_pyarrow_dataset()

    # ------------------------------------------------------------------ validation
    def _check_frame(
        self, columns: Sequence[str], dtypes: Mapping[str, Any], what: str, frame: pd.DataFrame | None = None
    ) -> None:
        missing = [k for k in self.primary_key if k not in columns]
        if missing:
            raise FeatureStoreError(
                f"{what} lacks primary-key column(s) {missing} of feature group {self.name!r}; "
                f"it has columns {list(columns)}"
            )
        if self.event_time:
            if self.event_time not in columns:
                raise FeatureStoreError(f"{what} lacks the event-time column {self.event_time!r}")
            if not pd.api.types.is_datetime64_any_dtype(dtypes[self.event_time]):
                raise FeatureStoreError(
                    f"{what}: event-time column {self.event_time!r} must have a datetime dtype, "
                    f"got {dtypes[self.event_time]}"
                )
            if frame is not None:
                missing_times = int(frame[self.event_time].isna().sum())
                if missing_times:
                    raise FeatureStoreError(
                        f"{what}: event-time column {self.event_time!r} has {missing_times} missing value(s) (NaT); "
                        "every row needs its event time"
                    )
        bad = [c for c in columns if not isinstance(c, str) or "__" in c]
        if bad:
            raise FeatureStoreError(f"{what}: column names must be strings without '__', got {bad}")

    def _check_keys(self, frame: pd.DataFrame, what: str, *, unique: bool = True) -> None:
        for key in self.primary_key:
            nulls = int(frame[key].isna().sum())
            if nulls:
                raise FeatureStoreError(f"{what}: primary-key column {key!r} has {nulls} null value(s)")
        if unique and len(frame):
            dup = frame.duplicated(subset=self.primary_key)
            if dup.any():
                first = frame.loc[dup, self.primary_key].iloc[0].to_dict()
                raise FeatureStoreError(
                    f"{what}: {int(dup.sum())} row(s) repeat a primary key of the same insert, e.g. {first}"
                )

    def _check_schema(self, schema: pa.Schema, what: str) -> pa.Schema | None:
        """Compare ``schema`` with the table's; return the table's Arrow schema to cast to (or None)."""
        import deltalake

        if not self.has_data():
            return None
        table = self._table()
        have = {f.name: _delta_type(f) for f in table.schema().fields}
        new = {f.name: _delta_type(f) for f in deltalake.Schema.from_arrow(schema).fields}
        if set(have) != set(new):
            raise FeatureStoreError(
                f"{what} does not match the schema of feature group {self.name!r} v{self.version}: "
                f"missing column(s) {sorted(set(have) - set(new))}, unexpected column(s) "
                f"{sorted(set(new) - set(have))}"
            )
        wrong = {
            n: (new[n], have[n])
            for n in have
            if new[n] != have[n]
            and new[n] not in _WIDENING.get(have[n], set())
            and have[n] not in _NARROWING.get(new[n], set())
        }
        if wrong:
            text = ", ".join(f"{n!r} is {a} (expected {b})" for n, (a, b) in sorted(wrong.items()))
            raise FeatureStoreError(
                f"{what} does not match the schema of feature group {self.name!r}: {text}"
            )
        target = table.to_pyarrow_dataset().schema
        return pa.schema([target.field(n) for n in schema.names])

    def _tensor_arrays(
        self, frame: pd.DataFrame, tensors: Mapping[str, Any] | None, what: str
    ) -> dict[str, np.ndarray]:
        spec = self.tensor_features
        given = dict(tensors or {})
        unknown = sorted(set(given) - set(spec))
        if unknown:
            raise FeatureStoreError(
                f"{what}: {unknown} are not tensor features of {self.name!r} ({sorted(spec)})"
            )
        out: dict[str, np.ndarray] = {}
        for name, info in spec.items():
            if name in given:
                array = np.asarray(given[name])
            elif name in frame.columns:
                cells = frame[name].to_numpy()
                try:
                    array = (
                        np.stack([np.asarray(c) for c in cells])
                        if len(cells)
                        else np.empty((0, *info["shape"]))
                    )
                except ValueError as exc:
                    raise FeatureStoreError(
                        f"{what}: tensor feature {name!r} has cells of different shapes"
                    ) from exc
            else:
                raise FeatureStoreError(
                    f"{what} lacks tensor feature {name!r}: give it as a column of arrays or tensors={{{name!r}: array}}"
                )
            if tuple(array.shape[1:]) != tuple(info["shape"]) or array.shape[0] != len(frame):
                raise FeatureStoreError(
                    f"{what}: tensor feature {name!r} has shape {array.shape}; expected "
                    f"({len(frame)}, {', '.join(map(str, info['shape']))})"
                )
            if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
                raise FeatureStoreError(
                    f"{what}: tensor feature {name!r} must be numeric, got dtype {array.dtype}"
                )
            out[name] = array.astype(info["dtype"], copy=False)
        return out

    # ------------------------------------------------------------------ insert
    def insert(
        self,
        data: Any,
        *,
        tensors: Mapping[str, Any] | None = None,
        mode: str = "append",
    ) -> int:
        """Insert rows as one atomic commit; return the new Delta version.

        Parameters
        ----------
        data
            A pandas or Dask DataFrame with the primary key, event time and features.
        tensors
            Arrays for tensor features, rows aligned with ``data`` (else the
            tensor features are read from ``data`` as columns of arrays).
        mode
            ``"append"`` (default), ``"upsert"`` (replace rows whose primary key
            exists, insert the others) or ``"overwrite"`` (replace all rows; older
            versions stay readable by time travel).

        Raises
        ------
        FeatureStoreError
            On a missing primary key, null or repeated keys, a schema that does
            not match earlier inserts, or a malformed tensor; nothing is written.
        """
        if mode not in INSERT_MODES:
            raise FeatureStoreError(f"insert mode must be one of {INSERT_MODES}, got {mode!r}")
        what = f"insert into feature group {self.name!r} v{self.version}"
        try:
            import dask.dataframe as dd

            is_dask = isinstance(data, dd.DataFrame)
        except ImportError:  # pragma: no cover - dask is a dependency
            is_dask = False
        if is_dask:
            return self._insert_dask(data, mode=mode, what=what)
        if not isinstance(data, pd.DataFrame):
            raise FeatureStoreError(
                f"{what}: data must be a pandas or Dask DataFrame, got {type(data).__name__}"
            )
        if not len(data.columns):
            raise FeatureStoreError(f"{what}: the DataFrame has no columns")
        frame = data.reset_index(drop=True)
        self._check_frame(list(frame.columns), frame.dtypes.to_dict(), what, frame)
        self._check_keys(frame, what)
        arrays = self._tensor_arrays(frame, tensors, what)
        tabular = frame.drop(columns=[c for c in self.tensor_features if c in frame.columns])
        stats = frame_statistics(tabular, tensors=arrays)
        commit_id = uuid.uuid4().hex
        refs = tabular.copy(deep=False)
        for name in arrays:
            refs[_tensors.store_column(name)] = pd.Series([commit_id] * len(refs), dtype=object).astype(str)
            refs[_tensors.row_column(name)] = np.arange(len(refs), dtype="int64")
        table = pa.Table.from_pandas(refs, preserve_index=False)
        table = table.replace_schema_metadata(None)
        target = self._check_schema(table.schema, what)
        if target is not None:
            table = cast_lossless(table, target, what)
        for name, array in arrays.items():
            _tensors.write_tensor(
                self._tensor_url(name, commit_id), array, storage_options=self._store.storage_options
            )
        # the online rows are written while the Delta commit runs, and committed only after it succeeded
        staged = self._store.online.stage_upsert(self, tabular, arrays) if self.online_enabled else None
        try:
            version = self._commit(table, stats=stats, commit_id=commit_id, mode=mode)
        except BaseException:
            if staged is not None:
                staged.rollback()
            raise
        if staged is not None:
            staged.commit()
        return version

    def _insert_dask(self, ddf: Any, *, mode: str, what: str) -> int:
        import dask

        if self.tensor_features:
            raise FeatureStoreError(f"{what}: tensor features need a pandas DataFrame (Dask given)")
        if mode == "upsert":
            raise FeatureStoreError(f"{what}: mode 'upsert' needs a pandas DataFrame (Dask given)")
        meta = ddf._meta
        self._check_frame(list(meta.columns), meta.dtypes.to_dict(), what)
        schema = pa.Schema.from_pandas(meta, preserve_index=False).remove_metadata()
        target = self._check_schema(schema, what)
        numeric = [
            c
            for c in meta.columns
            if pd.api.types.is_numeric_dtype(meta[c].dtype) and not pd.api.types.is_bool_dtype(meta[c].dtype)
        ]
        edges: dict[str, list[float]] = {}
        if numeric:
            lo, hi = dask.compute(ddf[numeric].min(), ddf[numeric].max())
            for col in numeric:
                a, b = float(lo[col]), float(hi[col])
                if np.isfinite(a) and np.isfinite(b):
                    edges[col] = np.linspace(a, b if b > a else a + 1.0, 21).tolist()
        parts: list[dict[str, Any]] = []
        seen_keys: set[tuple[Any, ...]] = set()

        def batches() -> Iterator[pa.RecordBatch]:
            for i in range(ddf.npartitions):
                part = ddf.get_partition(i).compute().reset_index(drop=True)
                self._check_frame(list(part.columns), part.dtypes.to_dict(), f"{what} (partition {i})", part)
                self._check_keys(part, f"{what} (partition {i})")
                keys = set(map(tuple, part[self.primary_key].itertuples(index=False, name=None)))
                if seen_keys & keys:
                    raise FeatureStoreError(
                        f"{what}: partition {i} repeats primary keys of an earlier partition"
                    )
                seen_keys.update(keys)
                parts.append(frame_statistics(part, edges=edges))
                table = pa.Table.from_pandas(part, preserve_index=False).replace_schema_metadata(None)
                table = cast_lossless(table, target if target is not None else schema, f"{what} (partition {i})")
                yield from table.to_batches()

        reader = pa.RecordBatchReader.from_batches(target if target is not None else schema, batches())
        commit_id = uuid.uuid4().hex
        # statistics are known only once the data went through: stage the partitions as Parquet under a
        # private prefix (validating each), then commit the staged files with their statistics in one step
        staging = storage.join(self._store._group_dir(self.name, self.version), "staging", commit_id)
        fs, path = storage.filesystem(staging, self._store.storage_options)
        try:
            pads.write_dataset(
                reader,
                path,
                format="parquet",
                filesystem=fs,
                basename_template="part-{i}.parquet",
                max_rows_per_file=1 << 20,
            )

            def staged() -> pa.RecordBatchReader:
                return pads.dataset(path, format="parquet", filesystem=fs).scanner().to_reader()

            version = self._commit(staged, stats=merge_statistics(parts), commit_id=commit_id, mode=mode)
        finally:
            storage.remove(staging, storage_options=self._store.storage_options)
        if self.online_enabled:
            # after the offline commit, as for pandas inserts; the partitions are computed once more
            for i in range(ddf.npartitions):
                self._store.online.upsert(self, ddf.get_partition(i).compute().reset_index(drop=True), {})
        return version

    def _commit(self, data: Any, *, stats: Mapping[str, Any], commit_id: str, mode: str) -> int:
        """Commit ``data`` (an Arrow table, or a callable giving a fresh reader) in one Delta commit.

        Concurrent appends are retried by deltalake itself; a lost race to create the table, or a
        conflicting concurrent upsert, is retried here on the fresh table state.
        """
        import deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        opts = self._store._delta_options or None
        info = {"commit_id": commit_id, "operation": mode, "rows": stats["rows"], "statistics": stats}
        metadata = {COMMIT_KEY: json.dumps(info, default=float)}
        attempts = 20
        for attempt in range(attempts):
            exists = self.has_data()
            source = data() if callable(data) else data
            # deltalake retries a conflicting append by itself; a commit that creates the table must not be
            # retried that way (it would land as a later version: a second upsert "creation" appending
            # duplicate keys): it fails, and this loop retries it on the table the other writer created
            properties = deltalake.CommitProperties(
                custom_metadata=metadata, max_commit_retries=200 if exists else 0
            )
            try:
                if mode == "upsert" and exists:
                    predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in self.primary_key)
                    (
                        self._table()
                        .merge(
                            source,
                            predicate=predicate,
                            source_alias="s",
                            target_alias="t",
                            commit_properties=properties,
                        )
                        .when_matched_update_all()
                        .when_not_matched_insert_all()
                        .execute()
                    )
                else:
                    deltalake.write_deltalake(
                        self.location,
                        source,
                        # the first upsert creates the table and must lose a race to create it
                        # (then it merges), never be retried into a plain append of duplicate keys
                        mode={"overwrite": "overwrite", "upsert": "error"}.get(mode, "append"),
                        storage_options=opts,
                        commit_properties=properties,
                    )
                break
            except (CommitFailedError, DeltaError) as exc:
                text = str(exc).lower()
                # a writer that found no table commits the table's metadata with its data; when another
                # writer created the table first, that commit fails (already exists, version 0 taken,
                # metadata changed since): retry on the table as it now is
                created_elsewhere = isinstance(exc, CommitFailedError) or any(
                    w in text for w in ("exists", "version 0", "conflict")
                )
                lost_race = (not exists and created_elsewhere) or (
                    mode == "upsert" and any(w in text for w in ("conflict", "concurrent"))
                )
                if lost_race and attempt < attempts - 1:
                    log.debug("feature group %s: commit retried after %s", self.name, exc)
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise FeatureStoreError(
                    f"commit to feature group {self.name!r} v{self.version} failed: {exc}"
                ) from exc
        version = self._find_commit(commit_id)
        log.info("feature group %s v%d: commit %d (%s)", self.name, self.version, version, mode)
        return version

    def _find_commit(self, commit_id: str) -> int:
        for entry in self._history(200):
            raw = entry.get(COMMIT_KEY)
            if raw and json.loads(raw).get("commit_id") == commit_id:
                return int(entry["version"])
        raise FeatureStoreError(
            f"feature group {self.name!r}: commit {commit_id} not found in the table history"
        )

    # ------------------------------------------------------------------ read
    def read(
        self,
        wallclock_time: Any = None,
        *,
        version: int | None = None,
        columns: Sequence[str] | None = None,
        load_tensors: bool = True,
    ) -> pd.DataFrame:
        """Read the rows of the latest commit, of the commit in force at ``wallclock_time``, or of ``version``.

        Tensor features come back as columns of arrays when ``load_tensors``;
        otherwise as the ``<name>__store``/``<name>__row`` reference columns.
        """
        if wallclock_time is not None and version is not None:
            raise FeatureStoreError("give either wallclock_time or version, not both")
        if wallclock_time is not None:
            version = self.version_at(wallclock_time)
        query = self.select_all() if columns is None else self.select(list(columns))
        return query.as_of_version(version if version is not None else self.current_version()).read(
            load_tensors=load_tensors
        )

    def read_tensor(self, name: str, frame: pd.DataFrame) -> np.ndarray:
        """Stack tensor feature ``name`` of the rows of ``frame`` (read with ``load_tensors=False``)."""
        spec = self.tensor_features.get(name)
        if spec is None:
            raise FeatureStoreError(
                f"{name!r} is not a tensor feature of {self.name!r} ({sorted(self.tensor_features)})"
            )
        scol, rcol = _tensors.store_column(name), _tensors.row_column(name)
        if scol not in frame.columns or rcol not in frame.columns:
            raise FeatureStoreError(
                f"frame lacks the reference columns {scol!r}/{rcol!r}; read with load_tensors=False"
            )
        stores = frame[scol].astype(str).to_numpy()
        arrays = {s: self._open_tensor(name, s) for s in np.unique(stores)}
        return _tensors.gather_rows(
            arrays, stores, frame[rcol].to_numpy(), shape=spec["shape"], dtype=spec["dtype"]
        )

    def _open_tensor(self, name: str, store_id: str) -> Any:
        key = f"{name}/{store_id}"
        if key not in self._zarr_cache:
            self._zarr_cache[key] = _tensors.open_tensor(
                self._tensor_url(name, store_id), storage_options=self._store.storage_options
            )
        return self._zarr_cache[key]

    # ------------------------------------------------------------------ queries
    def select_all(self) -> "Query":
        """A query of every feature of this group."""
        return self.select(self.feature_names())

    def select(self, features: Sequence[str]) -> "Query":
        """A query of some features (the primary key and event time are added)."""
        from workbench.featurestore.query import Query

        names = self.feature_names()
        if isinstance(features, str) or not all(isinstance(f, str) for f in features):
            raise FeatureStoreError(f"features must be a list of names, got {features!r}")
        unknown = [f for f in features if f not in names]
        if unknown:
            raise FeatureStoreError(
                f"feature group {self.name!r} has no feature(s) {unknown}; it has {names}"
            )
        keep = [f for f in names if f in set(features) | set(self.primary_key) | {self.event_time}]
        return Query(self, keep)

    def select_except(self, features: Sequence[str]) -> "Query":
        """A query of every feature except ``features``."""
        return self.select([f for f in self.feature_names() if f not in set(features)])

    def as_of(self, wallclock_time: Any) -> "Query":
        """A query of every feature as it was at ``wallclock_time`` (time travel)."""
        return self.select_all().as_of(wallclock_time)

    def feature_names(self) -> list[str]:
        """Names of the features (table columns, with tensor features under their own names)."""
        if not self.has_data():
            return (
                list(self.primary_key)
                + ([self.event_time] if self.event_time else [])
                + list(self.tensor_features)
            )
        names: list[str] = []
        for field in self._table().schema().fields:
            base = field.name.split("__")[0] if "__" in field.name else field.name
            if base not in names:
                names.append(base)
        return names

    # ------------------------------------------------------------------ commits
    def commit_details(self, limit: int | None = None) -> dict[int, dict[str, Any]]:
        """Commits, newest first: ``{version: {committed_at, operation, rows, commit_id}}``."""
        out: dict[int, dict[str, Any]] = {}
        for entry in self._history(limit):
            raw = entry.get(COMMIT_KEY)
            info = json.loads(raw) if raw else {}
            out[int(entry["version"])] = {
                "committed_at": _dt.datetime.fromtimestamp(entry["timestamp"] / 1000, _dt.timezone.utc),
                "operation": info.get("operation", str(entry.get("operation", "")).lower()),
                "rows": info.get("rows", (entry.get("operationMetrics") or {}).get("num_added_rows")),
                "commit_id": info.get("commit_id"),
            }
        return out

    def statistics(self, version: int | None = None) -> dict[str, Any]:
        """Statistics computed at insert for commit ``version`` (default: the latest)."""
        history = self._history()
        if not history:
            raise FeatureStoreError(f"feature group {self.name!r} v{self.version} has no data yet")
        wanted = history[0]["version"] if version is None else version
        for entry in history:
            if int(entry["version"]) == int(wanted):
                raw = entry.get(COMMIT_KEY)
                if not raw:
                    raise FeatureStoreError(
                        f"commit {wanted} of {self.name!r} was not made by the feature store"
                    )
                return dict(json.loads(raw)["statistics"])
        raise FeatureStoreError(f"feature group {self.name!r} v{self.version} has no commit {version}")
