"""Queries over feature groups: select, join (point-in-time when both sides have an event time), time travel.

A query is executed by DuckDB over the Delta tables pinned at given versions,
so the same query on the same versions always returns the same rows.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.featurestore import _tensors
from workbench.featurestore._common import FeatureStoreError

if TYPE_CHECKING:
    from workbench.featurestore.feature_group import FeatureGroup
    from workbench.featurestore.store import FeatureStore

__all__ = ["Query", "JOIN_TYPES"]

JOIN_TYPES = ("inner", "left")
_PREFIX = re.compile(r"^[a-z][a-z0-9_]*$")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Join:
    def __init__(
        self, query: "Query", left_on: list[str], right_on: list[str], join_type: str, prefix: str
    ) -> None:
        self.query = query
        self.left_on = left_on
        self.right_on = right_on
        self.join_type = join_type
        self.prefix = prefix


class Query:
    """Features selected from one feature group, optionally joined with others.

    Build one with ``fg.select_all()``, ``fg.select([...])`` and
    :meth:`join`; read it with :meth:`read`, or give it to
    :meth:`FeatureStore.create_feature_view`.
    """

    def __init__(
        self, group: "FeatureGroup", features: Sequence[str], *, delta_version: int | None = None
    ) -> None:
        self._group = group
        self._features = list(features)
        self._delta_version = delta_version
        self._joins: list[_Join] = []
        self._filter: str | None = None

    # ------------------------------------------------------------------ building
    @property
    def feature_group(self) -> "FeatureGroup":
        """The left-most feature group."""
        return self._group

    def join(
        self,
        other: "Query",
        *,
        on: Sequence[str] | None = None,
        left_on: Sequence[str] | None = None,
        right_on: Sequence[str] | None = None,
        join_type: str = "inner",
        prefix: str = "",
    ) -> "Query":
        """Join ``other`` onto this query; returns a new query.

        Parameters
        ----------
        other
            Query of the right-hand feature group.
        on
            Columns with the same name on both sides (default: the right group's primary key).
        left_on, right_on
            Columns of different names (give both, of equal length).
        join_type
            ``"inner"`` or ``"left"``. When both groups have an event time the join is
            point-in-time (DuckDB ASOF): each left row gets the latest right row whose
            event time is not after its own.
        prefix
            Prefix for the right-hand features (to avoid name clashes).
        """
        if not isinstance(other, Query):
            raise FeatureStoreError(f"join needs a Query (fg.select_all()), got {type(other).__name__}")
        if join_type not in JOIN_TYPES:
            raise FeatureStoreError(f"join_type must be one of {JOIN_TYPES}, got {join_type!r}")
        if prefix and not _PREFIX.match(prefix):
            raise FeatureStoreError(f"prefix must be a lower-case identifier, got {prefix!r}")
        if on is not None and (left_on is not None or right_on is not None):
            raise FeatureStoreError("give either on or left_on/right_on, not both")
        if on is None and left_on is None and right_on is None:
            on = other._group.primary_key
        if on is not None:
            left, right = list(on), list(on)
        else:
            if left_on is None or right_on is None or len(left_on) != len(right_on) or not left_on:
                raise FeatureStoreError(
                    "left_on and right_on must both be given, non-empty and of equal length"
                )
            left, right = list(left_on), list(right_on)
        left_cols = self._group.feature_names()
        right_cols = other._group.feature_names()
        if missing := [c for c in left if c not in left_cols]:
            raise FeatureStoreError(
                f"join: left feature group {self._group.name!r} has no column(s) {missing}"
            )
        if missing := [c for c in right if c not in right_cols]:
            raise FeatureStoreError(
                f"join: right feature group {other._group.name!r} has no column(s) {missing}"
            )
        new = copy.copy(self)
        new._joins = [*self._joins, _Join(other, left, right, join_type, prefix)]
        names = new.output_columns()
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FeatureStoreError(f"join: feature name(s) {dup} appear on both sides; give a prefix")
        return new

    def filter(self, condition: str) -> "Query":
        """Keep the rows where the SQL ``condition`` (over output column names) holds; returns a new query."""
        if not isinstance(condition, str) or not condition.strip():
            raise FeatureStoreError(f"filter condition must be a non-empty SQL expression, got {condition!r}")
        new = copy.copy(self)
        new._filter = condition if self._filter is None else f"({self._filter}) AND ({condition})"
        return new

    def as_of_version(self, version: int) -> "Query":
        """Pin the left feature group to Delta ``version``; returns a new query."""
        new = copy.copy(self)
        new._delta_version = int(version)
        return new

    def as_of(self, wallclock_time: Any) -> "Query":
        """Pin every feature group to the commit in force at ``wallclock_time``; returns a new query."""
        new = copy.copy(self)
        new._delta_version = self._group.version_at(wallclock_time)
        new._joins = [
            _Join(j.query.as_of(wallclock_time), j.left_on, j.right_on, j.join_type, j.prefix)
            for j in self._joins
        ]
        return new

    def pinned(self) -> "Query":
        """The same query with every unpinned feature group pinned at its latest commit."""
        new = copy.copy(self)
        new._delta_version = (
            self._delta_version if self._delta_version is not None else self._group.current_version()
        )
        new._joins = [
            _Join(j.query.pinned(), j.left_on, j.right_on, j.join_type, j.prefix) for j in self._joins
        ]
        return new

    # ------------------------------------------------------------------ description
    def _own_columns(self, skip: Sequence[str] = ()) -> list[str]:
        return [c for c in self._features if c not in set(skip)]

    def _nodes(self, prefix: str = "", skip: Sequence[str] = ()) -> list[tuple["Query", str, list[str]]]:
        """Flatten into (query, prefix, columns) in join order."""
        out = [(self, prefix, self._own_columns(skip))]
        for j in self._joins:
            keys = [r for lc, r in zip(j.left_on, j.right_on) if lc == r and not j.prefix]
            out.extend(
                j.query._nodes(
                    prefix + j.prefix,
                    keys
                    + (
                        [j.query._group.event_time]
                        if (
                            j.query._group.event_time
                            and self._group.event_time
                            and not j.prefix
                            and j.query._group.event_time == self._group.event_time
                        )
                        else []
                    ),
                )
            )
        return out

    def output_columns(self) -> list[str]:
        """Names of the columns :meth:`read` returns."""
        return [p + c for _, p, cols in self._nodes() for c in cols]

    def tensor_columns(self) -> dict[str, tuple["FeatureGroup", str]]:
        """Output tensor columns: ``{output name: (feature group, feature)}``."""
        out: dict[str, tuple[FeatureGroup, str]] = {}
        for query, p, cols in self._nodes():
            for c in cols:
                if c in query._group.tensor_features:
                    out[p + c] = (query._group, c)
        return out

    def feature_groups(self) -> list[dict[str, Any]]:
        """Feature groups read, with the Delta versions they are pinned at (None: latest)."""
        return [
            {"name": q._group.name, "version": q._group.version, "delta_version": q._delta_version}
            for q, _, _ in self._nodes()
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (provenance of feature views and training datasets)."""
        return {
            "feature_group": {"name": self._group.name, "version": self._group.version},
            "features": list(self._features),
            "delta_version": self._delta_version,
            "filter": self._filter,
            "joins": [
                {
                    "query": j.query.to_dict(),
                    "left_on": j.left_on,
                    "right_on": j.right_on,
                    "join_type": j.join_type,
                    "prefix": j.prefix,
                }
                for j in self._joins
            ],
        }

    @classmethod
    def from_dict(cls, store: "FeatureStore", data: Mapping[str, Any]) -> "Query":
        """Rebuild a query from :meth:`to_dict` output."""
        group = store.get_feature_group(data["feature_group"]["name"], data["feature_group"]["version"])
        query = cls(group, data["features"], delta_version=data.get("delta_version"))
        query._filter = data.get("filter")
        for j in data.get("joins", []):
            query._joins.append(
                _Join(
                    cls.from_dict(store, j["query"]),
                    list(j["left_on"]),
                    list(j["right_on"]),
                    j["join_type"],
                    j.get("prefix", ""),
                )
            )
        return query

    def __repr__(self) -> str:
        return f"Query({self.to_sql()})"

    # ------------------------------------------------------------------ execution
    def to_sql(self) -> str:
        """The DuckDB SQL this query runs (tables are named t0, t1, ... in join order)."""
        sql, _ = self._sql()
        return sql

    def _sql(self) -> tuple[str, list[tuple["Query", str]]]:
        tables: list[tuple[Query, str]] = []
        select: list[str] = []
        joins: list[str] = []

        def visit(query: Query, prefix: str, skip: Sequence[str]) -> str:
            alias = f"t{len(tables)}"
            tables.append((query, alias))
            for c in query._own_columns(skip):
                if c in query._group.tensor_features:
                    for ref in (_tensors.store_column(c), _tensors.row_column(c)):
                        select.append(f"{alias}.{_q(ref)} AS {_q(prefix + ref)}")
                else:
                    select.append(f"{alias}.{_q(c)} AS {_q(prefix + c)}")
            for j in query._joins:
                right_group = j.query._group
                pit = bool(query._group.event_time and right_group.event_time)
                keys = [r for lc, r in zip(j.left_on, j.right_on) if lc == r and not j.prefix]
                if pit and not j.prefix and right_group.event_time == query._group.event_time:
                    keys.append(right_group.event_time)
                right_alias = f"t{len(tables)}"
                cond = " AND ".join(
                    f"{alias}.{_q(lc)} = {right_alias}.{_q(r)}" for lc, r in zip(j.left_on, j.right_on)
                )
                kind = "LEFT JOIN" if j.join_type == "left" else "JOIN"
                if pit:
                    kind = "ASOF " + kind
                    cond += (
                        f" AND {alias}.{_q(query._group.event_time or '')} >= "
                        f"{right_alias}.{_q(right_group.event_time or '')}"
                    )
                joins.append(f"{kind} {right_alias} ON {cond}")
                visit(j.query, prefix + j.prefix, keys)
            return alias

        root = visit(self, "", ())
        order = [f"{root}.{_q(k)}" for k in self._group.primary_key]
        if self._group.event_time:
            order.append(f"{root}.{_q(self._group.event_time)}")
        sql = f"SELECT {', '.join(select)} FROM {root} {' '.join(joins)}"
        if self._filter:
            sql = f"SELECT * FROM ({sql}) AS q WHERE {self._filter}"
            order = [_q(k) for k in self._group.primary_key] + (
                [_q(self._group.event_time)] if self._group.event_time else []
            )
        sql += " ORDER BY " + ", ".join(order)
        return sql, tables

    def read(self, *, load_tensors: bool = True) -> pd.DataFrame:
        """Run the query and return a DataFrame.

        Unpinned feature groups are read at their latest commit. Tensor features
        come back as columns of arrays when ``load_tensors``, else as
        ``<name>__store``/``<name>__row`` reference columns.
        """
        import duckdb

        query = self.pinned()
        sql, tables = query._sql()
        con = duckdb.connect()
        try:
            con.execute("SET threads TO 2")
            for q, alias in tables:
                con.register(alias, q._group._dataset(int(q._delta_version)))  # type: ignore[arg-type]
            try:
                frame = con.sql(sql).to_arrow_table().to_pandas()
            except duckdb.Error as exc:
                raise FeatureStoreError(f"query failed: {exc}\nSQL: {sql}") from exc
        finally:
            con.close()
        if load_tensors:
            frame = load_tensor_columns(frame, self.tensor_columns())
        return frame


def load_tensor_columns(
    frame: pd.DataFrame, tensors: Mapping[str, tuple["FeatureGroup", str]]
) -> pd.DataFrame:
    """Replace reference columns by columns of arrays (one array per row)."""
    for out_name, (group, feature) in tensors.items():
        scol, rcol = _tensors.store_column(out_name), _tensors.row_column(out_name)
        refs = frame[[scol, rcol]].rename(
            columns={scol: _tensors.store_column(feature), rcol: _tensors.row_column(feature)}
        )
        valid = refs[_tensors.store_column(feature)].notna().to_numpy()
        cells: list[Any] = [None] * len(frame)
        if valid.any():
            stacked = group.read_tensor(feature, refs[valid])
            for i, row in zip(np.nonzero(valid)[0], stacked):
                cells[i] = row
        position = frame.columns.get_loc(scol)
        frame = frame.drop(columns=[scol, rcol])
        frame.insert(position, out_name, pd.Series(cells, index=frame.index, dtype=object))
    return frame
