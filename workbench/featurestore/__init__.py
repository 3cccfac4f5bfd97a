"""Feature store: feature groups on Delta Lake, feature views and training datasets, an online store.

The API follows Hopsworks' (``FeatureStore``, ``create_feature_group``,
``fg.insert``, ``fg.as_of``, ``create_feature_view``,
``create_training_dataset``, ``get_training_dataset``,
``get_feature_vector``) on well-kept libraries: ``deltalake`` (one commit
per insert, time travel), DuckDB (joins, point-in-time joins), Zarr (tensor
features) and sqlite (online store).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports

_EXPORTS = {
    "FeatureStoreError": "workbench.featurestore._common",
    "FeatureGroup": "workbench.featurestore.feature_group",
    "FeatureView": "workbench.featurestore.feature_view",
    "OnlineStore": "workbench.featurestore.online",
    "Query": "workbench.featurestore.query",
    "assign_splits": "workbench.featurestore.split",
    "FeatureStore": "workbench.featurestore.store",
    "TrainingDataset": "workbench.featurestore.training_dataset",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # the names for type checkers and IDEs
    from workbench.featurestore._common import FeatureStoreError
    from workbench.featurestore.feature_group import FeatureGroup
    from workbench.featurestore.feature_view import FeatureView
    from workbench.featurestore.online import OnlineStore
    from workbench.featurestore.query import Query
    from workbench.featurestore.split import assign_splits
    from workbench.featurestore.store import FeatureStore
    from workbench.featurestore.training_dataset import TrainingDataset

__all__ = [
    "FeatureStore",
    "FeatureGroup",
    "FeatureView",
    "Query",
    "TrainingDataset",
    "OnlineStore",
    "FeatureStoreError",
    "assign_splits",
]
