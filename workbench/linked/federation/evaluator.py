"""The algebra evaluator: rdflib evaluates the operators above basic graph patterns, the federator the rest.

rdflib (7.x) parses the query (:func:`rdflib.plugins.sparql.parser.parseQuery`) and
translates it to SPARQL algebra (:func:`rdflib.plugins.sparql.algebra.translateQuery`);
pyoxigraph, which the stores use, exposes no algebra, so it cannot tell the federator
what a query is made of. The evaluation runs through rdflib's ``evalQuery`` with a hook
(``CUSTOM_EVALS``) that takes over:

* ``BGP`` and ``Filter`` over a ``BGP``: planned (:mod:`~workbench.linked.federation.planner`)
  and run over the members (:mod:`~workbench.linked.federation.executor`);
* ``Join`` and ``LeftJoin`` (OPTIONAL): both sides evaluated once and hash-joined
  (rdflib would re-evaluate the right side for every left solution, one round of
  requests each);
* ``Filter`` over ``Join``/``LeftJoin``: conjuncts over the left side's variables are
  moved into it first, so that spatial FILTERs reach the members;
* ``Graph`` and ``SERVICE``: refused (:class:`UnsupportedQueryError`).

Everything else (UNION, MINUS, BIND, VALUES, GROUP BY and aggregates, ORDER BY, LIMIT,
DISTINCT, sub-queries, expressions) is rdflib's own evaluation. The hook is active only
inside :func:`activate` (a context variable), so other rdflib users in the process are
not affected.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

from rdflib import Variable
from rdflib.plugins.sparql import CUSTOM_EVALS
from rdflib.plugins.sparql.evaluate import evalPart
from rdflib.plugins.sparql.evalutils import _ebv
from rdflib.plugins.sparql.parserutils import CompValue
from rdflib.plugins.sparql.sparql import FrozenBindings, QueryContext

from workbench.linked.federation.client import Table
from workbench.linked.federation.errors import UnsupportedQueryError
from workbench.linked.federation.expressions import conjuncts, variables_of

__all__ = ["activate", "bgp_variables", "install"]

_ACTIVE: contextvars.ContextVar[Callable[[QueryContext, CompValue, list[Any]], Table] | None] = \
    contextvars.ContextVar("workbench_federation", default=None)
_KEY = "workbench.federation"


def bgp_variables(bgp: CompValue) -> set[Variable]:
    """Variables of a BGP's triples (blank nodes as the planner names them)."""
    from workbench.linked.federation.planner import Pattern

    out: set[Variable] = set()
    for t in bgp.triples:
        out |= Pattern(t, []).variables
    return out


@contextlib.contextmanager
def activate(run_bgp: Callable[[QueryContext, CompValue, list[Any]], Table]) -> Iterator[None]:
    """Within the block, BGPs evaluated by rdflib in this context go to ``run_bgp(ctx, bgp, conjuncts)``."""
    install()
    token = _ACTIVE.set(run_bgp)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def install() -> None:
    """Add the hook to rdflib's ``CUSTOM_EVALS`` (idempotent), and correct rdflib's MIN/MAX of IRIs."""
    CUSTOM_EVALS[_KEY] = _custom_eval
    _fix_extremum()


def _fix_extremum() -> None:
    """rdflib 7.6 wraps the MIN/MAX value in ``Literal(...)``, turning an IRI into a string; keep terms as they are."""
    from rdflib.plugins.sparql import aggregates
    from rdflib.term import Identifier, Literal

    if getattr(aggregates.Extremum.set_value, "_workbench", False):
        return

    def set_value(self: Any, bindings: Any) -> None:
        if self.value is not None:
            bindings[self.var] = self.value if isinstance(self.value, Identifier) else Literal(self.value)

    set_value._workbench = True  # type: ignore[attr-defined]
    aggregates.Extremum.set_value = set_value  # type: ignore[method-assign]


def _solutions(ctx: QueryContext, table: Table) -> Iterator[FrozenBindings]:
    outer = dict(ctx.solution())
    names = table.variables
    for row in table.rows:
        merged = dict(outer)
        ok = True
        for v, t in zip(names, row):
            if t is None or v.startswith("_bn_"):
                continue
            if v in merged and merged[v] != t:
                ok = False
                break
            merged[v] = t
        if ok:
            yield FrozenBindings(ctx, merged)


def _bgp(ctx: QueryContext, part: CompValue, conjs: list[Any]) -> Iterator[FrozenBindings]:
    run = _ACTIVE.get()
    assert run is not None
    return _solutions(ctx, run(ctx, part, conjs))


def _compatible(a: FrozenBindings, b: FrozenBindings) -> bool:
    return all(a[k] == v for k, v in b.items() if k in a)


def _hash_join(left: list[FrozenBindings], right: list[FrozenBindings]) -> list[tuple[FrozenBindings, list[FrozenBindings]]]:
    """Each left solution with the right solutions compatible with it (hash index on always-bound shared variables)."""
    if not left:
        return []
    lvars = set.intersection(*(set(a.keys()) for a in left))
    rvars = set.intersection(*(set(b.keys()) for b in right)) if right else set()
    keys = sorted(lvars & rvars, key=str)
    index: dict[tuple[Any, ...], list[FrozenBindings]] = {}
    for b in right:
        index.setdefault(tuple(b[k] for k in keys), []).append(b)
    return [(a, [b for b in index.get(tuple(a[k] for k in keys), []) if _compatible(a, b)]) for a in left]


def _push_filter(part: CompValue) -> CompValue | None:
    """``Filter(expr, Join|LeftJoin(p1, ...))`` with the conjuncts over ``p1``'s BGP variables moved into ``p1``."""
    inner = part.p
    if inner.name not in ("Join", "LeftJoin"):
        return None
    p1 = inner.p1
    target = p1.p if p1.name == "Filter" else p1
    if target.name != "BGP":
        return None
    bound = bgp_variables(target)
    move = [c for c in conjuncts(part.expr) if variables_of(c) and variables_of(c) <= bound]
    if not move:
        return None
    keep = [c for c in conjuncts(part.expr) if c not in move]
    old = conjuncts(p1.expr) if p1.name == "Filter" else []
    new_p1 = CompValue("Filter", p=target, expr=_and(old + move))
    new_inner = CompValue(inner.name, **{k: v for k, v in inner.items()})
    new_inner["p1"] = new_p1
    if not keep:
        return new_inner
    return CompValue("Filter", p=new_inner, expr=_and(keep))


def _and(items: list[Any]) -> Any:
    from rdflib.plugins.sparql.operators import ConditionalAndExpression
    from rdflib.plugins.sparql.parserutils import Expr

    if len(items) == 1:
        return items[0]
    return Expr("ConditionalAndExpression", ConditionalAndExpression, expr=items[0], other=items[1:])


class _LeftToRdflib(NotImplementedError):
    """rdflib's ``CUSTOM_EVALS`` protocol: this part is not the federator's; rdflib's own evaluator takes it."""


def _custom_eval(ctx: QueryContext, part: CompValue) -> Any:
    if _ACTIVE.get() is None:
        raise _LeftToRdflib
    name = part.name
    if name == "BGP":
        return _bgp(ctx, part, [])
    if name == "Filter":
        if part.p.name == "BGP":
            return _bgp(ctx, part.p, conjuncts(part.expr))
        pushed = _push_filter(part)
        if pushed is not None:
            return evalPart(ctx, pushed)
        raise _LeftToRdflib
    if name == "Join":
        left = list(evalPart(ctx, part.p1))
        right = list(evalPart(ctx, part.p2)) if left else []
        return (a.merge(b) for a, bs in _hash_join(left, right) for b in bs)
    if name == "LeftJoin":
        return _left_join(ctx, part)
    if name == "Graph":
        raise UnsupportedQueryError("GRAPH patterns are not federated: the members are queried on their default "
                                    "graph (the union of their graphs)")
    if name == "ServiceGraphPattern":
        raise UnsupportedQueryError("SERVICE inside a federated query is not supported: name the endpoint as a member")
    raise _LeftToRdflib


def _left_join(ctx: QueryContext, part: CompValue) -> Iterator[FrozenBindings]:
    left = list(evalPart(ctx, part.p1))
    right = list(evalPart(ctx, part.p2)) if left else []
    pairs = _spatial_pairs(left, right, part.expr)
    if pairs is not None:
        yield from _left_join_pairs(left, right, pairs, part.expr)
        return
    for a, bs in _hash_join(left, right):
        matched = False
        for b in bs:
            merged = a.merge(b)
            if _ebv(part.expr, merged):
                matched = True
                yield merged
        if not matched:
            yield a


def _spatial_pairs(left: list[FrozenBindings], right: list[FrozenBindings], expr: Any) -> Any:
    """Candidate ``(i, j)`` pairs from a spatial test of the OPTIONAL's condition linking the two sides, or ``None``.

    ``OPTIONAL { ... FILTER(geof:distance(?left_geometry, ?right_geometry, ...) <= d) }`` would
    otherwise measure every compatible pair one by one in rdflib's evaluator.
    """
    from workbench.linked.federation.spatial import join_pairs, parse_geometries, spatial_test

    if not left or not right or expr is None:
        return None
    lvars = set.intersection(*(set(a.keys()) for a in left))
    rvars = set.intersection(*(set(b.keys()) for b in right))
    for c in conjuncts(expr):
        test = spatial_test(c)
        if test is None or test.left is None or test.right is None or not test.prunes:
            continue
        if test.left in lvars and test.right in rvars and test.right not in lvars:
            cache: dict[Any, Any] = {}
            a = parse_geometries([x[test.left] for x in left], cache)
            b = parse_geometries([y[test.right] for y in right], cache)
            return join_pairs(test, a, b)
        if test.right in lvars and test.left in rvars and test.left not in lvars:
            cache = {}
            a = parse_geometries([y[test.left] for y in right], cache)
            b = parse_geometries([x[test.right] for x in left], cache)
            j, i = join_pairs(test, a, b)
            return i, j
    return None


def _left_join_pairs(left: list[FrozenBindings], right: list[FrozenBindings], pairs: Any,
                     expr: Any) -> Iterator[FrozenBindings]:
    matches: dict[int, list[int]] = {}
    for i, j in zip(pairs[0].tolist(), pairs[1].tolist()):
        matches.setdefault(i, []).append(j)
    for i, a in enumerate(left):
        matched = False
        for j in matches.get(i, ()):
            b = right[j]
            if not _compatible(a, b):
                continue
            merged = a.merge(b)
            if _ebv(expr, merged):  # the whole condition: the spatial test only chose the candidates
                matched = True
                yield merged
        if not matched:
            yield a
