"""The workbench's ``geof:`` functions as rdflib custom functions (a thin term converter).

The federator evaluates whatever a member cannot (``geof:`` calls in FILTERs, ``BIND``
and ``SELECT`` expressions) with rdflib's expression evaluator; registering the
functions of :mod:`workbench.linked.geosparql` there makes it compute them exactly as
a GeoStore does. The registration is process-wide (rdflib keeps one table) and done
once; it only adds the ``geof:`` IRIs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rdflib import URIRef
from rdflib.plugins.sparql.operators import register_custom_function
from rdflib.plugins.sparql.sparql import SPARQLError

from workbench.linked import geosparql
from workbench.linked.federation.terms import from_oxigraph, to_oxigraph

__all__ = ["register_geof"]

_DONE = threading.Lock()
_REGISTERED: list[str] = []


def _adapt(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def evaluate(*args: Any) -> Any:
        try:
            result = func(*(to_oxigraph(a) for a in args))
        except TypeError as exc:
            raise SPARQLError(f"{name}: {exc}") from None
        if result is None:
            raise SPARQLError(f"{name}: expression error")
        return from_oxigraph(result)

    evaluate.__name__ = name
    return evaluate


def register_geof() -> list[str]:
    """Register the ``geof:`` functions with rdflib (once); the IRIs registered."""
    with _DONE:
        if not _REGISTERED:
            for iri, func in geosparql.custom_functions().items():
                register_custom_function(URIRef(iri.value), _adapt(iri.value, func), override=True)
                _REGISTERED.append(iri.value)
    return list(_REGISTERED)
