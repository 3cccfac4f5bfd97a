"""Plan one basic graph pattern (with its FILTER) over the members: sources, groups, join order.

Steps, each recorded in the :class:`BGPPlan` (printable, see :meth:`BGPPlan.lines`):

1. **source selection** per triple pattern from the members' metadata (predicate /
   class lists); a pattern with a variable predicate and a constant, or a member whose
   metadata is incomplete, is settled by an ``ASK`` probe;
2. **authority pruning** (HiBISCuS): a member stays a source of a pattern only if the
   authorities of the pattern's join variables there meet those of the other patterns
   sharing the variable (iterated to a fixpoint);
3. **spatial pruning**: a member whose geometry extent cannot satisfy a spatial test
   (:mod:`workbench.linked.federation.spatial`) is dropped for the pattern binding the
   tested geometry;
4. **exclusive groups**: connected patterns whose only source is the same member are
   sent together, with the FILTER conjuncts over their variables that the member can
   evaluate (``geof:`` ones only where it has GeoSPARQL);
5. **join order**: units by estimated cardinality (``COUNT`` probes for groups,
   metadata counts otherwise), connected units first; each later unit is joined by a
   bind join (its join values in ``VALUES`` blocks) or fetched whole and hash-joined
   (decided at run time from the number of join values), or joined spatially.

``naive=True`` (the benchmark's baseline) keeps none of this: every pattern goes to
every member alone and every FILTER is evaluated at the federator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import shapely
from rdflib import BNode, URIRef, Variable
from rdflib.paths import AlternativePath, InvPath, Path, SequencePath

from workbench.linked.federation.errors import UnsupportedQueryError
from workbench.linked.federation.expressions import calls_geof, to_sparql_expression, variables_of
from workbench.linked.federation.metadata import SourceMetadata
from workbench.linked.federation.spatial import SpatialTest, margin_degrees, search_region, spatial_test
from workbench.linked.federation.terms import to_sparql
from workbench.linked.vocab import RDF

__all__ = ["BGPPlan", "Pattern", "Unit", "expand_paths", "plan_bgp"]

_TYPE = URIRef(RDF + "type")


def _var(term: Any) -> Variable | None:
    if isinstance(term, Variable):
        return term
    if isinstance(term, BNode):
        return Variable(f"_bn_{str(term).replace('-', '_')}")
    return None


def expand_paths(triples: list[tuple[Any, Any, Any]]) -> list[tuple[Any, Any, Any]]:
    """Sequence (``p/q``) and inverse (``^p``) paths written as joins of plain patterns (fresh blank variables).

    SPARQL defines a sequence path as exactly that join, so the answers are the same; the
    fresh variables are blank-node variables, never projected.
    """
    out: list[tuple[Any, Any, Any]] = []
    counter = [0]

    def add(s: Any, p: Any, o: Any) -> None:
        if isinstance(p, InvPath):
            add(o, p.arg, s)
        elif isinstance(p, SequencePath):
            current = s
            for k, step in enumerate(p.args):
                if k == len(p.args) - 1:
                    nxt = o
                else:
                    counter[0] += 1
                    nxt = BNode(f"sp{counter[0]}_{abs(hash((str(s), str(p), str(o)))) % 10**8}")
                add(current, step, nxt)
                current = nxt
        else:
            out.append((s, p, o))

    for s, p, o in triples:
        add(s, p, o)
    return out


def _predicates(p: Any) -> list[str] | None:
    """The IRIs a predicate position stands for; ``None`` for a variable."""
    if isinstance(p, URIRef):
        return [str(p)]
    if isinstance(p, AlternativePath) and all(isinstance(a, URIRef) for a in p.args):
        return [str(a) for a in p.args]
    if isinstance(p, (Variable, BNode)):
        return None
    raise UnsupportedQueryError(
        f"the property path {p.n3() if hasattr(p, 'n3') else p!r} cannot be decomposed over members "
        "(only plain predicates and alternatives of IRIs are): it could join triples held by different members"
    )


@dataclass
class Pattern:
    """One triple pattern and the members that may answer it."""

    triple: tuple[Any, Any, Any]
    sources: list[str]
    pruned: dict[str, str] = field(default_factory=dict)  # member -> why it was dropped

    @property
    def variables(self) -> set[Variable]:
        """The pattern's variables (blank nodes count as variables)."""
        return {v for v in (_var(t) for t in self.triple if not isinstance(t, Path)) if v is not None} | (
            {self.triple[1]} if isinstance(self.triple[1], Variable) else set())

    def text(self) -> str:
        """The pattern in SPARQL."""
        s, p, o = self.triple
        if isinstance(p, AlternativePath):
            ptext = "(" + "|".join(a.n3() for a in p.args) + ")"
        else:
            ptext = to_sparql(p)
        return f"{to_sparql(s)} {ptext} {to_sparql(o)} ."


@dataclass
class Unit:
    """Patterns sent together to the same sources, with the FILTERs pushed to each source."""

    patterns: list[Pattern]
    sources: list[str]
    exclusive: bool
    pushed: dict[str, list[Any]] = field(default_factory=dict)  # member -> conjuncts it evaluates
    local: list[Any] = field(default_factory=list)  # conjuncts over the unit's variables (federator side)
    estimate: float = 0.0
    estimate_source: str = "metadata"

    @property
    def variables(self) -> set[Variable]:
        """Every variable of the unit's patterns."""
        out: set[Variable] = set()
        for p in self.patterns:
            out |= p.variables
        return out

    def body(self, member: str) -> str:
        """The group graph pattern sent to ``member`` (patterns and pushed FILTERs)."""
        parts = [p.text() for p in self.patterns]
        parts += [f"FILTER({to_sparql_expression(c)})" for c in self.pushed.get(member, [])]
        return " ".join(parts)


@dataclass
class BGPPlan:
    """The plan of one basic graph pattern and its FILTER conjuncts."""

    units: list[Unit]
    conjuncts: list[Any]
    spatial: list[SpatialTest]
    empty: bool = False
    notes: list[str] = field(default_factory=list)

    def lines(self, indent: str = "") -> list[str]:
        """The plan as text lines."""
        out = []
        if self.empty:
            out.append(f"{indent}empty: a pattern has no source left (no request is sent)")
        for n, unit in enumerate(self.units, 1):
            kind = "exclusive group" if unit.exclusive else "pattern"
            out.append(f"{indent}{n}. {kind} @ {', '.join(unit.sources) or '-'} "
                       f"(estimate {unit.estimate:.0f} rows, {unit.estimate_source})")
            for p in unit.patterns:
                line = f"{indent}     {p.text()}"
                if p.pruned:
                    line += "   pruned: " + "; ".join(f"{m} ({why})" for m, why in sorted(p.pruned.items()))
                out.append(line)
            for member, conjs in sorted(unit.pushed.items()):
                for c in conjs:
                    out.append(f"{indent}     FILTER at {member}: {to_sparql_expression(c)}")
            for c in unit.local:
                test = spatial_test(c)
                what = test.describe() if test else (to_sparql_expression(c) or c.name)
                out.append(f"{indent}     FILTER at federator where not pushed: {what}")
            if n > 1:
                shared = unit.variables & set().union(*(u.variables for u in self.units[: n - 1]))
                if shared:
                    out.append(f"{indent}     join on {' '.join('?' + v for v in sorted(shared))}: bind join "
                               "(VALUES blocks) or hash join, chosen from the number of join values")
                else:
                    link = [t.describe() for t in self.spatial if t.left and t.right and
                            ({t.left, t.right} & unit.variables)]
                    out.append(f"{indent}     spatial join: {', '.join(link)}" if link else
                               f"{indent}     cross product (no shared variable)")
        for note in self.notes:
            out.append(f"{indent}note: {note}")
        return out


def _estimate(pattern: Pattern, metas: dict[str, SourceMetadata]) -> float:
    s, p, o = pattern.triple
    total = 0.0
    preds = _predicates(p)
    for m in pattern.sources:
        meta = metas[m]
        if preds is None:
            n = float(meta.triples)
        elif preds == [str(_TYPE)] and isinstance(o, URIRef):
            n = float(meta.classes.get(str(o), 0))
        else:
            n = float(sum(meta.predicates.get(q, 0) for q in preds))
        if _var(s) is None:
            n = max(1.0, n / 1000.0)
        elif _var(o) is None and preds != [str(_TYPE)]:
            n = max(1.0, n / 100.0)
        total += n
    return total


def _select_sources(triple: tuple[Any, Any, Any], metas: dict[str, SourceMetadata],
                    ask: Callable[[str, str], bool]) -> list[str]:
    s, p, o = triple
    preds = _predicates(p)
    chosen = []
    for name, meta in metas.items():
        if not meta.complete:
            sure = None
        elif preds is None:
            sure = None if (_var(s) is None or _var(o) is None) else meta.triples > 0
        elif preds == [str(_TYPE)] and isinstance(o, URIRef):
            sure = str(o) in meta.classes
        else:
            sure = any(q in meta.predicates for q in preds)
        if sure is None:
            pattern = Pattern(triple, [])
            sure = ask(name, f"ASK {{ {pattern.text()} }}")
        if sure:
            chosen.append(name)
    return chosen


def _authorities(meta: SourceMetadata, pattern: Pattern, variable: Variable) -> set[str] | None:
    """Authorities ``variable`` can take at ``meta``'s member through ``pattern``; ``None``: unknown."""
    s, p, o = pattern.triple
    preds = _predicates(p)
    if preds is None:
        return None
    if _var(s) == variable:
        table = meta.subject_authorities
    elif _var(o) == variable:
        table = meta.object_authorities
    else:
        return None
    found: set[str] = set()
    for q in preds:
        if q not in table:
            if q in meta.predicates and _var(o) == variable:
                continue  # only literal objects: no IRI can join here
            if q in meta.predicates:
                return None
            continue
        values = table[q]
        if values is None:
            return None
        found |= set(values)
    return found


def _prune_authorities(patterns: list[Pattern], metas: dict[str, SourceMetadata]) -> None:
    changed = True
    while changed:
        changed = False
        for pat in patterns:
            for v in pat.variables:
                others = [q for q in patterns if q is not pat and v in q.variables and v != q.triple[1]]
                if v == pat.triple[1] or not others:
                    continue
                for other in others:
                    reach: set[str] | None = set()
                    for m in other.sources:
                        a = _authorities(metas[m], other, v)
                        if a is None:
                            reach = None
                            break
                        reach |= a  # type: ignore[operator]
                    if reach is None:
                        continue
                    # an IRI literal-free object position yields nothing in reach: a literal join; keep sources
                    o = other.triple[2]
                    if _var(o) == v and not reach:
                        continue
                    for m in list(pat.sources):
                        mine = _authorities(metas[m], pat, v)
                        if mine is None or (_var(pat.triple[2]) == v and not mine):
                            continue
                        if not (mine & reach):
                            pat.sources.remove(m)
                            pat.pruned[m] = f"?{v} authorities do not meet"
                            changed = True


def _extent_region(meta: SourceMetadata, pattern: Pattern) -> Any | None:
    """Union of the occupied cells of ``pattern``'s geometry predicate(s) at a member; ``None``: none."""
    preds = _predicates(pattern.triple[1]) or []
    regions = [meta.extents[q].region() for q in preds if q in meta.extents]
    return shapely.union_all(regions) if regions else None


def _prune_spatially(patterns: list[Pattern], tests: list[SpatialTest], metas: dict[str, SourceMetadata]) -> None:
    def binders(v: Variable) -> list[Pattern]:
        return [p for p in patterns if _var(p.triple[2]) == v and _predicates(p.triple[1]) is not None]

    for test in tests:
        if not test.prunes:
            continue
        if test.constant is not None:
            variable = test.left or test.right
            region = search_region(test)
            for pat in binders(variable):  # type: ignore[arg-type]
                for m in list(pat.sources):
                    mine = _extent_region(metas[m], pat)
                    if mine is None or not mine.intersects(region):
                        pat.sources.remove(m)
                        pat.pruned[m] = f"no geometry meets {test.describe()}"
            continue
        for this, that in ((test.left, test.right), (test.right, test.left)):
            for other in binders(that):  # type: ignore[arg-type]
                regions = [r for r in (_extent_region(metas[m], other) for m in other.sources) if r is not None]
                if not regions:
                    continue
                reach = shapely.union_all(regions)
                _, miny, _, maxy = reach.bounds
                dx, dy = margin_degrees(test, (miny, maxy))
                if dx or dy:
                    reach = reach.buffer(max(dx, dy), join_style="mitre") if dx < 360 else shapely.box(
                        -1e9, miny - dy, 1e9, maxy + dy)
                for pat in binders(this):  # type: ignore[arg-type]
                    for m in list(pat.sources):
                        mine = _extent_region(metas[m], pat)
                        if mine is None or not mine.intersects(reach):
                            pat.sources.remove(m)
                            pat.pruned[m] = f"no geometry can meet the other side of {test.describe()}"


def _components(patterns: list[Pattern]) -> list[list[Pattern]]:
    groups: list[list[Pattern]] = []
    for pat in patterns:
        joined = [g for g in groups if any(pat.variables & q.variables for q in g)]
        merged = [pat] + [q for g in joined for q in g]
        groups = [g for g in groups if g not in joined] + [merged]
    return groups


def plan_bgp(
    triples: list[tuple[Any, Any, Any]],
    conjuncts: list[Any],
    metas: dict[str, SourceMetadata],
    *,
    ask: Callable[[str, str], bool],
    count: Callable[[str, str], int] | None = None,
    naive: bool = False,
) -> BGPPlan:
    """Plan a basic graph pattern and the FILTER conjuncts over it (see the module docstring).

    Parameters
    ----------
    triples
        The BGP's triple patterns (rdflib terms; predicates may be alternatives of IRIs).
    conjuncts
        The ``&&`` operands of the FILTER over the BGP (rdflib expressions).
    metas
        Member name -> its metadata.
    ask
        ``ask(member, query)``: an ASK probe (cached by the caller).
    count
        ``count(member, group_pattern)``: a COUNT probe; ``None``: metadata estimates only.
    naive
        The baseline: every pattern to every member, nothing pushed, no pruning.

    Raises
    ------
    UnsupportedQueryError
        For a property path other than an alternative of IRIs.
    """
    triples = expand_paths(triples)
    for t in triples:
        _predicates(t[1])  # refuses unsupported paths
    tests = [t for t in (spatial_test(c) for c in conjuncts) if t is not None]
    if naive:
        patterns = [Pattern(t, list(metas)) for t in triples]
        units = [Unit([p], list(p.sources), exclusive=False) for p in patterns]
        for u in units:
            u.local = [c for c in conjuncts if variables_of(c) <= u.variables]
            u.estimate = _estimate(u.patterns[0], metas)
        return BGPPlan(_order(units, tests), conjuncts, tests,
                       notes=["naive: every pattern to every member, no pruning"])
    patterns = [Pattern(t, _select_sources(t, metas, ask)) for t in triples]
    _prune_authorities(patterns, metas)
    _prune_spatially(patterns, tests, metas)
    _prune_authorities(patterns, metas)  # what the spatial pruning removed narrows the joins again
    plan = BGPPlan([], conjuncts, tests)
    if any(not p.sources for p in patterns):
        plan.empty = True
    exclusive: dict[str, list[Pattern]] = {}
    units: list[Unit] = []
    for pat in patterns:
        if len(pat.sources) == 1:
            exclusive.setdefault(pat.sources[0], []).append(pat)
        elif pat.sources:
            units.append(Unit([pat], list(pat.sources), exclusive=False))
    for member, pats in exclusive.items():
        for group in _components(pats):
            units.append(Unit(group, [member], exclusive=True))
    for unit in units:
        own = [c for c in conjuncts if variables_of(c) and variables_of(c) <= unit.variables]
        for member in unit.sources:
            geo = metas[member].geosparql
            unit.pushed[member] = [c for c in own if to_sparql_expression(c) is not None and (geo or not calls_geof(c))]
        unit.local = [c for c in own if any(c not in unit.pushed[m] for m in unit.sources)]
        unit.estimate = min(_estimate(p, metas) for p in unit.patterns) * _local_selectivity(unit, metas)
        if count is not None and len(units) > 1 and (len(unit.patterns) > 1 or any(unit.pushed.values())):
            unit.estimate = float(sum(count(m, unit.body(m)) for m in unit.sources)) * _local_selectivity(unit, metas)
            unit.estimate_source = "COUNT probe"
    plan.units = _order(units, tests)
    return plan


def _local_selectivity(unit: Unit, metas: dict[str, SourceMetadata]) -> float:
    """Fraction of a unit's rows that its federator-side constant spatial tests keep (area of box / extent)."""
    fraction = 1.0
    for c in unit.local:
        test = spatial_test(c)
        if test is None or test.constant is None or not test.prunes:
            continue
        region = search_region(test)
        best = 0.0
        for m in unit.sources:
            for p in unit.patterns:
                if _var(p.triple[2]) not in test.variables:
                    continue
                for q in _predicates(p.triple[1]) or []:
                    extent = metas[m].extents.get(q)
                    if extent is None:
                        continue
                    minx, miny, maxx, maxy = extent.bbox
                    area = (maxx - minx) * (maxy - miny)
                    best = max(best, 1.0 if area <= 0 else region.intersection(
                        shapely.box(minx, miny, maxx, maxy)).area / area)
        fraction *= min(1.0, max(best, 1e-4))
    return fraction


def _order(units: list[Unit], tests: list[SpatialTest]) -> list[Unit]:
    """Greedy: the smallest unit first, then connected units (shared variable, then spatial link), smallest first."""
    left = sorted(units, key=lambda u: u.estimate)
    if not left:
        return []
    order = [left.pop(0)]
    while left:
        bound = set().union(*(u.variables for u in order))

        def rank(u: Unit, bound: set[Variable] = bound) -> tuple[int, float]:
            if u.variables & bound:
                return 0, u.estimate
            linked = any(t.left and t.right and ({t.left, t.right} & u.variables) and ({t.left, t.right} & bound)
                         for t in tests)
            return (1 if linked else 2), u.estimate

        nxt = min(left, key=rank)
        left.remove(nxt)
        order.append(nxt)
    return order

