"""Geospatial interlinking (JedAI-spatial style): filtering, verification, progressive scheduling, on Dask.

Public face::

    from workbench.linked.interlink import interlink, StoreSelection, recall_curve

    result = interlink("parcels.parquet", "points.csv", relations=["sfContains"])
    result.links                 # source_id, target_id, relation
    result.to_parquet("links.parquet"); result.load_into(store)

Steps, one module each: :mod:`.inputs` (read both sides into one CRS), :mod:`.tiles` and
:mod:`.filtering` (equigrid / STRtree candidates), :mod:`.verification` (DE-9IM → relations),
:mod:`.weighting` (CF, JS, χ², MBRO, ISP, RANDOM, hybrids), :mod:`.partition` (one spatial
partitioner, reference points), :mod:`.engine` (partition tasks, here or on Dask),
:mod:`.progressive` (recall curves), :mod:`.result` (link table and its writers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports

_EXPORTS = {
    "interlink": "workbench.linked.interlink.api",
    "InterlinkError": "workbench.linked.interlink.errors",
    "LinkResult": "workbench.linked.interlink.result",
    "evaluate": "workbench.linked.interlink.result",
    "StoreSelection": "workbench.linked.interlink.inputs",
    "recall_curve": "workbench.linked.interlink.progressive",
    "plot_recall_curve": "workbench.linked.interlink.progressive",
    "ALL_RELATIONS": "workbench.linked.interlink.verification",
    "DEFAULT_RELATIONS": "workbench.linked.interlink.verification",
    "WEIGHTINGS": "workbench.linked.interlink.weighting",
    "FILTERS": "workbench.linked.interlink.filtering",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from workbench.linked.interlink.api import interlink
    from workbench.linked.interlink.errors import InterlinkError
    from workbench.linked.interlink.filtering import FILTERS
    from workbench.linked.interlink.inputs import StoreSelection
    from workbench.linked.interlink.progressive import plot_recall_curve, recall_curve
    from workbench.linked.interlink.result import LinkResult, evaluate
    from workbench.linked.interlink.verification import ALL_RELATIONS, DEFAULT_RELATIONS
    from workbench.linked.interlink.weighting import WEIGHTINGS

__all__ = [
    "ALL_RELATIONS",
    "DEFAULT_RELATIONS",
    "FILTERS",
    "WEIGHTINGS",
    "InterlinkError",
    "LinkResult",
    "StoreSelection",
    "evaluate",
    "interlink",
    "plot_recall_curve",
    "recall_curve",
]
