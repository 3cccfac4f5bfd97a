"""Feature views: a query plus labels; versioned training datasets and online feature vectors."""

from __future__ import annotations

import datetime as _dt
import logging
import uuid
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from workbench import storage
from workbench.featurestore._common import (
    FeatureStoreError,
    check_name,
    check_version,
    create_json,
    read_json,
)
from workbench.featurestore.query import Query
from workbench.featurestore.split import assign_splits, split_kind
from workbench.featurestore.training_dataset import TrainingDataset, write_split

if TYPE_CHECKING:
    import tensorflow as tf

    from workbench.featurestore.store import FeatureStore

__all__ = ["FeatureView"]

log = logging.getLogger(__name__)
RETURN_TYPES = ("list", "dict", "numpy", "pandas")


class FeatureView:
    """A query over feature groups with its label columns (Hopsworks' feature view).

    Get one from :meth:`FeatureStore.create_feature_view` or :meth:`FeatureStore.get_feature_view`.
    """

    def __init__(self, store: "FeatureStore", meta: Mapping[str, Any]) -> None:
        self._store = store
        self._meta = dict(meta)
        self.query = Query.from_dict(store, meta["query"])

    @classmethod
    def create(
        cls,
        store: "FeatureStore",
        name: str,
        version: int,
        *,
        query: Query,
        labels: Sequence[str],
        description: str,
    ) -> "FeatureView":
        """Validate and store a new feature view (see :meth:`FeatureStore.create_feature_view`)."""
        check_name(name, "feature view name")
        check_version(version, "feature view version")
        if not isinstance(query, Query):
            raise FeatureStoreError(f"query must be a Query (fg.select_all()...), got {type(query).__name__}")
        if isinstance(labels, str):
            labels = [labels]
        columns = query.output_columns()
        if missing := [c for c in labels if c not in columns]:
            raise FeatureStoreError(f"label(s) {missing} are not columns of the query ({columns})")
        meta = {
            "name": name,
            "version": version,
            "query": query.to_dict(),
            "labels": list(labels),
            "description": str(description),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        }
        url = storage.join(store._view_dir(name, version), "metadata.json")
        if not create_json(url, meta, store.storage_options):
            raise FeatureStoreError(f"feature view {name!r} version {version} already exists")
        return cls(store, meta)

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        """Name of the view."""
        return str(self._meta["name"])

    @property
    def version(self) -> int:
        """Version of the view."""
        return int(self._meta["version"])

    @property
    def labels(self) -> list[str]:
        """Label columns."""
        return list(self._meta["labels"])

    @property
    def features(self) -> list[str]:
        """Feature columns (query output less labels)."""
        return [c for c in self.query.output_columns() if c not in set(self.labels)]

    def __repr__(self) -> str:
        return f"FeatureView(name={self.name!r}, version={self.version}, labels={self.labels})"

    def _td_dir(self) -> str:
        return storage.join(self._store._view_dir(self.name, self.version), "training_datasets")

    def training_dataset_versions(self) -> list[int]:
        """Versions of the training datasets of this view."""
        return sorted(
            int(e[1:-5])
            for e in self._store._listdir(self._td_dir())
            if e.startswith("v") and e.endswith(".json") and e[1:-5].isdigit()
        )

    # ------------------------------------------------------------------ batch data
    def get_batch_data(self, wallclock_time: Any = None) -> pd.DataFrame:
        """Features and labels of the view, now or as they were at ``wallclock_time``."""
        query = self.query if wallclock_time is None else self.query.as_of(wallclock_time)
        return query.read()

    # ------------------------------------------------------------------ training datasets
    def create_training_dataset(
        self,
        *,
        split: Mapping[str, Any] | None = None,
        split_by: str | None = None,
        seed: int = 0,
        description: str = "",
    ) -> TrainingDataset:
        """Materialise a versioned training dataset of the view's current data.

        Parameters
        ----------
        split
            Split rule (see :mod:`workbench.featurestore.split`); default ``{"train": 1.0}``.
        split_by
            Column to split on (tile, scene, time); rows of one value stay together.
        seed
            Seed of the split and of the stored row order.
        description
            Free text.

        Returns
        -------
        TrainingDataset
            With its ``version`` and provenance (the Delta version of every source
            feature group, the query, the split rule); tabular columns are stored as
            Parquet, tensor features as Zarr.
        """
        split = dict(split or {"train": 1.0})
        kind = split_kind(split)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise FeatureStoreError(f"seed must be an integer, got {seed!r}")
        query = self.query.pinned()
        frame = query.read(load_tensors=False)
        if split_by is not None and split_by not in frame.columns:
            raise FeatureStoreError(
                f"split_by column {split_by!r} is not a column of the view ({list(frame.columns)})"
            )
        names = assign_splits(frame, split, split_by=split_by, seed=seed)
        tensor_cols = query.tensor_columns()
        excluded = set(self.query.feature_group.primary_key) | {self.query.feature_group.event_time}
        x_tabular = [
            c
            for c in self.features
            if c not in tensor_cols
            and c not in excluded
            and c != split_by
            and (pd.api.types.is_numeric_dtype(frame[c].dtype) or pd.api.types.is_bool_dtype(frame[c].dtype))
        ]
        data_name = f"data-{uuid.uuid4().hex}"
        data_dir = storage.join(self._td_dir(), data_name)
        rng = np.random.default_rng(seed)
        splits: dict[str, Any] = {}
        for name in split:
            rows = np.nonzero(names == name)[0]
            rows = rows[rng.permutation(len(rows))]
            part = frame.iloc[rows].reset_index(drop=True)
            splits[name] = write_split(
                part,
                storage.join(data_dir, name),
                tensors=tensor_cols,
                storage_options=self._store.storage_options,
            )
        dropped = int(sum(n is None for n in names))
        meta: dict[str, Any] = {
            "feature_view": {"name": self.name, "version": self.version},
            "query": query.to_dict(),
            "sql": query.to_sql(),
            "feature_groups": query.feature_groups(),
            "labels": self.labels,
            "features": self.features,
            "x_features": x_tabular,
            "tensor_features": {k: g.tensor_features[f] for k, (g, f) in tensor_cols.items()},
            "split": {
                k: (list(v) if isinstance(v, (list, set, frozenset, tuple)) else v) for k, v in split.items()
            },
            "split_kind": kind,
            "split_by": split_by,
            "seed": seed,
            "rows_left_out": dropped,
            "splits": splits,
            "data_dir": data_name,
            "description": str(description),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        }
        existing = self.training_dataset_versions()
        version = (existing[-1] if existing else 0) + 1
        while True:
            meta["version"] = version
            if create_json(
                storage.join(self._td_dir(), f"v{version}.json"), meta, self._store.storage_options
            ):
                break
            version += 1
        log.info(
            "feature view %s v%d: training dataset v%d (%s)",
            self.name,
            self.version,
            version,
            {k: v["rows"] for k, v in splits.items()},
        )
        return TrainingDataset(self._store, self._td_dir(), meta)

    def get_training_dataset_metadata(self, version: int) -> TrainingDataset:
        """The training dataset ``version`` (metadata and readers)."""
        check_version(version, "training dataset version")
        url = storage.join(self._td_dir(), f"v{version}.json")
        if not self._store._exists(url):
            raise FeatureStoreError(
                f"feature view {self.name!r} v{self.version} has no training dataset version {version} "
                f"(it has {self.training_dataset_versions()})"
            )
        return TrainingDataset(self._store, self._td_dir(), read_json(url, self._store.storage_options))

    def get_training_dataset(
        self,
        version: int,
        split: str = "train",
        *,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        shuffle_buffer: int = 0,
        as_dict: bool = False,
    ) -> "tf.data.Dataset":
        """A ``tf.data.Dataset`` of ``(features, labels)`` batches streamed from the stored split.

        Rows are read block by block (Parquet row groups aligned with Zarr
        chunks), never the whole split at once. With ``shuffle`` the block order
        and the rows within each block are shuffled anew every epoch (the rows
        were also stored in a seeded random order); ``shuffle_buffer`` adds a
        tf.data shuffle buffer of that many rows.
        """
        return self.get_training_dataset_metadata(version).to_tf_dataset(
            split,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            shuffle_buffer=shuffle_buffer,
            as_dict=as_dict,
        )

    def get_train_test_split(self, version: int) -> dict[str, pd.DataFrame]:
        """Every split of training dataset ``version`` as DataFrames (small datasets)."""
        td = self.get_training_dataset_metadata(version)
        return {name: td.read(name) for name in td.splits}

    # ------------------------------------------------------------------ online
    def _lookup(
        self,
        query: Query,
        key: Mapping[str, Any],
        entry: Mapping[str, Any],
        prefix: str,
        skip: Sequence[str],
        out: dict[str, Any],
    ) -> None:
        group = query.feature_group
        if not group.online_enabled:
            raise FeatureStoreError(f"feature group {group.name!r} is not online_enabled")
        own = [c for c in query._features if c not in set(skip)]
        needed = list(dict.fromkeys(own + [lc for j in query._joins for lc in j.left_on]))
        row = self._store.online.get(group, [key[k] for k in group.primary_key], needed)
        if row is None:
            raise FeatureStoreError(
                f"no online row in feature group {group.name!r} for primary key "
                f"{ {k: key[k] for k in group.primary_key} }"
            )
        values = dict(zip(needed, row))
        for c in own:
            value = values[c]
            if c in group.tensor_features:
                spec = group.tensor_features[c]
                value = np.frombuffer(value, dtype=spec["dtype"]).reshape(spec["shape"])
            out[prefix + c] = value
        for j in query._joins:
            right = j.query.feature_group
            if sorted(j.right_on) != sorted(right.primary_key):
                raise FeatureStoreError(
                    f"online lookup joins on the primary key of {right.name!r} ({right.primary_key}), "
                    f"but the view joins on {j.right_on}"
                )
            right_key = {r: values.get(lc, entry.get(r)) for lc, r in zip(j.left_on, j.right_on)}
            keys = [r for lc, r in zip(j.left_on, j.right_on) if lc == r and not j.prefix]
            if group.event_time and right.event_time == group.event_time and not j.prefix:
                keys.append(right.event_time)
            self._lookup(j.query, right_key, entry, prefix + j.prefix, keys, out)

    def get_feature_vector(self, entry: Mapping[str, Any], *, return_type: str = "list") -> Any:
        """The latest online features (not labels) for the primary-key values in ``entry``.

        Parameters
        ----------
        entry
            ``{primary-key column: value}`` of the view's left feature group.
        return_type
            ``"list"`` (in the order of :attr:`features`), ``"dict"``, ``"numpy"`` or ``"pandas"``.
        """
        if return_type not in RETURN_TYPES:
            raise FeatureStoreError(f"return_type must be one of {RETURN_TYPES}, got {return_type!r}")
        if not isinstance(entry, Mapping):
            raise FeatureStoreError(f"entry must be a mapping of primary-key column to value, got {entry!r}")
        group = self.query.feature_group
        if missing := [k for k in group.primary_key if k not in entry]:
            raise FeatureStoreError(
                f"entry {dict(entry)} lacks primary-key column(s) {missing} of {group.name!r}"
            )
        out: dict[str, Any] = {}
        self._lookup(self.query, entry, entry, "", (), out)
        names = self.features
        if return_type == "dict":
            return {n: out.get(n) for n in names}
        values = [out.get(n) for n in names]
        if return_type == "numpy":
            return np.asarray(values, dtype=object)
        if return_type == "pandas":
            return pd.DataFrame([values], columns=names)
        return values

    def get_feature_vectors(self, entries: Sequence[Mapping[str, Any]], *, return_type: str = "list") -> Any:
        """:meth:`get_feature_vector` for each entry (``"pandas"`` returns one frame)."""
        if isinstance(entries, Mapping) or not isinstance(entries, Sequence):
            raise FeatureStoreError(f"entries must be a list of mappings, got {type(entries).__name__}")
        if return_type == "pandas":
            rows = [self.get_feature_vector(e, return_type="list") for e in entries]
            return pd.DataFrame(rows, columns=self.features)
        return [self.get_feature_vector(e, return_type=return_type) for e in entries]
