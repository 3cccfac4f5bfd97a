"""Run a :class:`~workbench.linked.federation.planner.BGPPlan`: sub-queries, bind joins, hash and spatial joins.

The federator's side of a basic graph pattern, over :class:`~workbench.linked.federation.client.Table`
rows of rdflib terms. Sub-queries to different members (and the blocks of a bind
join) run in parallel threads. FILTER conjuncts a member could not evaluate are
evaluated here: spatial tests vectorised (:mod:`workbench.linked.federation.spatial`),
anything else row by row with rdflib's expression evaluator (the ``geof:`` functions
are registered with it, :mod:`workbench.linked.federation.functions`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rdflib import BNode, Variable
from rdflib.plugins.sparql.evalutils import _ebv
from rdflib.plugins.sparql.sparql import FrozenBindings, QueryContext

from workbench.linked.federation.client import MemberClient, Table
from workbench.linked.federation.errors import FederationError, MemberError
from workbench.linked.federation.expressions import variables_of
from workbench.linked.federation.planner import BGPPlan, Unit
from workbench.linked.federation.spatial import (
    SpatialTest,
    evaluate_constant,
    evaluate_pairs,
    join_pairs,
    parse_geometries,
    semi_join_filters,
    spatial_test,
)
from workbench.linked.federation.terms import to_sparql

__all__ = ["LATENCY_S", "ROW_S", "Runner", "cross_join", "hash_join"]

log = logging.getLogger(__name__)

#: cost model of the bind-join choice: seconds per request, seconds per row transferred
LATENCY_S = 0.01
ROW_S = 20e-6


class QueryCancelled(FederationError):
    """The federated query ran past its deadline (the endpoint has already answered 503)."""


def hash_join(a: Table, b: Table) -> Table:
    """Natural join of two tables of complete rows (every variable bound)."""
    shared = [v for v in a.variables if v in b.variables]
    if not shared:
        return cross_join(a, b)
    ia = [a.variables.index(v) for v in shared]
    ib = [b.variables.index(v) for v in shared]
    extra = [k for k, v in enumerate(b.variables) if v not in shared]
    index: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in b.rows:
        index.setdefault(tuple(row[k] for k in ib), []).append(tuple(row[k] for k in extra))
    rows = [ra + rb for ra in a.rows for rb in index.get(tuple(ra[k] for k in ia), ())]
    return Table(a.variables + tuple(b.variables[k] for k in extra), rows)


def cross_join(a: Table, b: Table) -> Table:
    """Cross product of two tables."""
    return Table(a.variables + b.variables, [ra + rb for ra in a.rows for rb in b.rows])


@dataclass
class Runner:
    """The state of one federated query: clients, caches, warnings (partial answers), request pool."""

    clients: dict[str, MemberClient]
    bind_join_block: int = 50
    partial: bool = False
    naive: bool = False
    warnings: list[str] = field(default_factory=list)
    geometries: dict[Any, Any] = field(default_factory=dict)
    bgp_cache: dict[int, Table] = field(default_factory=dict)
    pool: ThreadPoolExecutor | None = None
    deadline: float | None = None  # time.monotonic() past which no sub-query is sent
    geosparql: dict[str, bool] = field(default_factory=dict)  # member -> evaluates geof: functions
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ requests

    def _select(self, member: str, query: str) -> Table | None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryCancelled("the federated query passed its time limit; no more sub-queries are sent")
        try:
            return self.clients[member].select(query)
        except MemberError as exc:
            if not self.partial:
                raise
            with self._lock:
                if str(exc) not in self.warnings:
                    self.warnings.append(str(exc))
            log.warning("partial answer: %s", exc)
            return None

    def _parallel(self, calls: list[tuple[str, str]]) -> list[tuple[str, Table | None]]:
        if len(calls) <= 1 or self.pool is None:
            return [(m, self._select(m, q)) for m, q in calls]
        futures = [(m, self.pool.submit(self._select, m, q)) for m, q in calls]
        return [(m, f.result()) for m, f in futures]

    def fetch(self, unit: Unit, ctx: QueryContext, values: Table | None = None, *,
              spatial_filters: list[str] | None = None, needed: set[Variable] | None = None) -> Table:
        """The unit's solutions from all its sources.

        ``values`` are shipped as VALUES blocks (a bind join); each of ``spatial_filters`` (FILTER
        expressions that every wanted solution satisfies one of) makes one request to each member
        that evaluates ``geof:`` functions, the solutions found twice counted once; blank-node
        variables not in ``needed`` (read by no other unit or filter) are not fetched.
        """
        needed = needed or set()
        variables = tuple(sorted((v for v in unit.variables if v in needed or not v.startswith("_bn_")), key=str))
        if spatial_filters and len(spatial_filters) > 1:
            variables = tuple(sorted(unit.variables, key=str))  # complete rows: a row found twice is one solution
        head = " ".join(to_sparql(v) for v in variables)
        blocks = [""]
        if values is not None:
            names = " ".join(to_sparql(v) for v in values.variables)
            size = max(1, self.bind_join_block)
            blocks = [
                f"VALUES ({names}) {{ " + " ".join("(" + " ".join(t.n3() for t in row) + ")"
                                                  for row in values.rows[i : i + size]) + " } "
                for i in range(0, len(values.rows), size)
            ]
        calls = []
        deduplicate: set[str] = set()
        for member in unit.sources:
            body = " ".join(p.text() for p in unit.patterns) if self.naive else unit.body(member)
            if spatial_filters and self.geosparql.get(member, False):
                bodies = [f"{body} FILTER({f})" for f in spatial_filters]
                if len(bodies) > 1:
                    deduplicate.add(member)
            else:
                bodies = [body]
            calls.extend((member, f"SELECT {head} WHERE {{ {block}{b} }}") for block in blocks for b in bodies)
        rows: list[tuple[Any, ...]] = []
        by_member: dict[str, list[tuple[Any, ...]]] = {}
        for member, table in self._parallel(calls):
            if table is None:
                continue
            order = [table.variables.index(v) if v in table.variables else None for v in variables]
            got = [tuple(r[k] if k is not None else None for k in order) for r in table.rows]
            by_member.setdefault(member, []).extend(got)
        for member, got in by_member.items():
            if member in deduplicate:
                got = list(dict.fromkeys(got))
            todo = [c for c in unit.local if self.naive or c not in unit.pushed.get(member, [])]
            rows.extend(self.apply(Table(variables, got), todo, ctx).rows)
        return Table(variables, rows)

    # ------------------------------------------------------------ filters

    def apply(self, table: Table, conjs: list[Any], ctx: QueryContext) -> Table:
        """``table`` filtered by conjuncts over its variables (spatial tests vectorised, others row by row)."""
        for c in conjs:
            if not table.rows:
                return table
            test = spatial_test(c)
            if test is not None and all(v in table.variables for v in test.variables):
                mask = self._spatial_mask(test, table)
            else:
                mask = np.array([self._holds(c, table.variables, r, ctx) for r in table.rows], dtype=bool)
            table = Table(table.variables, [r for r, keep in zip(table.rows, mask) if keep])
        return table

    def _column(self, table: Table, v: Variable) -> np.ndarray:
        k = table.variables.index(v)
        return parse_geometries([r[k] for r in table.rows], self.geometries)

    def _spatial_mask(self, test: SpatialTest, table: Table) -> np.ndarray:
        if test.constant is not None:
            return evaluate_constant(test, self._column(table, test.left or test.right))  # type: ignore[arg-type]
        return evaluate_pairs(test, self._column(table, test.left), self._column(table, test.right))  # type: ignore[arg-type]

    @staticmethod
    def _holds(expr: Any, variables: tuple[Variable, ...], row: tuple[Any, ...], ctx: QueryContext) -> bool:
        bindings = {v: t for v, t in zip(variables, row) if t is not None}
        return bool(_ebv(expr, FrozenBindings(ctx, bindings)))

    # ------------------------------------------------------------ a whole BGP

    def run(self, plan: BGPPlan, ctx: QueryContext) -> Table:
        """The solutions of a planned BGP with its FILTER conjuncts."""
        if plan.empty:
            variables = tuple(sorted(set().union(*(u.variables for u in plan.units)) if plan.units else set(), key=str))
            return Table(variables, [])
        needed: set[Variable] = set()
        for unit in plan.units:
            others = set().union(*(u.variables for u in plan.units if u is not unit))
            needed |= unit.variables & others
        for c in plan.conjuncts:
            needed |= variables_of(c)
        done: set[int] = set()
        for unit in plan.units:  # conjuncts handled inside a unit (pushed or applied on its rows)
            for c in unit.local + [c for cs in unit.pushed.values() for c in cs]:
                if all(c in unit.pushed.get(m, []) or c in unit.local for m in unit.sources):
                    done.add(id(c))
        acc: Table | None = None
        for unit in plan.units:
            if acc is None:
                acc = self.fetch(unit, ctx, needed=needed)
            else:
                acc = self._join(acc, unit, plan, ctx, done, needed)
            todo = [c for c in plan.conjuncts if id(c) not in done and variables_of(c) and
                    variables_of(c) <= set(acc.variables)]
            acc = self.apply(acc, todo, ctx)
            done |= {id(c) for c in todo}
            if not acc.rows:
                break
        if acc is None:
            acc = Table((), [()])
        rest = [c for c in plan.conjuncts if id(c) not in done]
        return self.apply(acc, rest, ctx)

    def _join(self, acc: Table, unit: Unit, plan: BGPPlan, ctx: QueryContext, done: set[int],
              needed: set[Variable]) -> Table:
        shared = [v for v in acc.variables if v in unit.variables]
        if shared:
            idx = [acc.variables.index(v) for v in shared]
            keys = list(dict.fromkeys(tuple(r[k] for k in idx) for r in acc.rows))
            blocks = math.ceil(len(keys) / max(1, self.bind_join_block))
            bind_cost = blocks * len(unit.sources) * LATENCY_S
            fetch_cost = len(unit.sources) * LATENCY_S + unit.estimate * ROW_S
            bnodes = any(isinstance(t, BNode) for key in keys for t in key)
            if not self.naive and not bnodes and bind_cost <= fetch_cost:
                right = self.fetch(unit, ctx, Table(tuple(shared), keys), needed=needed)
            else:
                right = self.fetch(unit, ctx, needed=needed)
            return hash_join(acc, right)
        link = None
        for test in plan.spatial:
            if id(test.expr) in done or test.left is None or test.right is None:
                continue
            if test.left in acc.variables and test.right in unit.variables:
                link = (test, test.left, test.right)
                break
            if test.right in acc.variables and test.left in unit.variables:
                link = (test, test.right, test.left)
                break
        if link is None:
            return cross_join(acc, self.fetch(unit, ctx, needed=needed))
        test, mine, theirs = link
        known = self._column(acc, mine)
        semi = None if self.naive else semi_join_filters(test, theirs, known)
        if semi is not None and len(semi) > 1:
            blocks_cost = len(semi) * sum(self.geosparql.get(m, False) for m in unit.sources) * LATENCY_S
            if blocks_cost > len(unit.sources) * LATENCY_S + unit.estimate * ROW_S:
                semi = None  # fetching the unit whole is cheaper than one request per block
        right = self.fetch(unit, ctx, spatial_filters=semi, needed=needed)
        if mine == test.left:
            ia, ib = join_pairs(test, known, self._column(right, theirs))
        else:
            ib, ia = join_pairs(test, self._column(right, theirs), known)
        done.add(id(test.expr))
        return Table(acc.variables + right.variables,
                     [acc.rows[i] + right.rows[j] for i, j in zip(ia.tolist(), ib.tolist())])
