"""A SPARQL query result as an HTTP answer: content negotiation and serialisation (pure, no I/O).

The endpoint's threads and its worker processes both turn pyoxigraph results into an
:class:`Answer` here, so that a worker process sends back finished bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pyoxigraph as ox

from workbench.linked.results import MEDIA_TYPES, write_boolean, write_results

__all__ = [
    "RDF_TYPES",
    "Answer",
    "AnswerTimeout",
    "answer_result",
    "choose_rdf",
    "choose_results",
    "format_candidates",
]

RDF_TYPES = {
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
    "application/ld+json": ox.RdfFormat.JSON_LD,
}
RESULT_ALIASES = {
    "application/sparql-results+json": "json",
    "application/json": "json",
    "application/sparql-results+xml": "xml",
    "application/xml": "xml",
    "text/xml": "xml",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
}
FORMAT_PARAM = {"json": "json", "xml": "xml", "csv": "csv", "tsv": "tsv", "turtle": "text/turtle",
                "ttl": "text/turtle", "nt": "application/n-triples", "ntriples": "application/n-triples",
                "n-triples": "application/n-triples", "rdfxml": "application/rdf+xml",
                "json-ld": "application/ld+json", "jsonld": "application/ld+json"}


class AnswerTimeout(Exception):
    """The deadline passed while the result rows were being read."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, media type, body and extra headers."""

    status: int
    media_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _accepted(accept: str) -> list[str]:
    """Media types of an Accept header, best first."""
    ranked = []
    for n, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if fields[0]:
            ranked.append((-q, n, fields[0].lower()))
    return [m for _, _, m in sorted(ranked)]


def format_candidates(fmt: list[str]) -> list[str]:
    """``format=``/``output=`` parameter values as media types or result format names."""
    out = []
    for value in fmt:
        value = value.strip().lower()
        out.append(FORMAT_PARAM.get(value) or RESULT_ALIASES.get(value) or value)
    return out


def choose_results(accept: str, fmt: list[str]) -> str | None:
    """The result format (``json``/``xml``/``csv``/``tsv``) for SELECT/ASK, or ``None`` if none is acceptable."""
    for candidate in format_candidates(fmt):
        if candidate in MEDIA_TYPES:
            return candidate
    for media in _accepted(accept or "*/*"):
        if media in RESULT_ALIASES:
            return RESULT_ALIASES[media]
        if media in ("*/*", "application/*", "text/*"):
            return "json"
    return None


def choose_rdf(accept: str, fmt: list[str]) -> str | None:
    """The RDF media type for CONSTRUCT/DESCRIBE, or ``None`` if none is acceptable."""
    for candidate in format_candidates(fmt):
        if candidate in RDF_TYPES:
            return candidate
    for media in _accepted(accept or "*/*"):
        if media in RDF_TYPES:
            return media
        if media in ("*/*", "text/*", "application/*"):
            return "text/turtle"
    return None


def _text(status: int, message: str) -> Answer:
    return Answer(status, "text/plain", (message + "\n").encode())


def _take(rows: Any, limit: int, deadline: float | None) -> tuple[list[Any], bool]:
    """At most ``limit`` items of a lazy pyoxigraph iterator; whether more were left."""
    taken: list[Any] = []
    for n, item in enumerate(rows):
        if len(taken) >= limit:
            return taken, True
        if deadline is not None and n % 256 == 0 and time.monotonic() > deadline:
            raise AnswerTimeout("the query's deadline passed while its rows were read")
        taken.append(item)
    return taken, False


def answer_result(result: Any, *, accept: str, fmt: list[str], result_limit: int,
                  deadline: float | None = None) -> Answer:
    """Serialise a pyoxigraph query result as negotiated, cutting it at ``result_limit`` rows.

    Raises
    ------
    AnswerTimeout
        If ``deadline`` (``time.monotonic()``) passes while the rows are read.
    """
    if isinstance(result, ox.QueryBoolean):
        chosen = choose_results(accept, fmt)
        if chosen is None:
            return _text(406, f"cannot answer an ASK query as {accept}")
        return Answer(200, MEDIA_TYPES[chosen], write_boolean(bool(result), chosen))
    from workbench.linked.spatial_engine import TableSolutions

    if isinstance(result, (ox.QuerySolutions, TableSolutions)):
        chosen = choose_results(accept, fmt)
        if chosen is None:
            return _text(406, f"cannot answer a SELECT query as {accept}: use one of " + ", ".join(MEDIA_TYPES.values()))
        variables = [v.value for v in result.variables]
        solutions, cut = _take(result, result_limit, deadline)
        rows = [[row[v] for v in variables] for row in solutions]
        headers = {"X-SPARQL-Result-Limit": f"reached: {result_limit} rows"} if cut else {}
        return Answer(200, MEDIA_TYPES[chosen], write_results(variables, rows, fmt=chosen), headers)
    media = choose_rdf(accept, fmt)
    if media is None:
        return _text(406, f"cannot answer a CONSTRUCT/DESCRIBE query as {accept}: use one of " + ", ".join(RDF_TYPES))
    triples, cut = _take(result, result_limit, deadline)
    headers = {"X-SPARQL-Result-Limit": f"reached: {result_limit} triples"} if cut else {}
    body = ox.serialize(triples, format=RDF_TYPES[media]) or b""
    return Answer(200, media, body, headers)
