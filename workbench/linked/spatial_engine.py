"""A columnar path for large spatial joins and low-selectivity selections: DuckDB over the store's triples.

pyoxigraph costs a few microseconds per joined and per produced row, so a spatial join of
two 100k-feature sides, or a selection that keeps half of them, is bounded by pyoxigraph
rather than by the geometry work (see docs/linked-data.md). Strabo2 answers such queries
with Spark SQL + Sedona over a geometry table; here the same shape of plan runs in one
process:

1. the store's default graph is copied, once per store generation, into a DuckDB table
   ``t(s, p, o)`` of N-Triples term texts (pyoxigraph's N-Triples dump, split by pyarrow);
2. the query is parsed to the SPARQL algebra (rdflib) and, when it is one basic graph
   pattern (IRI predicates or sequence paths of IRIs) with one spatial FILTER, projected
   variables or ``COUNT(*)``, ``DISTINCT`` and ``LIMIT``, compiled to one SQL join over ``t``;
3. the spatial part is answered by the store's STRtree index (the same vectorised shapely
   predicates as the ``geof:`` functions): for a join, on the literals each side can bind
   (each side's own patterns, in SQL); the matching literals or pairs join the SQL;
4. the rows' term texts are turned back into pyoxigraph terms in one N-Triples parse.

Any other query shape is left to the index path (:meth:`GeoStore.prepare`), which also
stays in charge of small answers, where it is faster. Answers are equal to both other paths
(tested, and asserted by ``benchmarks/linked_spatial.py``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyoxigraph as ox

from workbench.linked.rewrite import SpatialFilter
from workbench.linked.spatial_index import SpatialIndex

__all__ = ["EngineQuery", "TableSolutions", "TripleTable", "compile_query", "run_engine_query", "with_selection"]

log = logging.getLogger(__name__)

_XSD_INTEGER = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")


# ------------------------------------------------------------------ results


class TableSolution:
    """One row of :class:`TableSolutions`: ``row["v"]``, ``row[ox.Variable("v")]`` or ``row[0]``, like pyoxigraph's."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: tuple[Any, ...]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: Any) -> Any:
        position = self._names.get(key) if isinstance(key, str) else None
        if position is not None:
            return self._values[position]
        if isinstance(key, int):
            return self._values[key]
        name = key.value if isinstance(key, ox.Variable) else str(key).lstrip("?$")
        return self._values[self._names[name]]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<TableSolution {dict(zip(self._names, self._values))}>"


class TableSolutions:
    """Query solutions computed by the engine, read like pyoxigraph's ``QuerySolutions``."""

    def __init__(self, variables: list[str], columns: list[list[Any]]) -> None:
        self._names = {name: n for n, name in enumerate(variables)}
        self._columns = columns
        self.variables = [ox.Variable(name) for name in variables]

    def __iter__(self) -> Iterator[TableSolution]:
        for values in zip(*self._columns):
            yield TableSolution(self._names, values)

    def __len__(self) -> int:
        return len(self._columns[0]) if self._columns else 0


# ------------------------------------------------------------------ the triple table


class TripleTable:
    """The default graph of a store as a DuckDB table ``t(s, p, o)`` of N-Triples term texts."""

    def __init__(self, store: ox.Store, index: SpatialIndex, *, generation: int) -> None:
        import duckdb
        import pyarrow as pa
        import pyarrow.compute as pc

        started = time.perf_counter()
        self.generation = generation
        data = store.dump(format=ox.RdfFormat.N_TRIPLES, from_graph=ox.DefaultGraph()) or b""
        # N-Triples escapes line breaks inside literals, so " .\n" only ends a statement,
        # and subjects and predicates hold no spaces
        lines = pa.array(data.decode("utf-8").split(" .\n")[:-1], type=pa.string())
        flat = pc.list_flatten(pc.split_pattern(lines, " ", max_splits=2))
        encoded = pc.dictionary_encode(flat)  # one code per distinct term text, for s, p and o alike
        self.dictionary = encoded.dictionary
        codes = np.asarray(encoded.indices, dtype=np.int64)
        table = pa.table({"s": codes[0::3], "p": codes[1::3], "o": codes[2::3]})
        self._db = duckdb.connect()
        self._db.register("t_arrow", table)
        self._db.execute("CREATE TABLE t AS SELECT * FROM t_arrow")
        self._db.unregister("t_arrow")
        self.rows = table.num_rows
        self._code_of_text: dict[str, int] | None = None
        self._lock = threading.Lock()
        # spatial index id <-> term code of its geometry literal
        ids, texts = [], []
        for (lexical, datatype), ident in index._ids.items():
            ids.append(ident)
            texts.append(str(ox.Literal(lexical, datatype=ox.NamedNode(datatype))))
        literal_codes = self.codes_of(texts)
        self.code_of_id = np.full(max(ids, default=-1) + 1, -1, dtype=np.int64)
        self.code_of_id[ids] = literal_codes
        self.id_of_code = np.full(len(self.dictionary), -1, dtype=np.int64)
        present = literal_codes >= 0
        self.id_of_code[literal_codes[present]] = np.asarray(ids, dtype=np.int64)[present]
        self._lock = threading.Lock()
        log.info("triple table for the spatial engine: %d triples, %d terms in %.1f s", self.rows,
                 len(self.dictionary), time.perf_counter() - started)

    def codes_of(self, texts: list[str]) -> np.ndarray:
        """Term codes of N-Triples texts (-1 for a term not in the graph)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if len(texts) > 64:  # in bulk: one hash of the dictionary
            found = pc.index_in(pa.array(texts, type=pa.string()), value_set=self.dictionary)
            return np.asarray(found.fill_null(-1), dtype=np.int64)
        with self._lock:  # a query's few constants: a look-up table built once
            if self._code_of_text is None:
                self._code_of_text = {text: n for n, text in enumerate(self.dictionary.to_pylist())}
        return np.array([self._code_of_text.get(text, -1) for text in texts], dtype=np.int64)

    def texts_of(self, codes: np.ndarray) -> list[str]:
        """N-Triples texts of term codes."""
        return self.dictionary.take(np.asarray(codes, dtype=np.int64)).to_pylist()

    def cursor(self) -> Any:
        """A DuckDB connection of its own for one query (DuckDB connections are not shared between threads)."""
        with self._lock:
            return self._db.cursor()


# ------------------------------------------------------------------ compiling


@dataclass(frozen=True)
class EngineQuery:
    """A query compiled for the engine.

    Attributes
    ----------
    from_where
        SQL ``FROM … WHERE …`` over aliases of ``t`` (and ``spatial``), for the whole pattern.
    columns
        Variable name -> the SQL column that binds it.
    sides
        For a join: spatial variable -> SQL selecting the literals that variable can take
        under its own triple patterns (``SELECT DISTINCT col FROM … WHERE …``).
    output
        Projected variable names (empty with ``count``).
    count
        Name of the ``COUNT(*)`` variable, or ``None``.
    distinct, limit
        Solution modifiers.
    spatial
        The spatial filter (relation, variables or constant).
    """

    from_where: str
    columns: dict[str, str]
    sides: dict[str, str]
    output: list[str]
    count: str | None
    distinct: bool
    limit: int | None
    spatial: SpatialFilter
    constants: tuple[str, ...] = ()
    """N-Triples texts of the constant terms, for the ``{cN}`` placeholders of the SQL."""
    selected: np.ndarray | None = field(default=None, compare=False, repr=False)
    """For a selection: the index ids matching the constant (computed when planning, valid for its generation)."""


class _NotForEngine(Exception):
    """The query has a shape the engine does not compile (it runs on the index path)."""


def _placeholder(constants: list[str], text: str) -> str:
    """A ``{cN}`` placeholder for a constant term (its code is known only with the table)."""
    constants.append(text)
    return f"{{c{len(constants) - 1}}}"


def _term_text(term: Any) -> str:
    """N-Triples text of an rdflib IRI or literal, as pyoxigraph writes it."""
    from rdflib import Literal, URIRef

    if isinstance(term, URIRef):
        return str(ox.NamedNode(str(term)))
    if isinstance(term, Literal):
        if term.language:
            return str(ox.Literal(str(term), language=term.language))
        if term.datatype is not None:
            return str(ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype))))
        return str(ox.Literal(str(term)))
    raise _NotForEngine(f"term {term!r}")


def _unwrap(algebra: Any) -> tuple[Any, bool, int | None, list[str], str | None]:
    """The Filter node under the solution modifiers: (filter, distinct, limit, projected, count)."""
    node = algebra.p
    limit = None
    distinct = False
    if node.name == "Slice":
        if node.start not in (0, None) or node.length is None:
            raise _NotForEngine("OFFSET")
        limit = int(node.length)
        node = node.p
    if node.name in ("Distinct", "Reduced"):
        distinct = node.name == "Distinct"
        node = node.p
    if node.name != "Project":
        raise _NotForEngine(node.name)
    projected = [str(v) for v in node.PV]
    inner = node.p
    count = None
    if inner.name == "Extend":
        aggregate = inner.p
        if aggregate.name != "AggregateJoin" or len(aggregate.A) != 1 or projected != [str(inner.var)]:
            raise _NotForEngine("aggregates other than COUNT(*)")
        (agg,) = aggregate.A
        if agg.name != "Aggregate_Count" or agg.vars != "*" or agg.distinct or str(inner.expr) != str(agg.res):
            raise _NotForEngine("aggregates other than COUNT(*)")
        group = aggregate.p
        if group.name != "Group" or group.expr:
            raise _NotForEngine("GROUP BY")
        count = str(inner.var)
        inner = group.p
    if inner.name != "Filter" or inner.p.name != "BGP":
        raise _NotForEngine(inner.name)
    return inner, distinct, limit, ([] if count else projected), count


def _pattern_triples(bgp: Any, fresh: Iterator[int]) -> list[tuple[Any, str | None, Any]]:
    """The BGP's triples with sequence paths unrolled: (subject, predicate N-Triples text or None for a variable, object)."""
    from rdflib import URIRef, Variable
    from rdflib.paths import SequencePath

    out: list[tuple[Any, str | None, Any]] = []
    for s, p, o in bgp.triples:
        if isinstance(p, URIRef):
            out.append((s, _term_text(p), o))
        elif isinstance(p, Variable):
            out.append((s, "?" + str(p), o))
        elif isinstance(p, SequencePath) and all(isinstance(step, URIRef) for step in p.args):
            previous = s
            for k, step in enumerate(p.args):
                target = o if k == len(p.args) - 1 else Variable(f"_wbpath{next(fresh)}")
                out.append((previous, _term_text(step), target))
                previous = target
        else:
            raise _NotForEngine(f"property path {p!r}")
    return out


def _component(triples: list[tuple[Any, str | None, Any]], variable: str) -> list[int]:
    """Indices of the triples connected (through shared variables) to ``variable``."""
    from rdflib import BNode, Variable

    def names(triple: tuple[Any, str | None, Any]) -> set[str]:
        s, p, o = triple
        found = {str(x) for x in (s, o) if isinstance(x, (Variable, BNode))}
        if p is not None and p.startswith("?"):
            found.add(p[1:])
        return found

    chosen: list[int] = []
    frontier = {variable}
    changed = True
    while changed:
        changed = False
        for n, triple in enumerate(triples):
            if n not in chosen and names(triple) & frontier:
                chosen.append(n)
                frontier |= names(triple)
                changed = True
    return sorted(chosen)


def _sql_for(triples: list[tuple[Any, str | None, Any]], chosen: list[int],
             constants: list[str]) -> tuple[str, str, dict[str, str]]:
    """FROM list, WHERE conditions and variable columns of the triples ``chosen``; constants go to ``constants``."""
    from rdflib import BNode, Variable

    tables, conditions = [], []
    columns: dict[str, str] = {}

    def bind(term: Any, column: str) -> None:
        if isinstance(term, (Variable, BNode)):
            name = str(term)
            if name in columns:
                conditions.append(f"{column} = {columns[name]}")
            else:
                columns[name] = column
        else:
            conditions.append(f"{column} = {_placeholder(constants, _term_text(term))}")

    for n in chosen:
        s, p, o = triples[n]
        alias = f"t{n}"
        tables.append(f"t AS {alias}")
        bind(s, f"{alias}.s")
        if p is not None and p.startswith("?"):
            bind(Variable(p[1:]), f"{alias}.p")
        else:
            conditions.append(f"{alias}.p = {_placeholder(constants, p)}")
        bind(o, f"{alias}.o")
    return ", ".join(tables), " AND ".join(conditions) or "TRUE", columns


def compile_query(query: str, spatial: SpatialFilter) -> EngineQuery:
    """Compile ``query`` (its spatial FILTER found as ``spatial``) for the engine.

    Raises
    ------
    ValueError
        If the query's shape is not one the engine answers (the caller keeps the index path).
    """
    from rdflib.plugins.sparql.algebra import translateQuery
    from rdflib.plugins.sparql.parser import parseQuery

    try:
        algebra = translateQuery(parseQuery(query)).algebra
        if algebra.name != "SelectQuery" or algebra.get("datasetClause"):
            raise _NotForEngine(algebra.name)
        filter_node, distinct, limit, output, count = _unwrap(algebra)
        expr = filter_node.expr
        if getattr(expr, "name", None) != "Function" or not str(expr.iri).endswith(spatial.relation):
            raise _NotForEngine("FILTER other than one spatial function")
        triples = _pattern_triples(filter_node.p, itertools.count())
        constants: list[str] = []
        from_list, where, columns = _sql_for(triples, list(range(len(triples))), constants)
        variables = [v.lstrip("?$") for v in (spatial.left, spatial.right) if v is not None]
        if not output and count is None:
            raise _NotForEngine("nothing projected")
        if any(v not in columns for v in variables) or any(v not in columns for v in output):
            raise _NotForEngine("a FILTER or projected variable not bound by the pattern")
        sides = {}
        if spatial.constant is None:
            for v in variables:
                side_from, side_where, side_columns = _sql_for(triples, _component(triples, v), constants)
                sides[v] = f"SELECT DISTINCT {side_columns[v]} AS lit FROM {side_from} WHERE {side_where}"
    except _NotForEngine as exc:
        raise ValueError(f"not a query shape for the spatial engine: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - rdflib's parser: the index path handles this query
        raise ValueError(f"the spatial engine could not read the query: {exc}") from None
    return EngineQuery(from_where=f"FROM {from_list} WHERE {where}", columns=columns, sides=sides, output=output,
                       count=count, distinct=distinct, limit=limit, spatial=spatial, constants=tuple(constants))


def with_selection(engine: EngineQuery, ids: np.ndarray) -> EngineQuery:
    """``engine`` carrying the index ids its selection matched (so running it does not select again)."""
    return replace(engine, selected=ids)


# ------------------------------------------------------------------ running


def _terms(texts: list[str]) -> dict[str, Any]:
    """pyoxigraph terms of N-Triples term texts, in one parse."""
    unique = list(dict.fromkeys(texts))
    terms = {text: ox.NamedNode(text[1:-1]) for text in unique if text.startswith("<")}  # IRIs: no parsing needed
    others = [text for text in unique if not text.startswith("<")]
    if others:
        document = "".join(f"<urn:x-wb:r> <urn:x-wb:v> {text} .\n" for text in others)
        parsed = ox.parse(document.encode("utf-8"), format=ox.RdfFormat.N_TRIPLES)
        terms.update(zip(others, (triple.object for triple in parsed)))
    return terms


def run_engine_query(engine: EngineQuery, table: TripleTable, index: SpatialIndex, *,
                     constant: Any = None, deadline: float | None = None) -> TableSolutions:
    """Answer ``engine`` over ``table`` with the spatial part from ``index``.

    Raises
    ------
    TimeoutError
        If ``deadline`` (``time.monotonic()``) passes between the steps.
    """
    import pyarrow as pa

    def check() -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the query's deadline passed in the spatial engine")

    spatial = engine.spatial
    codes = {f"c{n}": str(code) for n, code in enumerate(table.codes_of(list(engine.constants)))}
    cursor = table.cursor()
    try:
        if spatial.constant is not None:
            variable = (spatial.left or spatial.right or "").lstrip("?$")
            ids = engine.selected if engine.selected is not None else \
                index.select(spatial.relation, constant, constant_first=spatial.constant_position == 0)
            cursor.register("spatial", pa.table({"x": table.code_of_id[ids]}))
            join = f"JOIN spatial ON spatial.x = {engine.columns[variable]}"
        else:
            left, right = spatial.left.lstrip("?$"), spatial.right.lstrip("?$")  # type: ignore[union-attr]
            domains = []
            for v in (left, right):
                found = cursor.execute(engine.sides[v].format(**codes)).fetchnumpy()["lit"]
                ids = table.id_of_code[np.asarray(found, dtype=np.int64)]
                domains.append(ids[ids >= 0])
                check()
            a, b = index.join(domains[0], domains[1], relation=spatial.relation)
            check()
            cursor.register("spatial", pa.table({"x": table.code_of_id[a], "y": table.code_of_id[b]}))
            join = f"JOIN spatial ON spatial.x = {engine.columns[left]} AND spatial.y = {engine.columns[right]}"
        from_part, where_part = engine.from_where.format(**codes).split(" WHERE ", 1)
        body = f"{from_part} {join} WHERE {where_part}"
        if engine.count is not None:
            n = cursor.execute(f"SELECT COUNT(*) {body}").fetchone()[0]
            return TableSolutions([engine.count], [[ox.Literal(str(n), datatype=_XSD_INTEGER)]])
        select = ", ".join(f"{engine.columns[v]} AS \"{v}\"" for v in engine.output)
        sql = f"SELECT {'DISTINCT ' if engine.distinct else ''}{select} {body}"
        if engine.limit is not None:
            sql += f" LIMIT {engine.limit}"
        found = cursor.execute(sql).fetchnumpy()
        check()
    finally:
        cursor.close()
    columns = [table.texts_of(found[v]) for v in engine.output]
    terms = _terms([text for column in columns for text in column])
    return TableSolutions(engine.output, [[terms[text] for text in column] for column in columns])
