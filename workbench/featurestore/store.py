"""The feature store of a project: feature groups, feature views, the online store."""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from workbench import storage
from workbench.featurestore._common import (
    FeatureStoreError,
    check_name,
    check_version,
    create_json,
    delta_storage_options,
    project_settings,
    read_json,
)
from workbench.featurestore.feature_group import FeatureGroup
from workbench.featurestore.online import OnlineStore

if TYPE_CHECKING:
    from workbench.featurestore.feature_view import FeatureView
    from workbench.featurestore.query import Query

__all__ = ["FeatureStore"]

log = logging.getLogger(__name__)


def _tensor_spec(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        shape, dtype = value.get("shape"), value.get("dtype", "float32")
    else:
        shape, dtype = value, "float32"
    if (
        not isinstance(shape, Sequence)
        or isinstance(shape, str)
        or not shape
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise FeatureStoreError(
            f"tensor feature {name!r}: shape must be a non-empty sequence of positive integers, got {shape!r}"
        )
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise FeatureStoreError(f"tensor feature {name!r}: unknown dtype {dtype!r}") from exc
    if not (np.issubdtype(dt, np.number) or dt == np.dtype(bool)):
        raise FeatureStoreError(f"tensor feature {name!r}: dtype must be numeric, got {dt}")
    return {"shape": [int(s) for s in shape], "dtype": dt.name}


class FeatureStore:
    """Feature store of a project (Hopsworks-shaped API over Delta Lake, DuckDB and sqlite).

    Parameters
    ----------
    project
        Project directory, :class:`~workbench.config.Settings`, or None for the current settings.
    root
        Where feature groups and training datasets live: a local path or ``s3://bucket/prefix``
        (default ``<storage_root>/featurestore``).
    storage_options
        fsspec options for an ``s3://`` root (default: from the settings).
    online_path
        sqlite file of the online store (default ``<project_dir>/.workbench/online_store.sqlite``).

    Examples
    --------
    >>> fs = FeatureStore("my-project")                                   # doctest: +SKIP
    >>> fg = fs.create_feature_group("patches", 1, primary_key=["patch_id"])  # doctest: +SKIP
    >>> fg.insert(frame)                                                  # doctest: +SKIP
    """

    def __init__(
        self,
        project: Any = None,
        *,
        root: str | os.PathLike[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        online_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.settings = project_settings(project)
        self.root = (
            str(root) if root is not None else storage.join(self.settings.storage_root, "featurestore")
        )
        if storage.is_remote(self.root):
            self.storage_options: dict[str, Any] | None = dict(
                storage_options if storage_options is not None else self.settings.storage_options()
            )
        else:
            self.root = str(Path(self.root.removeprefix("file://")).absolute())
            self.storage_options = dict(storage_options) if storage_options is not None else None
        self._delta_options = delta_storage_options(self.root, self.storage_options)
        self._online_path = (
            Path(online_path)
            if online_path is not None
            else (Path(self.settings.project_dir) / ".workbench" / "online_store.sqlite")
        )
        self._online: OnlineStore | None = None

    def __repr__(self) -> str:
        return f"FeatureStore(root={self.root!r})"

    @property
    def online(self) -> OnlineStore:
        """The sqlite online store."""
        if self._online is None:
            self._online = OnlineStore(self._online_path)
        return self._online

    # ------------------------------------------------------------------ layout
    def _group_dir(self, name: str, version: int) -> str:
        return storage.join(self.root, "feature_groups", name, f"v{version}")

    def _view_dir(self, name: str, version: int) -> str:
        return storage.join(self.root, "feature_views", name, f"v{version}")

    def _exists(self, url: str) -> bool:
        """Whether ``url`` exists now (object-store listings cached by fsspec are dropped first)."""
        fs, path = storage.filesystem(url, self.storage_options)
        fs.invalidate_cache(path)
        return bool(fs.exists(path))

    def _listdir(self, url: str) -> list[str]:
        """Names under ``url`` now (empty if it does not exist)."""
        fs, path = storage.filesystem(url, self.storage_options)
        fs.invalidate_cache(path)
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
        except FileNotFoundError:
            return []

    def _versions(self, kind: str, name: str) -> list[int]:
        url = storage.join(self.root, kind, name)
        out = []
        for entry in self._listdir(url):
            if (
                entry.startswith("v")
                and entry[1:].isdigit()
                and self._exists(storage.join(url, entry, "metadata.json"))
            ):
                out.append(int(entry[1:]))
        return sorted(out)

    def _listing(self, kind: str) -> list[tuple[str, int]]:
        out = []
        for name in self._listdir(storage.join(self.root, kind)):
            out.extend((name, v) for v in self._versions(kind, name))
        return out

    def list_feature_groups(self) -> list[tuple[str, int]]:
        """``(name, version)`` of every feature group."""
        return self._listing("feature_groups")

    def list_feature_views(self) -> list[tuple[str, int]]:
        """``(name, version)`` of every feature view."""
        return self._listing("feature_views")

    # ------------------------------------------------------------------ feature groups
    def create_feature_group(
        self,
        name: str,
        version: int = 1,
        *,
        primary_key: Sequence[str],
        event_time: str | None = None,
        description: str = "",
        online_enabled: bool = False,
        tensor_features: Mapping[str, Any] | None = None,
    ) -> FeatureGroup:
        """Create a feature group (its table is created by the first insert).

        Parameters
        ----------
        name, version
            Identity of the group; a lower-case identifier and an integer >= 1.
        primary_key
            Column(s) identifying a row.
        event_time
            Datetime column used for point-in-time joins.
        description
            Free text.
        online_enabled
            Also upsert inserted rows into the sqlite online store.
        tensor_features
            Array-valued features stored as Zarr: ``{"patch": (32, 32, 3)}`` or
            ``{"patch": {"shape": (32, 32, 3), "dtype": "float32"}}``.

        Raises
        ------
        FeatureStoreError
            On a bad argument, or when the group already exists.
        """
        check_name(name, "feature group name")
        check_version(version, "feature group version")
        if isinstance(primary_key, str):
            primary_key = [primary_key]
        if not primary_key or not all(isinstance(k, str) and k and "__" not in k for k in primary_key):
            raise FeatureStoreError(
                f"primary_key must be a non-empty list of column names, got {primary_key!r}"
            )
        if event_time is not None and (not isinstance(event_time, str) or not event_time):
            raise FeatureStoreError(f"event_time must be a column name or None, got {event_time!r}")
        if not isinstance(online_enabled, bool):
            raise FeatureStoreError(f"online_enabled must be True or False, got {online_enabled!r}")
        tensors = {str(k): _tensor_spec(v, str(k)) for k, v in (tensor_features or {}).items()}
        if clash := sorted(set(tensors) & (set(primary_key) | {event_time})):
            raise FeatureStoreError(f"tensor features {clash} cannot be key or event-time columns")
        meta = {
            "name": name,
            "version": version,
            "primary_key": list(primary_key),
            "event_time": event_time,
            "description": str(description),
            "online_enabled": online_enabled,
            "tensor_features": tensors,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        }
        url = storage.join(self._group_dir(name, version), "metadata.json")
        if not create_json(url, meta, self.storage_options):
            raise FeatureStoreError(
                f"feature group {name!r} version {version} already exists; use get_feature_group or "
                "get_or_create_feature_group, or create a new version"
            )
        log.info("created feature group %s v%d at %s", name, version, self._group_dir(name, version))
        return FeatureGroup(self, meta)

    def _metadata(
        self, kind: str, label: str, name: str, version: int | None, directory: Callable[[str, int], str]
    ) -> dict[str, Any]:
        """Metadata of version ``version`` (``None``: the highest) of a group or view; errors name it."""
        check_name(name, f"{label} name")
        if version is None:
            versions = self._versions(kind, name)
            if not versions:
                raise FeatureStoreError(f"{label} {name!r} does not exist")
            version = versions[-1]
        check_version(version, f"{label} version")
        url = storage.join(directory(name, version), "metadata.json")
        if not self._exists(url):
            raise FeatureStoreError(f"{label} {name!r} version {version} does not exist")
        return read_json(url, self.storage_options)

    def get_feature_group(self, name: str, version: int | None = None) -> FeatureGroup:
        """Get a feature group (``version=None``: the highest version)."""
        return FeatureGroup(self, self._metadata("feature_groups", "feature group", name, version, self._group_dir))

    def get_or_create_feature_group(
        self,
        name: str,
        version: int = 1,
        *,
        primary_key: Sequence[str],
        event_time: str | None = None,
        description: str = "",
        online_enabled: bool = False,
        tensor_features: Mapping[str, Any] | None = None,
    ) -> FeatureGroup:
        """Get the feature group if it exists, else create it (arguments as :meth:`create_feature_group`)."""
        check_name(name, "feature group name")
        check_version(version, "feature group version")
        url = storage.join(self._group_dir(name, version), "metadata.json")
        if not self._exists(url):
            try:
                return self.create_feature_group(
                    name,
                    version,
                    primary_key=primary_key,
                    event_time=event_time,
                    description=description,
                    online_enabled=online_enabled,
                    tensor_features=tensor_features,
                )
            except FeatureStoreError as exc:
                if "already exists" not in str(exc):
                    raise
        group = self.get_feature_group(name, version)
        keys = [primary_key] if isinstance(primary_key, str) else list(primary_key)
        if group.primary_key != keys:
            raise FeatureStoreError(
                f"feature group {name!r} v{version} exists with primary key {group.primary_key}, not {keys}"
            )
        return group

    def get_feature_groups(self, name: str) -> list[FeatureGroup]:
        """Every version of feature group ``name``."""
        return [self.get_feature_group(name, v) for v in self._versions("feature_groups", name)]

    # ------------------------------------------------------------------ feature views
    def create_feature_view(
        self,
        name: str,
        version: int = 1,
        *,
        query: "Query",
        labels: Sequence[str] = (),
        description: str = "",
    ) -> "FeatureView":
        """Create a feature view: a query plus the names of its label columns."""
        from workbench.featurestore.feature_view import FeatureView

        return FeatureView.create(self, name, version, query=query, labels=labels, description=description)

    def get_feature_view(self, name: str, version: int | None = None) -> "FeatureView":
        """Get a feature view (``version=None``: the highest version)."""
        from workbench.featurestore.feature_view import FeatureView

        return FeatureView(self, self._metadata("feature_views", "feature view", name, version, self._view_dir))

    def get_or_create_feature_view(
        self,
        name: str,
        version: int = 1,
        *,
        query: "Query",
        labels: Sequence[str] = (),
        description: str = "",
    ) -> "FeatureView":
        """Get the feature view if it exists, else create it."""
        check_name(name, "feature view name")
        check_version(version, "feature view version")
        if self._exists(storage.join(self._view_dir(name, version), "metadata.json")):
            return self.get_feature_view(name, version)
        return self.create_feature_view(name, version, query=query, labels=labels, description=description)
