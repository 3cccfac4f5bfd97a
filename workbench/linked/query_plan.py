"""A prepared query (what pyoxigraph runs) and how it runs, apart from the store that made it.

:meth:`GeoStore.plan <workbench.linked.store.GeoStore.plan>` checks and rewrites a query
once (prefixes, GeoSPARQL query rewrite, spatial-index answers) and caches the plan by its
text until the next write; :func:`run_plan` evaluates a plan on any pyoxigraph store holding
the same data — the store itself, or a read-only view of it opened in a worker process that
the endpoint can kill at a query's deadline (:mod:`workbench.linked.query_workers`).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import pyoxigraph as ox

from workbench.linked import geosparql
from workbench.linked.spatial_index import INDEX_GRAPH

__all__ = ["PlanCache", "QueryPlan", "data_graphs", "run_plan"]

log = logging.getLogger(__name__)

_INDEX_GRAPH = ox.NamedNode(INDEX_GRAPH)


@dataclass(frozen=True)
class QueryPlan:
    """A checked, prepared query.

    Attributes
    ----------
    text
        What pyoxigraph evaluates (rewritten; spatial FILTERs answered from the index).
    written
        The query as written, with the default prefixes declared (run when the rewrite misreads it).
    uses_index
        Whether ``text`` reads the hidden index graph (otherwise the named graphs are the data graphs only).
    engine
        Set when the columnar spatial engine answers the query instead of pyoxigraph.
    base_iri
        Base IRI for relative IRIs, or ``None``.
    """

    text: str
    written: str
    uses_index: bool
    base_iri: str | None = None
    engine: Any = None
    """An :class:`~workbench.linked.spatial_engine.EngineQuery` when the spatial engine answers the query
    (the store runs it; it never goes to a worker process), else ``None``."""


class PlanCache:
    """Plans by query key, valid for one store generation; least recently used ones dropped first."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._plans: collections.OrderedDict[Hashable, tuple[int, QueryPlan]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, generation: int) -> QueryPlan | None:
        """The plan cached for ``key`` in this ``generation``, or ``None``."""
        with self._lock:
            entry = self._plans.get(key)
            if entry is None or entry[0] != generation:
                return None
            self._plans.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, plan: QueryPlan, generation: int) -> None:
        """Cache ``plan`` (made in ``generation``)."""
        with self._lock:
            self._plans[key] = (generation, plan)
            self._plans.move_to_end(key)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def clear(self) -> None:
        """Forget every plan (after a write)."""
        with self._lock:
            self._plans.clear()

    def __len__(self) -> int:
        return len(self._plans)


def data_graphs(store: ox.Store) -> list[ox.NamedNode | ox.BlankNode]:
    """The named graphs of ``store`` that hold data (the hidden index graph left out)."""
    return [g for g in store.named_graphs() if g != _INDEX_GRAPH]


def run_plan(store: ox.Store, plan: QueryPlan, *, functions: dict[Any, Any], aggregates: dict[Any, Any],
             deadline: float | None = None) -> Any:
    """Evaluate ``plan`` on ``store``; pyoxigraph's result object (lazy for SELECT/CONSTRUCT).

    Parameters
    ----------
    store
        A pyoxigraph store with the data the plan was made for.
    plan
        From :meth:`GeoStore.plan`.
    functions, aggregates
        The ``geof:`` custom (aggregate) functions, or empty dicts for a plain SPARQL store.
    deadline
        ``time.monotonic()`` after which the ``geof:`` functions called in this thread stop
        computing (cooperative; the endpoint's worker processes are also killed at the deadline).
    """
    geosparql.set_deadline(deadline)
    graphs: dict[str, Any] = {} if plan.uses_index else {"named_graphs": data_graphs(store)}
    try:
        return store.query(plan.text, custom_functions=functions, custom_aggregate_functions=aggregates,
                           base_iri=plan.base_iri, **graphs)
    except SyntaxError as exc:  # the rewriter misread the query: run it as written
        log.warning("query rewrite skipped (%s)", exc)
        return store.query(plan.written, custom_functions=functions, custom_aggregate_functions=aggregates,
                           base_iri=plan.base_iri, named_graphs=data_graphs(store))
