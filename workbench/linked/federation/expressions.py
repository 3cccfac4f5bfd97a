"""rdflib algebra expressions: split FILTERs into conjuncts, find their variables, write them back as SPARQL.

Pure functions. :func:`to_sparql_expression` writes the common expression forms
(comparisons, logic, arithmetic, function calls, the usual built-ins); for anything
else it answers ``None`` and the federator evaluates that conjunct itself instead of
pushing it to a member.
"""

from __future__ import annotations

from typing import Any

from rdflib import BNode, Literal, URIRef, Variable
from rdflib.plugins.sparql.parserutils import CompValue, Expr

from workbench.linked.federation.terms import to_sparql
from workbench.linked.vocab import GEOF

__all__ = ["calls_geof", "conjuncts", "to_sparql_expression", "variables_of"]

_ONE_ARG = {"STR", "LANG", "DATATYPE", "BOUND", "IRI", "URI", "BNODE", "ABS", "CEIL", "FLOOR", "ROUND", "STRLEN",
            "UCASE", "LCASE", "ENCODE_FOR_URI", "YEAR", "MONTH", "DAY", "HOURS", "MINUTES", "SECONDS", "TIMEZONE",
            "TZ", "MD5", "SHA1", "SHA256", "SHA384", "SHA512", "isIRI", "isURI", "isBLANK", "isLITERAL",
            "isNUMERIC"}
_TWO_ARGS = {"LANGMATCHES", "CONTAINS", "STRSTARTS", "STRENDS", "STRBEFORE", "STRAFTER", "STRLANG", "STRDT",
             "sameTerm"}


def conjuncts(expr: Any) -> list[Any]:
    """The top-level ``&&`` operands of a FILTER expression."""
    if getattr(expr, "name", None) == "ConditionalAndExpression":
        out: list[Any] = []
        for part in [expr.expr, *(expr.other or [])]:
            out.extend(conjuncts(part))
        return out
    return [expr]


def variables_of(expr: Any) -> set[Variable]:
    """Every variable an expression reads (inside EXISTS too)."""
    found: set[Variable] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Variable):
            found.add(node)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)
        elif isinstance(node, CompValue):
            for key, value in node.items():
                if not key.startswith("_"):
                    walk(value)

    walk(expr)
    return found


def calls_geof(expr: Any) -> bool:
    """Whether an expression calls a ``geof:`` function."""
    if isinstance(expr, CompValue):
        if expr.name == "Function" and str(expr.iri).startswith(GEOF):
            return True
        return any(calls_geof(v) for k, v in expr.items() if not k.startswith("_"))
    if isinstance(expr, (list, tuple)):
        return any(calls_geof(v) for v in expr)
    return False


def to_sparql_expression(expr: Any) -> str | None:
    """SPARQL text of an expression, or ``None`` for a form it does not write."""
    try:
        return _write(expr)
    except _Unwritable:
        return None


class _Unwritable(Exception):
    pass


def _write(e: Any) -> str:
    if isinstance(e, (Variable, URIRef, Literal)):
        return to_sparql(e)
    if isinstance(e, BNode):
        raise _Unwritable
    if not isinstance(e, Expr) and not isinstance(e, CompValue):
        raise _Unwritable
    name = e.name
    if name == "ConditionalAndExpression":
        return "(" + " && ".join(_write(x) for x in [e.expr, *(e.other or [])]) + ")"
    if name == "ConditionalOrExpression":
        return "(" + " || ".join(_write(x) for x in [e.expr, *(e.other or [])]) + ")"
    if name == "RelationalExpression":
        if e.op in ("IN", "NOT IN"):
            return f"({_write(e.expr)} {e.op} ({', '.join(_write(x) for x in e.other)}))"
        return f"({_write(e.expr)} {e.op} {_write(e.other)})"
    if name in ("AdditiveExpression", "MultiplicativeExpression"):
        text = _write(e.expr)
        for op, other in zip(e.op or [], e.other or []):
            text += f" {op} {_write(other)}"
        return f"({text})"
    if name == "UnaryNot":
        return f"(!{_write(e.expr)})"
    if name == "UnaryMinus":
        return f"(-{_write(e.expr)})"
    if name == "UnaryPlus":
        return f"(+{_write(e.expr)})"
    if name == "Function":
        if e.distinct:
            raise _Unwritable
        return f"<{e.iri}>(" + ", ".join(_write(x) for x in (e.expr or [])) + ")"
    if name.startswith("Builtin_"):
        fn = name[len("Builtin_"):]
        if fn in _ONE_ARG:
            return f"{fn}({_write(e.arg)})"
        if fn in _TWO_ARGS:
            return f"{fn}({_write(e.arg1)}, {_write(e.arg2)})"
        if fn == "REGEX":
            flags = f", {_write(e.flags)}" if e.flags is not None else ""
            return f"REGEX({_write(e.text)}, {_write(e.pattern)}{flags})"
        if fn == "IF":
            return f"IF({_write(e.arg1)}, {_write(e.arg2)}, {_write(e.arg3)})"
    raise _Unwritable
