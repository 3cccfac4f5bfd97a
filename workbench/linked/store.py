"""A GeoSPARQL store: pyoxigraph (persistent on disk) + GeoSPARQL 1.0 functions + a spatial index.

>>> store = GeoStore()                       # in memory; GeoStore("path/to/dir") persists
>>> store.load_data(turtle_text, format="turtle")
>>> rows = store.select("SELECT ?f WHERE { ?f geo:sfWithin <http://example.org/A> }")

The prefixes ``geo:``, ``geof:``, ``sf:``, ``uom:``, ``xsd:``, ``rdf:``, ``rdfs:``, ``polar:`` and
``foodsec:`` are declared for every query and update that uses them without declaring them.

What a query goes through (:meth:`GeoStore.prepare`):

1. topological property forms (``?a geo:sfIntersects ?b``) are rewritten into the
   GeoSPARQL query-rewrite union (:mod:`workbench.linked.rewrite`);
2. FILTER-form spatial selections and joins whose variables are bound by triple
   patterns are answered by the spatial index: the FILTER becomes a ``VALUES`` block
   of matching literal ids joined with the hidden index graph, so a join never
   evaluates every pair (``use_index=False`` skips this step: unindexed evaluation);
3. pyoxigraph evaluates the query with the ``geof:`` functions registered as custom
   functions (:mod:`workbench.linked.geosparql`).

RDFS entailment (the ``rdfs:subClassOf`` closure, rule rdfs9, by default; optionally
also ``rdfs:subPropertyOf``, rule rdfs7) is materialised into the default graph after
each load and update (``entailment=``).
"""

from __future__ import annotations

import collections
import io
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import numpy as np
import pyoxigraph as ox
from tqdm.auto import tqdm

from workbench.errors import DataError, StorageError
from workbench.linked import geosparql
from workbench.linked.rewrite import (
    SpatialFilter,
    find_spatial_filters,
    prefixes_of,
    rewrite_topology_properties,
    tokenize,
)
from workbench.linked.spatial_index import ID_PREFIX, INDEX_GRAPH, LIT_PREDICATE, SpatialIndex
from workbench.linked.geometry import parse_literal
from workbench.linked.query_plan import PlanCache, QueryPlan, data_graphs, run_plan
from workbench.linked.vocab import DGGS_LITERAL, GEOMETRY_LITERALS, PREFIXES, RDFS

__all__ = ["GeoStore", "QuerySyntaxError", "FORMATS", "with_default_prefixes", "QueryPlan", "run_plan"]

log = logging.getLogger(__name__)

_GEO_DATATYPES = frozenset(GEOMETRY_LITERALS)  # WKT, GML, GeoJSON, KML (GeoSPARQL 1.1)
_INDEX_GRAPH = ox.NamedNode(INDEX_GRAPH)
_LIT = ox.NamedNode(LIT_PREDICATE)
_INDEXABLE = frozenset(geosparql.RELATIONS) - geosparql.DISJOINT_RELATIONS

#: file suffix / format name -> pyoxigraph RDF format
FORMATS: dict[str, ox.RdfFormat] = {
    "ttl": ox.RdfFormat.TURTLE,
    "turtle": ox.RdfFormat.TURTLE,
    "nt": ox.RdfFormat.N_TRIPLES,
    "ntriples": ox.RdfFormat.N_TRIPLES,
    "n-triples": ox.RdfFormat.N_TRIPLES,
    "nq": ox.RdfFormat.N_QUADS,
    "nquads": ox.RdfFormat.N_QUADS,
    "trig": ox.RdfFormat.TRIG,
    "rdf": ox.RdfFormat.RDF_XML,
    "xml": ox.RdfFormat.RDF_XML,
    "rdfxml": ox.RdfFormat.RDF_XML,
    "owl": ox.RdfFormat.RDF_XML,
    "jsonld": ox.RdfFormat.JSON_LD,
}

_ENTAILMENT = (
    f"INSERT {{ ?s ?super ?o }} WHERE {{ ?sub <{RDFS}subPropertyOf>+ ?super . ?s ?sub ?o . "
    f"FILTER(isIRI(?super) && ?sub != ?super) }}",
    f"INSERT {{ ?s a ?super }} WHERE {{ ?sub <{RDFS}subClassOf>+ ?super . ?s a ?sub . "
    f"FILTER(isIRI(?super) && ?sub != ?super) }}",
)


_geof = geosparql  # the module (GeoStore's ``geosparql`` argument is a flag)
_PARSER = ox.Store()  # empty: parses queries (syntax check) at no evaluation cost


_GEO_SUFFIXES = tuple(f"^^<{datatype}>".encode() for datatype in GEOMETRY_LITERALS)
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
_ESCAPES = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        return chr(int(code[1:], 16)) if code[0] in "uU" and len(code) > 1 else _ESCAPES.get(code, code)

    return _ESCAPE.sub(replace, text) if "\\" in text else text


def _geometry_literals(chunk: bytes) -> list[tuple[str, str]]:
    """``(lexical, datatype)`` of the WKT/GML literals in N-Triples/N-Quads lines."""
    found: list[tuple[str, str]] = []
    if b"geosparql#" not in chunk:
        return found
    for line in chunk.split(b"\n"):
        for suffix, datatype in zip(_GEO_SUFFIXES, GEOMETRY_LITERALS):
            end = line.rfind(suffix)
            if end > 0 and line[end - 1 : end] == b'"':
                start = line.find(b'"')
                found.append((_unescape(line[start + 1 : end - 1].decode("utf-8")), datatype))
    return found


class QuerySyntaxError(DataError):
    """A query or update is malformed; the message is the SPARQL parser's."""


_DECLARED = re.compile(r"(?i)\bPREFIX\s+([\w.-]*):")


def check_geometry_constants(query: str) -> None:
    """Refuse a query whose constant geometry literal (WKT, GML, GeoJSON, KML, DGGS) cannot be parsed.

    A malformed geometry in the data stays a SPARQL expression error (the
    binding is unbound), but one written in the query is the user's mistake:
    answering "no results" would hide it.

    Raises
    ------
    QuerySyntaxError
        Naming the literal, its offset in the query and what is wrong with it.
    """
    from workbench.linked.geometry import GeometryLiteralError, parse_literal
    from workbench.linked.rewrite import typed_literals

    for lexical, datatype, offset in typed_literals(query, frozenset({*GEOMETRY_LITERALS, DGGS_LITERAL})):
        try:
            parse_literal(lexical, datatype)
        except GeometryLiteralError as exc:
            kind = "geo:" + datatype.rsplit("#", 1)[-1]
            raise QuerySyntaxError(f"invalid {kind} {lexical[:80]!r} at offset {offset} of the query: {exc}") from None


def with_default_prefixes(text: str) -> str:
    """``text`` with PREFIX declarations added for the known prefixes it uses but does not declare."""
    declared = set(_DECLARED.findall(text))
    missing = [
        f"PREFIX {p}: <{iri}>" for p, iri in PREFIXES.items()
        if p not in declared and re.search(rf"(?<![\w<]){re.escape(p)}:", text)
    ]
    return "\n".join([*missing, text]) if missing else text


def _rdf_format(fmt: str | None, path: str | None) -> ox.RdfFormat:
    key = (fmt or (Path(path).suffix.lstrip(".") if path else "")).lower()
    if key not in FORMATS:
        raise DataError(
            f"unknown RDF format {key!r} for {path or 'data'}: expected one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[key]


class GeoStore:
    """GeoSPARQL store over pyoxigraph.

    Parameters
    ----------
    path
        Directory of the on-disk store (created if missing); ``None``: in memory.
    entailment
        What is materialised after loads and updates: ``"subclass"`` (default: the
        ``rdfs:subClassOf`` closure, rule rdfs9), ``"rdfs"`` (also ``rdfs:subPropertyOf``,
        rule rdfs7) or ``"none"``. ``"rdfs"`` is not the default because datasets that
        declare specialised geometry properties (``ex:hasPointGeometry rdfs:subPropertyOf
        geo:hasGeometry``) would then answer every geometry of a feature to ``geo:hasGeometry``.
    query_rewrite
        Whether the topological property forms (``?a geo:sfWithin ?b``) are answered with the
        GeoSPARQL query-rewrite extension (Req. 28-30: asserted triples and the relations
        derived from the geometries) or, when ``False``, from the asserted triples only
        (the topology vocabulary extension alone, Req. 4-6). The default for
        :meth:`query`'s ``rewrite`` argument.
    geosparql
        Whether the ``geof:`` functions are evaluated; ``False`` makes a plain SPARQL store
        (a query calling a ``geof:`` function is refused, topological properties are answered
        from asserted triples only): a member a federator must fill the functions in for.
    """

    def __init__(self, path: str | Path | None = None, *, entailment: str = "subclass",
                 query_rewrite: bool = True, geosparql: bool = True) -> None:
        if entailment not in ("subclass", "rdfs", "none"):
            raise DataError(f"unknown entailment {entailment!r}: expected 'subclass', 'rdfs' or 'none'")
        if not isinstance(query_rewrite, bool):
            raise DataError(f"query_rewrite must be True or False, not {query_rewrite!r}")
        self.path = Path(path) if path is not None else None
        try:
            if self.path is not None:
                self.path.mkdir(parents=True, exist_ok=True)
                self._store = ox.Store(str(self.path))
            else:
                self._store = ox.Store()
        except OSError as exc:
            raise StorageError(f"cannot open the RDF store at {self.path}: {exc}") from exc
        self.entailment = entailment
        self.query_rewrite = query_rewrite and geosparql
        self.geosparql = geosparql
        self.index = SpatialIndex()
        self._functions = _geof.custom_functions() if geosparql else {}
        self._aggregates = _geof.custom_aggregate_functions() if geosparql else {}  # GeoSPARQL 1.1 spatial aggregates
        self._write_lock = threading.RLock()
        self._plans = PlanCache()
        self._table: Any = None  # the spatial engine's triple table, built at its first query per generation
        self._engine_lock = threading.Lock()
        self._last_selection: tuple[Any, np.ndarray] | None = None
        self.generation = 0
        """Counts the writes: a query plan (index answers included) holds for one generation."""
        self._restore_index()

    # ------------------------------------------------------------------ state

    @property
    def pyoxigraph(self) -> ox.Store:
        """The underlying pyoxigraph store (for its built-in functions, e.g. as a baseline)."""
        return self._store

    def __len__(self) -> int:
        """Number of quads, not counting the hidden index graph."""
        total = len(self._store)
        hidden = sum(1 for _ in self._store.quads_for_pattern(None, None, None, _INDEX_GRAPH))
        return total - hidden

    def user_graphs(self) -> list[ox.NamedNode | ox.BlankNode]:
        """Named graphs holding data (the index graph excluded)."""
        return data_graphs(self._store)

    def flush(self) -> None:
        """Write pending changes to disk; every write ends here, so it also starts a new :attr:`generation`."""
        if self.path is not None:
            self._store.flush()
        self._plans.clear()
        self.generation += 1

    def _restore_index(self) -> None:
        entries = []
        for quad in self._store.quads_for_pattern(None, _LIT, None, _INDEX_GRAPH):
            ident = int(quad.subject.value[len(ID_PREFIX) :])
            entries.append((ident, quad.object.value, quad.object.datatype.value))
        if entries:
            self.index.restore(entries)
            self.index.build()
            log.info("restored spatial index of %d geometry literals from %s", len(entries), self.path)

    def _index_quads(self, new: list[tuple[int, str, str]]) -> list[ox.Quad]:
        return [
            ox.Quad(ox.NamedNode(f"{ID_PREFIX}{i}"), _LIT, ox.Literal(lex, datatype=ox.NamedNode(dt)), _INDEX_GRAPH)
            for i, lex, dt in new
        ]

    def sync_index(self) -> int:
        """Bring the spatial index in line with the store's geometry literals (after updates).

        Returns the number of literals added or removed.
        """
        with self._write_lock:
            # the scan and the datatype test run inside pyoxigraph; only geometry literals reach Python
            scan = (
                f"SELECT DISTINCT ?o WHERE {{ {{ ?s ?p ?o }} UNION {{ GRAPH ?g {{ ?s ?p ?o }} "
                f"FILTER(?g != <{INDEX_GRAPH}>) }} FILTER(isLiteral(?o) && "
                f"datatype(?o) IN ({', '.join(f'<{d}>' for d in GEOMETRY_LITERALS)})) }}"
            )
            current = {(row[0].value, row[0].datatype.value) for row in self._store.query(scan)}
            known = self.index.keys()
            stale = known - current
            removed = self.index.remove(stale)
            for ident in removed:
                for quad in list(self._store.quads_for_pattern(ox.NamedNode(f"{ID_PREFIX}{ident}"), _LIT, None, _INDEX_GRAPH)):
                    self._store.remove(quad)
            new = self.index.add(sorted(current - known))
            if new:
                self._store.extend(self._index_quads(new))
            self.index.build()
            return len(removed) + len(new)

    # ------------------------------------------------------------------ loading

    def add_quads(self, quads: Iterable[ox.Quad | ox.Triple], *, progress: bool = False, total: int | None = None,
                  chunk_size: int = 200_000, entail: bool = True) -> int:
        """Add quads (or triples, into the default graph) in chunks, indexing their geometry literals.

        Returns the number of quads read.
        """
        count = 0
        bar = tqdm(total=total, unit="triples", disable=not progress, desc="loading")
        chunk: list[ox.Quad] = []
        literals: list[tuple[str, str]] = []

        def flush() -> None:
            new = self.index.add(literals)
            self._store.bulk_extend(chunk + self._index_quads(new))
            bar.update(len(chunk))
            chunk.clear()
            literals.clear()

        with self._write_lock:
            for item in quads:
                quad = item if isinstance(item, ox.Quad) else ox.Quad(item.subject, item.predicate, item.object)
                obj = quad.object
                if isinstance(obj, ox.Literal) and obj.datatype.value in _GEO_DATATYPES:
                    literals.append((obj.value, obj.datatype.value))
                chunk.append(quad)
                count += 1
                if len(chunk) >= chunk_size:
                    flush()
            flush()
            bar.close()
            self.index.build()
            if entail:
                self._entail()
            self.flush()
        return count

    def load(self, path: str | Path, *, format: str | None = None, base_iri: str | None = None,
             graph: str | None = None, progress: bool = True) -> int:
        """Load an RDF file (Turtle, N-Triples, N-Quads, TriG, RDF/XML, JSON-LD) with a progress bar.

        N-Triples and N-Quads files are checked by a syntax pass, then loaded natively by
        pyoxigraph in line-aligned chunks (millions of triples; the bar counts bytes); other
        formats go through the parser quad by quad. A malformed file loads nothing.

        Raises
        ------
        DataError
            If the file is missing, of an unknown format or malformed (parser message included).
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"RDF file {path} does not exist")
        fmt = _rdf_format(format, str(path))
        try:
            if fmt in (ox.RdfFormat.N_TRIPLES, ox.RdfFormat.N_QUADS):
                # a syntax pass first, so that a malformed file loads nothing
                collections.deque(ox.parse(path=str(path), format=fmt), maxlen=0)
                with path.open("rb") as fh:
                    return self._load_lines(fh, fmt, graph=graph, progress=progress, total=path.stat().st_size)
            quads = ox.parse(path=str(path), format=fmt, base_iri=base_iri or path.resolve().as_uri())
            return self.add_quads(self._to_graph(quads, graph), progress=progress)
        except SyntaxError as exc:
            raise DataError(f"malformed RDF in {path}: {exc}") from exc

    def load_data(self, data: str | bytes, *, format: str = "turtle", base_iri: str | None = None,
                  graph: str | None = None) -> int:
        """Load RDF given as text or bytes (see :meth:`load`)."""
        fmt = _rdf_format(format, None)
        try:
            if fmt in (ox.RdfFormat.N_TRIPLES, ox.RdfFormat.N_QUADS):
                raw = data.encode("utf-8") if isinstance(data, str) else data
                return self._load_lines(io.BytesIO(raw), fmt, graph=graph, progress=False, total=len(raw))
            return self.add_quads(self._to_graph(ox.parse(data, fmt, base_iri=base_iri), graph))
        except SyntaxError as exc:
            raise DataError(f"malformed RDF data ({format}): {exc}") from exc

    def _load_lines(self, stream: IO[bytes], fmt: ox.RdfFormat, *, graph: str | None, progress: bool,
                    total: int, chunk_bytes: int = 32 << 20) -> int:
        """Load line-based RDF (N-Triples/N-Quads) in chunks natively, indexing geometry literals."""
        count = 0
        target = ox.NamedNode(graph) if graph else None
        bar = tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc="loading")
        with self._write_lock:
            while True:
                chunk = stream.read(chunk_bytes)
                if not chunk:
                    break
                chunk += stream.readline()  # end on a line boundary
                self._store.bulk_load(input=chunk, format=fmt, to_graph=target) if target is not None else \
                    self._store.bulk_load(input=chunk, format=fmt)
                new = self.index.add(_geometry_literals(chunk))
                if new:
                    self._store.bulk_extend(self._index_quads(new))
                count += chunk.count(b"\n")
                bar.update(len(chunk))
            bar.close()
            self.index.build()
            self._entail()
            self.flush()
        return count

    @staticmethod
    def _to_graph(quads: Iterable[ox.Quad], graph: str | None) -> Iterator[ox.Quad]:
        if graph is None:
            yield from quads
            return
        target = ox.NamedNode(graph)
        for q in quads:
            yield ox.Quad(q.subject, q.predicate, q.object, target)

    def _entail(self) -> None:
        updates = {"rdfs": _ENTAILMENT, "subclass": _ENTAILMENT[1:], "none": ()}[self.entailment]
        for update in updates:
            self._store.update(update)

    def dump(self, path: str | Path, *, format: str | None = None) -> None:
        """Write the data (index graph excluded) to an RDF file, atomically."""
        path = Path(path)
        fmt = _rdf_format(format, str(path))
        tmp = path.with_name(path.name + ".tmp")
        quads = (q for q in self._store if q.graph_name != _INDEX_GRAPH)
        if fmt in (ox.RdfFormat.TURTLE, ox.RdfFormat.N_TRIPLES, ox.RdfFormat.RDF_XML):
            quads = (q for q in quads if q.graph_name == ox.DefaultGraph())
            ox.serialize((q.triple for q in quads), str(tmp), fmt)
        else:
            ox.serialize(quads, str(tmp), fmt)
        tmp.replace(path)

    # ------------------------------------------------------------------ queries

    def prepare(self, query: str, *, use_index: bool = True, rewrite: bool | None = None) -> tuple[str, bool]:
        """The query text pyoxigraph will run, and whether it reads the index graph.

        ``rewrite=None`` follows the store's ``query_rewrite`` setting.
        """
        if rewrite is None:
            rewrite = self.query_rewrite
        text = rewrite_topology_properties(query) if rewrite else query
        if not use_index or len(self.index) == 0 or re.search(r"(?i)\bFROM\b|\bGRAPH\s*[?$]", text):
            return text, False
        filters = find_spatial_filters(text, indexable=_INDEXABLE)
        # keep the innermost-free, non-overlapping ones, then edit from the end of the text
        chosen: list[SpatialFilter] = []
        for f in sorted(filters, key=lambda f: f.filter_span[0]):
            if chosen and f.filter_span[0] < chosen[-1].filter_span[1]:
                continue
            chosen.append(f)
        if not chosen:
            return text, False
        prologue = "".join(f"PREFIX {p}: <{iri}>\n" for p, iri in prefixes_of(tokenize(text)).items())
        # each FILTER leaves its group; its index block opens the group (pyoxigraph then starts the
        # join from the index answers); edits are applied from the end of the text
        edits: list[tuple[int, int, str]] = []
        for n, spatial in enumerate(chosen):
            (fs, fe), (cs, ce) = spatial.filter_span, spatial.span
            if spatial.only_conjunct:
                edits.append((fs, fe, ""))
            else:
                edits.append((cs, ce, "true"))
            edits.append((spatial.group_start, spatial.group_start, " " + self._index_block(spatial, n, prologue) + " "))
        for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
            text = text[:start] + replacement + text[end:]
        return f"PREFIX wbx: <{ID_PREFIX}>\n" + text, True

    def _domain(self, spatial: SpatialFilter, variable: str, prologue: str) -> np.ndarray:
        """Ids of the geometry literals ``variable`` can take under its own triple patterns.

        A superset is always correct (the query still joins with the patterns); when the
        variable's only pattern is the one binding it, every indexed literal is taken.
        The ids come back as one ``GROUP_CONCAT`` string, so the whole evaluation runs inside
        pyoxigraph (without the GIL: the two sides of a join run in parallel threads).
        """
        component = spatial.domains.get(variable, [])
        if len(component) <= 1:  # only the pattern binding the literal: every indexed literal may occur
            return self.index.all_ids()
        patterns = " ".join(component)
        query = (
            f"{prologue}SELECT (GROUP_CONCAT(STRAFTER(STR(?_wbid), \"{ID_PREFIX}\")) AS ?_wbids) WHERE {{ "
            f"{{ SELECT DISTINCT ?_wbid WHERE {{ {patterns} "
            f"GRAPH <{INDEX_GRAPH}> {{ ?_wbid <{LIT_PREDICATE}> {variable} }} }} }} }}"
        )
        rows = list(self._store.query(query))
        text = rows[0][0].value if rows and rows[0][0] is not None else ""
        return np.array(text.split(), dtype=np.int64)

    def _index_block(self, spatial: SpatialFilter, n: int, prologue: str) -> str:
        graph = f"<{INDEX_GRAPH}>"
        lit = f"<{LIT_PREDICATE}>"
        if spatial.constant is not None:
            variable = spatial.left or spatial.right
            assert variable is not None
            ids = self._selection(spatial)
            values = " ".join(f"wbx:{i}" for i in ids)
            # a sub-select: pyoxigraph then hash-joins it with the group (instead of a nested loop)
            return (f"{{ SELECT {variable} WHERE {{ VALUES ?_wb{n}a {{ {values} }} "
                    f"GRAPH {graph} {{ ?_wb{n}a {lit} {variable} }} }} }}")
        assert spatial.left is not None and spatial.right is not None
        with ThreadPoolExecutor(max_workers=2) as pool:
            left_future = pool.submit(self._domain, spatial, spatial.left, prologue)
            right = self._domain(spatial, spatial.right, prologue)
            left = left_future.result()
        a, b = self.index.join(left, right, relation=spatial.relation)
        values = " ".join(f"(wbx:{i} wbx:{j})" for i, j in zip(a.tolist(), b.tolist()))
        return (
            f"{{ SELECT {spatial.left} {spatial.right} WHERE {{ VALUES (?_wb{n}a ?_wb{n}b) {{ {values} }} "
            f"GRAPH {graph} {{ ?_wb{n}a {lit} {spatial.left} . ?_wb{n}b {lit} {spatial.right} }} }} }}"
        )

    def query(self, query: str, *, use_index: bool = True, rewrite: bool | None = None,
              timeout: float | None = None, base_iri: str | None = None) -> Any:
        """Run a SPARQL query with GeoSPARQL; returns pyoxigraph's result object.

        Parameters
        ----------
        use_index
            Answer FILTER-form spatial selections/joins with the spatial index.
        rewrite
            Rewrite topological property forms (GeoSPARQL query rewrite extension);
            ``None``: as the store's ``query_rewrite`` setting.
        timeout
            Seconds after which the GeoSPARQL functions stop computing (they answer
            errors); the caller enforces the wall-clock limit (see the endpoint).

        Raises
        ------
        QuerySyntaxError
            If the query is malformed (the parser's message).
        """
        plan = self.plan(query, use_index=use_index, rewrite=rewrite, base_iri=base_iri)
        if plan.engine is not None:
            return self.run_engine(plan, deadline=time.monotonic() + timeout if timeout else None)
        return run_plan(self._store, plan, functions=self._functions, aggregates=self._aggregates,
                        deadline=time.monotonic() + timeout if timeout else None)

    def plan(self, query: str, *, use_index: bool = True, rewrite: bool | None = None,
             base_iri: str | None = None) -> QueryPlan:
        """Check and prepare ``query`` once: what :func:`run_plan` hands pyoxigraph.

        Plans are cached by query text until the next write (:attr:`generation`), so a
        repeated query costs a dictionary look-up before evaluation.

        Raises
        ------
        QuerySyntaxError
            If the query is malformed (the parser's message), names an unknown ``geof:``
            function or holds a malformed geometry constant.
        """
        key = (query, use_index, rewrite, base_iri)
        cached = self._plans.get(key, self.generation)
        if cached is not None:
            return cached
        generation = self.generation
        written = with_default_prefixes(query)
        self._check_syntax(written, base_iri)
        engine = self._engine_plan(written, rewrite) if use_index else None
        if engine is not None:
            plan = QueryPlan(text=written, written=written, uses_index=False, base_iri=base_iri, engine=engine)
            self._plans.put(key, plan, generation)
            return plan
        try:
            text, uses_index = self.prepare(written, use_index=use_index, rewrite=rewrite)
        except Exception as exc:  # noqa: BLE001 - the index step is an optimisation: fall back, still correct
            log.warning("spatial index not used for this query: %s", exc)
            text, uses_index = self.prepare(written, use_index=False, rewrite=rewrite)
        plan = QueryPlan(text=text, written=written, uses_index=uses_index, base_iri=base_iri)
        self._plans.put(key, plan, generation)
        return plan

    #: the spatial engine is considered for stores with at least this many indexed geometries
    ENGINE_MIN_GEOMETRIES = 10_000
    #: ... and for selections that match at least this many geometries (the index path is faster below)
    ENGINE_MIN_ROWS = 2_000

    def _engine_plan(self, query: str, rewrite: bool | None) -> Any:
        """The spatial engine's compiled query when it should answer ``query``, else ``None``."""
        if not self.geosparql or len(self.index) < self.ENGINE_MIN_GEOMETRIES:
            return None
        if (self.query_rewrite if rewrite is None else rewrite) and rewrite_topology_properties(query) != query:
            return None  # topological property forms: the rewrite's UNIONs are not an engine shape
        if re.search(r"(?i)\bFROM\b|\bGRAPH\b|\bSERVICE\b", query):
            return None
        filters = find_spatial_filters(query, indexable=_INDEXABLE)
        if len(filters) != 1 or not filters[0].only_conjunct:
            return None
        spatial = filters[0]
        matches = None
        if spatial.constant is not None:
            matches = self._selection(spatial)
            if len(matches) < self.ENGINE_MIN_ROWS:
                return None
        from workbench.linked.spatial_engine import compile_query, with_selection

        try:
            engine = compile_query(query, spatial)
        except ValueError as exc:
            log.debug("index path for this query: %s", exc)
            return None
        return with_selection(engine, matches) if matches is not None else engine

    def _selection(self, spatial: SpatialFilter) -> np.ndarray:
        """Index ids matching a selection's constant; the last answer is kept for the generation (the engine's
        size test and the index path of the same query ask for it in turn)."""
        assert spatial.constant is not None
        key = (spatial.relation, spatial.constant, spatial.constant_position, self.generation)
        memo = self._last_selection
        if memo is not None and memo[0] == key:
            return memo[1]
        constant = parse_literal(*spatial.constant).geom
        ids = self.index.select(spatial.relation, constant, constant_first=spatial.constant_position == 0)
        self._last_selection = (key, ids)
        return ids

    def _triple_table(self) -> Any:
        from workbench.linked.spatial_engine import TripleTable

        with self._engine_lock:
            if self._table is None or self._table.generation != self.generation:
                self._table = None  # free the old copy first
                self._table = TripleTable(self._store, self.index, generation=self.generation)
            return self._table

    def run_engine(self, plan: QueryPlan, *, deadline: float | None = None) -> Any:
        """Answer a plan of the spatial engine (``plan.engine`` set): solutions read like pyoxigraph's."""
        from workbench.linked.spatial_engine import run_engine_query

        spatial = plan.engine.spatial
        constant = parse_literal(*spatial.constant).geom if spatial.constant is not None else None
        return run_engine_query(plan.engine, self._triple_table(), self.index, constant=constant, deadline=deadline)

    def _check_syntax(self, query: str, base_iri: str | None) -> None:
        self._check_functions(query)
        try:
            _PARSER.query(query, base_iri=base_iri, custom_functions=self._functions,
                          custom_aggregate_functions=self._aggregates)
        except SyntaxError as exc:
            raise QuerySyntaxError(str(exc)) from exc
        except RuntimeError as exc:  # pyoxigraph: "The custom function <...> is not supported"
            if "custom function" not in str(exc):
                raise
            raise QuerySyntaxError(f"{exc} by this store") from exc
        check_geometry_constants(query)

    def check_query(self, query: str, *, base_iri: str | None = None) -> None:
        """Refuse, before anything runs, a malformed query, a malformed geometry constant or an unknown geof function.

        Raises
        ------
        QuerySyntaxError
            Naming what is wrong (the parser's message, the literal, or the function).
        """
        if self._plans.get((query, True, None, base_iri), self.generation) is not None:
            return  # planned, hence checked, in this generation
        self._check_syntax(with_default_prefixes(query), base_iri)

    def _check_functions(self, query: str) -> None:
        from workbench.linked.rewrite import function_calls
        from workbench.linked.vocab import GEOF

        known = {f.value for f in self._functions} | {f.value for f in self._aggregates}
        for iri, offset in function_calls(query):
            if iri.startswith(GEOF) and iri not in known:
                names = ", ".join(sorted(k[len(GEOF):] for k in known))
                raise QuerySyntaxError(
                    f"the function geof:{iri[len(GEOF):]} (at offset {offset}) is not implemented by this store; "
                    f"it implements geof: {names}"
                )

    def select(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Rows of a SELECT query as dicts of variable name -> Python value (IRIs and literal lexical forms)."""
        from workbench.linked.spatial_engine import TableSolutions

        result = self.query(query, **kwargs)
        if not isinstance(result, (ox.QuerySolutions, TableSolutions)):
            raise DataError("select() needs a SELECT query")
        names = [v.value for v in result.variables]
        return [{n: (row[n].value if row[n] is not None else None) for n in names} for row in result]

    def update(self, update: str, *, base_iri: str | None = None) -> None:
        """Run a SPARQL 1.1 update, then re-entail and re-sync the spatial index.

        Raises
        ------
        QuerySyntaxError
            If the update is malformed.
        """
        update = with_default_prefixes(update)
        with self._write_lock:
            try:
                self._store.update(update, custom_functions=self._functions, base_iri=base_iri,
                                   custom_aggregate_functions=self._aggregates)
            except SyntaxError as exc:
                raise QuerySyntaxError(str(exc)) from exc
            self._entail()
            self.sync_index()
            self.flush()
