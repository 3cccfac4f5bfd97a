"""Where a distributed training reads its data: a reference to a feature-store training dataset, and shards of it.

A :class:`DatasetRef` names a training dataset (feature-store root, feature view, versions) so that any
process can open it from storage; :func:`read_shard` reads one worker's contiguous share of a split's rows
(only the Parquet row groups and Zarr chunks that hold them), :func:`read_head` the first rows of a split.
The stored rows of a split are in a seeded random order, so contiguous shards and the head are random samples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import DataError

if TYPE_CHECKING:
    from workbench.featurestore import TrainingDataset

__all__ = ["VALIDATION_SPLITS", "DatasetRef", "read_head", "read_shard", "shard_bounds"]

#: Split names taken as the validation split when none is named (crops: ``validation``, sea ice: ``val``).
VALIDATION_SPLITS = ("validation", "val")


@dataclass(frozen=True)
class DatasetRef:
    """A training dataset of the feature store, by name, as any worker can open it.

    Attributes
    ----------
    view, view_version
        Feature view name and version.
    version
        Training dataset version of that view.
    root
        Feature-store root (local path or ``s3://...``); ``None``: the project's default.
    project
        Project directory (settings, storage options); ``None``: the current settings.
    storage_options
        fsspec options of an ``s3://`` root.
    feature
        The tensor feature that is the model input; ``None``: the dataset's only tensor feature.
    label_map
        Maps stored label ``i`` to ``label_map[i]`` (e.g. ``(0, 1, 1, 1, 1)``: five sea-ice classes to
        water/ice); ``None`` keeps the labels.
    train_split, validation_split
        Split names; ``validation_split=None`` finds ``validation`` or ``val``, ``""`` means none.
    """

    view: str
    view_version: int
    version: int
    root: str | None = None
    project: str | None = None
    storage_options: Mapping[str, Any] | None = field(default=None, compare=False)
    feature: str | None = None
    label_map: tuple[int, ...] | None = None
    train_split: str = "train"
    validation_split: str | None = None

    @classmethod
    def of(cls, dataset: Any, **overrides: Any) -> DatasetRef:
        """The reference of a :class:`~workbench.featurestore.TrainingDataset` (or a ref, with ``overrides``)."""
        if isinstance(dataset, DatasetRef):
            ref = dataset
        elif hasattr(dataset, "metadata") and hasattr(dataset, "splits") and hasattr(dataset, "_store"):
            view = dataset.metadata["feature_view"]
            store = dataset._store
            ref = cls(
                view=str(view["name"]),
                view_version=int(view["version"]),
                version=int(dataset.version),
                root=str(store.root),
                project=str(store.settings.project_dir),
                storage_options=dict(store.storage_options) if store.storage_options else None,
            )
        else:
            raise DataError(
                "dataset_ref must be a feature-store TrainingDataset or a workbench.training.distributed.DatasetRef, "
                f"got {type(dataset).__name__}"
            )
        if "label_map" in overrides and overrides["label_map"] is not None:
            overrides["label_map"] = tuple(int(v) for v in overrides["label_map"])
        return replace(ref, **overrides) if overrides else ref

    def open(self) -> TrainingDataset:
        """Open the training dataset (metadata only; data are read by :func:`read_shard`)."""
        from workbench.featurestore import FeatureStore

        store = FeatureStore(self.project, root=self.root, storage_options=self.storage_options)
        return store.get_feature_view(self.view, self.view_version).get_training_dataset_metadata(
            self.version
        )

    def resolve(self, dataset: TrainingDataset) -> DatasetRef:
        """Check the splits, the feature and the label map against ``dataset``; fill in the validation split."""
        splits = dataset.splits
        if self.train_split not in splits or splits[self.train_split] == 0:
            raise DataError(
                f"training dataset v{dataset.version} has no rows in split {self.train_split!r}; "
                f"it has {splits}"
            )
        validation = self.validation_split
        if validation is None:
            validation = next((s for s in VALIDATION_SPLITS if splits.get(s)), "")
        elif validation and validation not in splits:
            raise DataError(
                f"validation_split {validation!r} is not a split of training dataset "
                f"v{dataset.version}; it has {sorted(splits)}"
            )
        tensors = list(dataset.metadata.get("tensor_features", {}))
        feature = self.feature
        if feature is None:
            if len(tensors) != 1:
                raise DataError(
                    f"training dataset v{dataset.version} has tensor features {tensors}; "
                    "name the model input with feature="
                )
            feature = tensors[0]
        elif feature not in tensors:
            raise DataError(
                f"feature {feature!r} is not a tensor feature of training dataset v{dataset.version} "
                f"(it has {tensors})"
            )
        if len(dataset.metadata.get("labels", [])) != 1:
            raise DataError(
                f"training dataset v{dataset.version} must have exactly one label, "
                f"it has {dataset.metadata.get('labels')}"
            )
        if self.label_map is not None and (not self.label_map or min(self.label_map) < 0):
            raise DataError(f"label_map must be a non-empty sequence of labels >= 0, got {self.label_map}")
        return replace(self, validation_split=validation, feature=feature)

    def description(self, dataset: TrainingDataset) -> dict[str, Any]:
        """The JSON description stored with the dataset (bands, class names...), or ``{}``."""
        try:
            info = json.loads(dataset.metadata.get("description", "") or "{}")
        except json.JSONDecodeError:
            return {}
        return info if isinstance(info, dict) else {}


def shard_bounds(n_rows: int, rank: int, n_shards: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of shard ``rank`` of ``n_shards`` contiguous, near-equal shards of ``n_rows`` rows."""
    if n_shards < 1 or not 0 <= rank < n_shards:
        raise DataError(f"rank must be in [0, {n_shards}), got {rank}")
    return rank * n_rows // n_shards, (rank + 1) * n_rows // n_shards


def _map_labels(y: np.ndarray, label_map: Sequence[int] | None) -> np.ndarray:
    y = np.asarray(y).astype(np.int64)
    if label_map is None:
        return y.astype(np.int32)
    table = np.asarray(label_map, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= table.size):
        raise DataError(f"label_map has {table.size} entries but the labels run from {y.min()} to {y.max()}")
    return table[y].astype(np.int32)


def _rows(
    dataset: TrainingDataset, ref: DatasetRef, split: str, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[lo, hi)`` of ``split``: the stored blocks (Parquet row group = Zarr chunk) that hold them, cut."""
    info = dataset.metadata["splits"][split]
    block = int(info["block_rows"])
    if hi <= lo:
        shape = tuple(dataset.metadata["tensor_features"][ref.feature]["shape"])
        return np.zeros((0, *shape), np.float32), np.zeros(0, np.int32)
    # the dataset's own block reader (row group + chunk, labels checked numeric); one call per stored block
    pf, zarrs = dataset._parquet(split), dataset._zarrs(split)
    xs, ys = [], []
    for index in range(lo // block, (hi - 1) // block + 1):
        x, y = dataset._block(split, pf, zarrs, index, as_dict=True)
        start = index * block
        cut = slice(max(lo, start) - start, min(hi, start + len(y)) - start)
        xs.append(np.asarray(x[ref.feature][cut], dtype=np.float32))
        ys.append(np.asarray(y[cut]))
    return np.concatenate(xs), _map_labels(np.concatenate(ys), ref.label_map)


def read_shard(
    dataset: TrainingDataset, ref: DatasetRef, split: str, *, rank: int, n_shards: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shard ``rank`` of ``n_shards`` of ``split``: ``(x, y)`` float32 inputs and int32 (mapped) labels."""
    lo, hi = shard_bounds(dataset.splits[split], rank, n_shards)
    return _rows(dataset, ref, split, lo, hi)


def read_head(dataset: TrainingDataset, ref: DatasetRef, split: str, *, rows: int) -> np.ndarray:
    """The inputs of the first ``rows`` rows of ``split`` (a random sample: rows are stored shuffled)."""
    return _rows(dataset, ref, split, 0, min(rows, dataset.splits[split]))[0]
