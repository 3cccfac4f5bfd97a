"""The federator: one GeoSPARQL query over several member endpoints (protocol-neutral core).

>>> fed = Federation({"eo": "http://127.0.0.1:8891/sparql", "insitu": "http://127.0.0.1:8892/sparql"})
>>> rows = fed.select("SELECT ?p WHERE { ?p geo:hasGeometry/geo:asWKT ?w ... }")
>>> print(fed.explain(query))

:meth:`Federation.select` answers a :class:`SelectResult`: a list of dicts (variable name ->
pyoxigraph term, ``None`` when unbound) with ``.variables`` (names, in the query's order),
``.partial`` and ``.warnings`` (members left out of a partial answer).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyparsing import ParseException
from rdflib import Graph
from rdflib.plugins.sparql.algebra import translateQuery
from rdflib.plugins.sparql.evaluate import evalQuery
from rdflib.plugins.sparql.parser import parseQuery
from rdflib.plugins.sparql.parserutils import CompValue, Expr
from rdflib.plugins.sparql.sparql import QueryContext

from workbench.errors import ConfigError
from workbench.linked.federation.client import MemberClient, MemberStats, Table
from workbench.linked.federation.errors import FederationError, MemberError, UnsupportedQueryError
from workbench.linked.federation.evaluator import _push_filter, activate
from workbench.linked.federation.executor import Runner
from workbench.linked.federation.expressions import conjuncts
from workbench.linked.federation.functions import register_geof
from workbench.linked.federation.metadata import MetadataCache, SourceMetadata
from workbench.linked.federation.planner import BGPPlan, plan_bgp
from workbench.linked.federation.terms import to_oxigraph
from workbench.linked.rewrite import rewrite_topology_properties
from workbench.linked.store import QuerySyntaxError, check_geometry_constants, with_default_prefixes

__all__ = ["Federation", "Plan", "SelectResult"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def _check_geof_calls(text: str) -> None:
    """Refuse, as a store does, calls of ``geof:`` functions the workbench does not implement; and the aggregates.

    The GeoSPARQL 1.1 spatial aggregates (``geof:aggUnion`` ...) are pyoxigraph custom aggregates
    in the store; rdflib's evaluator has no custom aggregates, so the federator refuses them
    rather than evaluating them as plain functions (one value per row, not per group).
    """
    from workbench.linked import geosparql
    from workbench.linked.rewrite import function_calls
    from workbench.linked.vocab import GEOF

    known = set(register_geof())
    aggregates_of = getattr(geosparql, "custom_aggregate_functions", dict)
    aggregates = {t.value for t in aggregates_of()}
    for iri, offset in function_calls(text):
        if not iri.startswith(GEOF):
            continue
        if iri in aggregates:
            raise UnsupportedQueryError(f"the spatial aggregate geof:{iri[len(GEOF):]} (at offset {offset}) is not "
                                        "evaluated by the federator: aggregate in the member's own query instead")
        if iri not in known:
            names = ", ".join(sorted(k[len(GEOF):] for k in known))
            raise QuerySyntaxError(f"the function geof:{iri[len(GEOF):]} (at offset {offset}) is not implemented by "
                                   f"the federator; it implements geof: {names}")


@contextlib.contextmanager
def _evaluation_errors() -> Iterator[None]:
    """rdflib's evaluator failing on a query (e.g. ORDER BY an expression in error) is a refusal, not a crash."""
    try:
        yield
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        if isinstance(exc, (FederationError, QuerySyntaxError)):
            raise
        log.warning("rdflib's evaluator failed", exc_info=True)
        raise UnsupportedQueryError(f"the federator's evaluator (rdflib) cannot evaluate this query: "
                                    f"{type(exc).__name__}: {exc}") from exc


class SelectResult(list):  # type: ignore[type-arg]
    """Rows of a federated SELECT: dicts of variable name -> pyoxigraph term (``None``: unbound).

    Attributes
    ----------
    variables
        The projected variable names, in order.
    partial
        Whether members were left out (``partial=True`` federations only); see ``warnings``.
    warnings
        One message per member that failed.
    """

    def __init__(self, rows: list[dict[str, Any]], variables: list[str], warnings: list[str]) -> None:
        super().__init__(rows)
        self.variables = variables
        self.warnings = warnings
        self.partial = bool(warnings)


@dataclass
class Plan:
    """What :meth:`Federation.explain` answers: the operators kept at the federator and each BGP's plan."""

    form: str
    operators: list[str]
    bgps: list[BGPPlan]
    members: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.form} query over {len(self.members)} members: "
                 + ", ".join(f"{n} ({d})" for n, d in self.members.items())]
        if self.operators:
            lines.append("at the federator (rdflib algebra): " + " > ".join(self.operators))
        for n, bgp in enumerate(self.bgps, 1):
            lines.append(f"BGP {n}:")
            lines.extend(bgp.lines("  "))
        return "\n".join(lines)


class Federation:
    """A federation of SPARQL endpoints answering GeoSPARQL queries (see the package docs).

    Parameters
    ----------
    members
        Member name -> SPARQL endpoint URL.
    timeout
        Seconds one request to a member may take.
    bind_join_block
        Bindings per ``VALUES`` block of a bind join.
    partial
        Answer without a member that is down or times out (the answer says so) instead of failing.
    api_keys
        Member name -> key sent as ``Authorization: Bearer``.
    metadata_dir
        Folder where member metadata is cached between runs; ``None``: in memory only.
    naive
        The baseline: every pattern to every member, no pruning, grouping, pushing or bind joins.
    count_probes
        Order joins by ``COUNT`` probes of the groups (otherwise by metadata counts only).
    """

    def __init__(self, members: Mapping[str, str], *, timeout: float = 30.0, bind_join_block: int = 50,
                 partial: bool = False, api_keys: Mapping[str, str] | None = None,
                 metadata_dir: str | Path | None = None, naive: bool = False, count_probes: bool = True) -> None:
        if not members:
            raise ConfigError("a federation needs at least one member (NAME=URL)")
        for name, url in members.items():
            if not _NAME.match(name):
                raise ConfigError(f"member name {name!r} is not valid: letters, digits, '_', '.', '-', "
                                  "starting with a letter")
            if not re.match(r"^https?://[^\s/]+", str(url)):
                raise ConfigError(f"member {name!r}: {url!r} is not an http(s) endpoint URL")
        if not (isinstance(bind_join_block, int) and bind_join_block >= 1):
            raise ConfigError(f"bind_join_block must be a positive integer, not {bind_join_block!r}")
        if not timeout > 0:
            raise ConfigError(f"timeout must be positive, not {timeout!r}")
        keys = dict(api_keys or {})
        unknown = set(keys) - set(members)
        if unknown:
            raise ConfigError(f"api_keys for unknown members {sorted(unknown)}: members are {sorted(members)}")
        self.members = dict(members)
        self.timeout = float(timeout)
        self.bind_join_block = bind_join_block
        self.partial = partial
        self.naive = naive
        self.count_probes = count_probes
        self.clients = {n: MemberClient(n, u, timeout=timeout, api_key=keys.get(n)) for n, u in members.items()}
        self.cache = MetadataCache(metadata_dir)
        self._probes: dict[tuple[str, str], Any] = {}
        self._parsed: dict[str, Any] = {}  # query text -> rdflib algebra (parsing costs more than most answers)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="federation")
        register_geof()

    # ------------------------------------------------------------------ metadata

    def metadata(self, *, refresh: bool = False) -> tuple[dict[str, SourceMetadata], list[str]]:
        """Each reachable member's metadata, and warnings for members left out (``partial`` only)."""
        futures = {n: self._pool.submit(self.cache.get, c, refresh=refresh) for n, c in self.clients.items()}
        metas: dict[str, SourceMetadata] = {}
        warnings: list[str] = []
        for name, future in futures.items():
            try:
                metas[name] = future.result()
            except MemberError as exc:
                if not self.partial:
                    raise
                warnings.append(str(exc))
        if not metas:
            raise MemberError(", ".join(self.members), "no member could be reached: " + "; ".join(warnings))
        return metas, warnings

    def refresh_metadata(self) -> dict[str, SourceMetadata]:
        """Probe every member again (and forget cached ASK/COUNT probes)."""
        with self._lock:
            self._probes.clear()
        return self.metadata(refresh=True)[0]

    def _probe(self, kind: str, member: str, query: str) -> Any:
        key = (member, query)
        with self._lock:
            if key in self._probes:
                return self._probes[key]
        client = self.clients[member]
        try:
            if kind == "ask":
                value: Any = client.ask(query)
            else:
                rows = client.select(query).rows
                value = int(str(rows[0][0])) if rows and rows[0][0] is not None else 0
        except MemberError:
            if not self.partial:
                raise
            return True if kind == "ask" else 10**9  # the query's own request then fails and is reported
        with self._lock:
            self._probes[key] = value
        return value

    def _ask(self, member: str, query: str) -> bool:
        return bool(self._probe("ask", member, query))

    def _count(self, member: str, body: str) -> int:
        return int(self._probe("count", member, f"SELECT (COUNT(*) AS ?n) WHERE {{ {body} }}"))

    # ------------------------------------------------------------------ queries

    @contextlib.contextmanager
    def _parsed_query(self, query: str) -> Iterator[Any]:
        """The query's algebra: cached by text, and never evaluated by two threads at once (rdflib marks it)."""
        with self._lock:
            entry = self._parsed.get(query) if isinstance(query, str) else None
        if entry is not None and entry[1].acquire(blocking=False):
            try:
                yield entry[0]
            finally:
                entry[1].release()
            return
        q = self._parse_new(query)
        with self._lock:
            if len(self._parsed) >= 256:
                self._parsed.pop(next(iter(self._parsed)))
            self._parsed.setdefault(query, (q, threading.Lock()))
        yield q

    def _parse_new(self, query: str) -> Any:
        if not isinstance(query, str) or not query.strip():
            raise QuerySyntaxError("the query is empty")
        text = with_default_prefixes(query)
        try:
            parsed = parseQuery(text)
        except ParseException as exc:
            raise QuerySyntaxError(f"{exc.msg} at line {exc.lineno}, column {exc.col}") from None
        except Exception as exc:  # noqa: BLE001 - rdflib raises assorted errors on bad prologues
            raise QuerySyntaxError(str(exc)) from None
        check_geometry_constants(text)
        _check_geof_calls(text)
        rewritten = rewrite_topology_properties(text)
        try:
            if rewritten != text:
                parsed = parseQuery(rewritten)
            q = translateQuery(parsed)
        except Exception as exc:  # noqa: BLE001 - undefined prefixes, bad IRIs...
            raise QuerySyntaxError(str(exc)) from None
        form = q.algebra.name
        if form not in ("SelectQuery", "AskQuery"):
            raise UnsupportedQueryError(f"only SELECT and ASK queries are federated, not {form[:-5].upper()}")
        if q.algebra.datasetClause:
            raise UnsupportedQueryError("FROM / FROM NAMED are not federated: members answer on their default graph")
        return q

    def _evaluate(self, query: str, timeout: float | None = None) -> tuple[Any, Runner]:
        with self._parsed_query(query) as q:
            return self._evaluate_parsed(q, timeout)

    def _evaluate_parsed(self, q: Any, timeout: float | None) -> tuple[Any, Runner]:
        metas, warnings = self.metadata()
        runner = Runner({n: self.clients[n] for n in metas}, bind_join_block=self.bind_join_block,
                        partial=self.partial, naive=self.naive, pool=self._pool,
                        deadline=time.monotonic() + timeout if timeout else None,
                        geosparql={n: m.geosparql for n, m in metas.items()})
        runner.warnings.extend(warnings)
        count = self._count if self.count_probes and not self.naive else None

        def run_bgp(ctx: QueryContext, part: CompValue, conjs: list[Any]) -> Table:
            key = id(part)
            cached = runner.bgp_cache.get(key)
            if cached is not None and getattr(cached, "_conjs", None) == [id(c) for c in conjs]:
                return cached
            plan = plan_bgp(list(part.triples), conjs, metas, ask=self._ask, count=count, naive=self.naive)
            table = runner.run(plan, ctx)
            table._conjs = [id(c) for c in conjs]  # type: ignore[attr-defined]
            runner.bgp_cache[key] = table
            return table

        with activate(run_bgp), _evaluation_errors():
            result = evalQuery(Graph(), q, {}, None)
            if q.algebra.name == "AskQuery":
                return bool(result["askAnswer"]), runner
            names = [str(v) for v in result["vars_"]]
            from rdflib import Variable

            variables = [Variable(n) for n in names]
            rows = [{n: to_oxigraph(row.get(v)) for n, v in zip(names, variables)} for row in result["bindings"]]
        return SelectResult(rows, names, runner.warnings), runner

    def select(self, query: str) -> SelectResult:
        """Answer a SELECT query over the members.

        Raises
        ------
        QuerySyntaxError
            The query is malformed.
        UnsupportedQueryError
            The federator cannot decompose it (CONSTRUCT/DESCRIBE, GRAPH, SERVICE, FROM, sequence paths...).
        MemberError
            A member is down, timed out or failed (unless ``partial``).
        """
        result, _ = self._evaluate(query)
        if not isinstance(result, SelectResult):
            raise UnsupportedQueryError("select() needs a SELECT query; use ask() for ASK")
        return result

    def ask(self, query: str) -> bool:
        """Answer an ASK query over the members (errors as :meth:`select`)."""
        result, _ = self._evaluate(query)
        if not isinstance(result, bool):
            raise UnsupportedQueryError("ask() needs an ASK query; use select() for SELECT")
        return result

    def query(self, query: str, *, timeout: float | None = None) -> SelectResult | bool:
        """Answer a SELECT (rows) or an ASK (bool) query; past ``timeout`` seconds no more sub-queries are sent."""
        return self._evaluate(query, timeout)[0]

    def explain(self, query: str) -> Plan:
        """The plan of a query: operators kept at the federator, and per BGP its sources, groups and join order.

        Only metadata, ASK and COUNT probes are sent; the query itself is not run.
        """
        q = self._parse_new(query)
        metas, _ = self.metadata()
        count = self._count if self.count_probes and not self.naive else None
        operators: list[str] = []
        bgps: list[BGPPlan] = []

        def walk(node: Any) -> None:
            if isinstance(node, Expr) or not isinstance(node, CompValue):
                if isinstance(node, (list, tuple)):
                    for item in node:
                        walk(item)
                return
            if node.name == "Filter" and node.p is not None and node.p.name != "BGP":
                pushed = _push_filter(node)
                if pushed is not None:
                    node = pushed
            if node.name == "Filter" and node.p is not None and node.p.name == "BGP":
                bgps.append(plan_bgp(list(node.p.triples), conjuncts(node.expr), metas, ask=self._ask,
                                     count=count, naive=self.naive))
                return
            if node.name == "BGP":
                bgps.append(plan_bgp(list(node.triples), [], metas, ask=self._ask, count=count, naive=self.naive))
                return
            if node.name in ("Graph", "ServiceGraphPattern"):
                raise UnsupportedQueryError(f"{node.name} patterns are not federated")
            if node.name not in ("SelectQuery", "AskQuery", "ToMultiSet"):
                operators.append(node.name)
            for key, value in node.items():
                if not key.startswith("_") and key not in ("expr", "PV", "A"):
                    walk(value)

        walk(q.algebra)
        described = {n: f"{m.triples} triples, {len(m.predicates)} predicates"
                     f"{', GeoSPARQL' if m.geosparql else ', no GeoSPARQL'}" for n, m in metas.items()}
        return Plan(q.algebra.name[:-5].upper(), operators, bgps, described)

    # ------------------------------------------------------------------ bookkeeping

    def stats(self) -> dict[str, MemberStats]:
        """Requests sent to each member so far."""
        return {n: c.stats for n, c in self.clients.items()}

    def reset_stats(self) -> None:
        """Zero every member's request counters."""
        for c in self.clients.values():
            c.reset_stats()

    def close(self) -> None:
        """Close connections and the request pool."""
        for c in self.clients.values():
            c.close()
        self._pool.shutdown(wait=False)

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


