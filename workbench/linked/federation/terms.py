"""RDF terms across the three representations the federator meets: rdflib, pyoxigraph, SPARQL JSON.

Pure functions. Literals keep their lexical form (rdflib's normalisation is off): two
members' ``"05"`` and ``"5"`` are different RDF terms and do not join, as in a store. rdflib terms are what the algebra evaluator works on; pyoxigraph
terms are what the ``geof:`` functions (:mod:`workbench.linked.geosparql`) and the
result writers (:mod:`workbench.linked.results`) take; SPARQL JSON bindings are
what members answer.
"""

from __future__ import annotations

from typing import Any

import pyoxigraph as ox
from rdflib import BNode, Literal, URIRef, Variable
from rdflib.term import Node

__all__ = ["from_json", "from_oxigraph", "to_oxigraph", "to_sparql"]

_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"


def from_json(binding: dict[str, str], *, member: str = "") -> Node:
    """The rdflib term of one SPARQL JSON binding (``{"type": "uri", "value": ...}``).

    Blank nodes are renamed per member (``member_label``): labels of two members never meet.
    """
    kind = binding.get("type")
    value = binding.get("value", "")
    if kind == "uri":
        return URIRef(value)
    if kind == "bnode":
        return BNode(f"{member}_{value}" if member else value)
    if kind in ("literal", "typed-literal"):
        lang = binding.get("xml:lang")
        if lang:
            return Literal(value, lang=lang, normalize=False)
        datatype = binding.get("datatype")
        if datatype and datatype != _XSD_STRING:
            return Literal(value, datatype=URIRef(datatype), normalize=False)
        return Literal(value, normalize=False)
    raise ValueError(f"unknown SPARQL JSON term type {kind!r} in {binding!r}")


def to_oxigraph(term: Any) -> Any:
    """The pyoxigraph term of an rdflib term (``None`` stays ``None``)."""
    if term is None:
        return None
    if isinstance(term, URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, BNode):
        return ox.BlankNode(str(term).replace("-", "_") or None)
    if isinstance(term, Literal):
        if term.language:
            return ox.Literal(str(term), language=term.language)
        if term.datatype is not None:
            return ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype)))
        return ox.Literal(str(term))
    raise TypeError(f"not an RDF term: {term!r}")


def from_oxigraph(term: Any) -> Node | None:
    """The rdflib term of a pyoxigraph term (``None`` stays ``None``)."""
    if term is None:
        return None
    if isinstance(term, ox.NamedNode):
        return URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return BNode(term.value)
    if isinstance(term, ox.Literal):
        if term.language:
            return Literal(term.value, lang=term.language, normalize=False)
        if term.datatype.value != _XSD_STRING:
            return Literal(term.value, datatype=URIRef(term.datatype.value), normalize=False)
        return Literal(term.value, normalize=False)
    raise TypeError(f"not a pyoxigraph term: {term!r}")


def to_sparql(term: Node) -> str:
    """SPARQL text of a term for a sub-query (variables as ``?name``)."""
    if isinstance(term, Variable):
        return f"?{term}"
    if isinstance(term, BNode):  # a blank node of a query pattern is a variable
        return f"?_bn_{str(term).replace('-', '_')}"
    return term.n3()
