"""SPARQL text rewriting for GeoSPARQL: topological property forms, and spatial FILTERs to index lookups.

Two rewrites, both on the token stream of the query (no full SPARQL parser):

* :func:`rewrite_topology_properties` — a triple pattern ``S geo:sfIntersects O`` is
  replaced, as the GeoSPARQL 1.0 query rewrite extension defines, by the union of the
  asserted triple and the four feature/geometry combinations (feature–feature through
  ``geo:hasDefaultGeometry``, feature–geometry, geometry–feature, geometry–geometry),
  each comparing the ``geo:asWKT``/``geo:asGML`` serialisations with the ``geof:``
  function; a ``SELECT DISTINCT`` sub-query keeps one row per ``(S, O)``.
* :func:`find_spatial_filters` locates ``FILTER(geof:rel(?x, ?y))`` and
  ``FILTER(geof:rel(?x, "…"^^geo:wktLiteral))`` in groups whose triple patterns bind the
  variables, so that the store can replace them with index lookups (see
  :mod:`workbench.linked.store`).

Triple patterns written with ``;``/``,`` abbreviations are understood; anything the
tokenizer does not recognise simply leaves the query as it is.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from workbench.linked.vocab import GEO, GEOF, RDF, TOPOLOGY_RELATIONS

__all__ = [
    "Token",
    "tokenize",
    "prefixes_of",
    "rewrite_topology_properties",
    "SpatialFilter",
    "find_spatial_filters",
]

_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
  | (?P<iri><[^<>"{}|^`\\\s]*>)
  | (?P<str>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"|'''(?:[^'\\]|\\.|'(?!''))*'''|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<var>[?$][A-Za-z0-9_\u00B7-\uFFFF]+)
  | (?P<lang>@[a-zA-Z]+(?:-[a-zA-Z0-9]+)*)
  | (?P<pname>(?:[A-Za-z\u00C0-\uFFFF][\w\-.]*)?:(?:[\w\-:%]|\.(?=[\w\-:%]))*)
  | (?P<num>(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\^\^|&&|\|\||!=|<=|>=|[{}()\[\].,;*=<>!+\-/|^?])
  | (?P<ws>\s+)
    """,
    re.X | re.S,
)

_TOPOLOGY = {GEO + name: name for name in TOPOLOGY_RELATIONS}
_FUNCTIONS = {GEOF + name: name for name in TOPOLOGY_RELATIONS}
_GROUP_KEYWORDS = {"OPTIONAL", "MINUS", "GRAPH", "SERVICE", "FILTER", "BIND", "VALUES", "UNION"}


@dataclass(frozen=True)
class Token:
    """One lexical token: its kind, text and span in the query string."""

    kind: str
    text: str
    start: int
    end: int


class TokenizeError(ValueError):
    """The query contains text the rewriter's tokenizer does not know (the query is then left alone)."""


def tokenize(query: str) -> list[Token]:
    """Tokens of a SPARQL query, without whitespace and comments.

    Raises
    ------
    TokenizeError
        On a character no token starts with.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if not match or match.end() == pos:
            raise TokenizeError(f"unexpected character {query[pos]!r} at offset {pos}")
        kind = match.lastgroup or ""
        if kind not in ("ws", "comment"):
            tokens.append(Token(kind, match.group(), pos, match.end()))
        pos = match.end()
    return tokens


def string_value(raw: str) -> str:
    """The value of a SPARQL string token (quotes removed, escapes decoded)."""
    quote = 3 if raw[:3] in ('"""', "'''") else 1
    body = raw[quote:-quote]
    return body.encode("utf-8").decode("unicode_escape") if "\\" in body else body


def function_calls(query: str) -> list[tuple[str, int]]:
    """IRIs called as functions in the query (an IRI or prefixed name right before ``(``), with their offsets."""
    try:
        tokens = tokenize(query)
    except TokenizeError:
        return []
    prefixes = prefixes_of(tokens)
    calls = []
    for tok, nxt in zip(tokens, tokens[1:]):
        if tok.kind in ("iri", "pname") and nxt.text == "(":
            iri = resolve(tok, prefixes)
            if iri is not None:
                calls.append((iri, tok.start))
    return calls


def typed_literals(query: str, datatypes: frozenset[str]) -> list[tuple[str, str, int]]:
    """Constant literals of the query typed with one of ``datatypes``: (lexical form, datatype IRI, offset).

    An unknown character (see :func:`tokenize`) gives an empty list: the query is
    then left to the SPARQL parser.
    """
    try:
        tokens = tokenize(query)
    except TokenizeError:
        return []
    prefixes = prefixes_of(tokens)
    found = []
    for i, tok in enumerate(tokens[:-2]):
        if tok.kind == "str" and tokens[i + 1].text == "^^":
            datatype = resolve(tokens[i + 2], prefixes)
            if datatype in datatypes:
                found.append((string_value(tok.text), datatype, tok.start))
    return found


def prefixes_of(tokens: list[Token]) -> dict[str, str]:
    """``PREFIX`` declarations of the prologue: prefix (without colon) -> namespace IRI."""
    prefixes: dict[str, str] = {}
    for i, tok in enumerate(tokens[:-2]):
        if tok.kind == "word" and tok.text.upper() == "PREFIX" and tokens[i + 1].kind == "pname":
            if tokens[i + 2].kind == "iri":
                prefixes[tokens[i + 1].text[:-1]] = tokens[i + 2].text[1:-1]
    return prefixes


def resolve(tok: Token, prefixes: dict[str, str]) -> str | None:
    """Full IRI of an IRI, prefixed-name or ``a`` token; ``None`` for other tokens."""
    if tok.kind == "iri":
        return tok.text[1:-1]
    if tok.kind == "pname":
        prefix, _, local = tok.text.partition(":")
        namespace = prefixes.get(prefix)
        return None if namespace is None else namespace + local
    if tok.kind == "word" and tok.text == "a":
        return RDF + "type"
    return None


def _is_term(tok: Token) -> bool:
    return tok.kind in ("var", "iri", "pname")


def _matching(tokens: list[Token], start: int) -> int:
    """Index of the bracket closing the one at ``start``."""
    opening = tokens[start].text
    closing = {"{": "}", "(": ")", "[": "]"}[opening]
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i].text == opening and tokens[i].kind == "punct":
            depth += 1
        elif tokens[i].text == closing and tokens[i].kind == "punct":
            depth -= 1
            if depth == 0:
                return i
    raise TokenizeError(f"unbalanced {opening!r}")


#: the serialisation properties the rewrite follows (GeoSPARQL 1.1's too, and their super-property)
_SER = "(" + "|".join(f"<{GEO}{p}>" for p in ("asWKT", "asGML", "asGeoJSON", "asKML", "asDGGS", "hasSerialization")) + ")"
_DEF = f"<{GEO}hasDefaultGeometry>"


def _expansion(subject: str, relation: str, obj: str, asserted: str, n: int) -> str:
    g1, g2, w1, w2 = (f"?_wb{n}_{x}" for x in ("g1", "g2", "w1", "w2"))
    test = f"FILTER(<{GEOF}{relation}>({w1}, {w2}))"
    feature_a = f"{subject} {_DEF} {g1} . {g1} {_SER} {w1} ."
    feature_b = f"{obj} {_DEF} {g2} . {g2} {_SER} {w2} ."
    geometry_a = f"{subject} {_SER} {w1} ."
    geometry_b = f"{obj} {_SER} {w2} ."
    variables = list(dict.fromkeys(t for t in (subject, obj) if t.startswith(("?", "$"))))
    projection = " ".join(variables) if variables else f"(1 AS ?_wb{n}_one)"
    branches = [
        f"{{ {subject} {asserted} {obj} }}",
        f"{{ {feature_a} {feature_b} {test} }}",
        f"{{ {feature_a} {geometry_b} {test} }}",
        f"{{ {geometry_a} {feature_b} {test} }}",
        f"{{ {geometry_a} {geometry_b} {test} }}",
    ]
    return f"{{ SELECT DISTINCT {projection} WHERE {{ {' UNION '.join(branches)} }} }}"


_TRIPLE_START = ("{", ".", "}", ")")
_SCAN_KINDS = ("var", "iri", "pname", "str", "num", "lang")


def _subject_before(tokens: list[Token], i: int) -> int | None:
    """Index of the subject of the predicate-object list that the ``;`` at ``i`` continues."""
    j = i - 1
    while j >= 0:
        tok = tokens[j]
        if tok.text in (".", "{", "}") and tok.kind == "punct":
            return j + 1 if _is_term(tokens[j + 1]) else None
        if not (tok.kind in _SCAN_KINDS or tok.text in (";", ",", "^^", "a")):
            return None
        j -= 1
    return None


def _term_text(tok: Token, prefixes: dict[str, str]) -> str | None:
    if tok.kind == "var":
        return tok.text
    iri = resolve(tok, prefixes)
    return None if iri is None else f"<{iri}>"


def rewrite_topology_properties(query: str) -> str:
    """Rewrite the topological property forms (``?a geo:sfWithin ?b``) of a query.

    Handles ``S P O`` triples, also inside ``;`` predicate-object lists (not object lists
    with ``,``, not property paths); the asserted triples still answer too.
    """
    try:
        tokens = tokenize(query)
    except TokenizeError:
        return query
    prefixes = prefixes_of(tokens)
    try:
        where = next(i for i, t in enumerate(tokens) if t.text == "{")
    except StopIteration:
        return query
    pieces: list[str] = []
    last = 0
    counter = itertools.count()
    i = where + 1
    while i < len(tokens) - 2:
        tok = tokens[i]
        iri = resolve(tok, prefixes) if tok.kind in ("iri", "pname") else None
        before, after = tokens[i - 1], tokens[i + 2]
        ends = after.text in (".", "}") or after.text.upper() in _GROUP_KEYWORDS | {"{"}
        if iri not in _TOPOLOGY or not _is_term(tokens[i + 1]) or not (ends or after.text == ";"):
            i += 1
            continue
        if _is_term(before) and tokens[i - 2].text in _TRIPLE_START:
            subject_index, cut_from = i - 1, tokens[i - 1].start
        elif before.text == ";":
            found = _subject_before(tokens, i - 1)
            if found is None:
                i += 1
                continue
            subject_index, cut_from = found, before.start
        else:
            i += 1
            continue
        s_text = _term_text(tokens[subject_index], prefixes)
        o_text = _term_text(tokens[i + 1], prefixes)
        if s_text is None or o_text is None:
            i += 1
            continue
        expansion = _expansion(s_text, _TOPOLOGY[iri], o_text, f"<{iri}>", next(counter))
        pieces.append(query[last:cut_from])
        if before.text == ";":
            expansion = " . " + expansion
        if after.text == ";":
            expansion += f" . {query[tokens[subject_index].start:tokens[subject_index].end]} "
            last = after.end
            i += 3
        else:
            last = tokens[i + 1].end
            i += 2
        pieces.append(expansion)
    if not pieces:
        return query
    pieces.append(query[last:])
    return "".join(pieces)


# ------------------------------------------------------------------ spatial FILTERs


@dataclass
class Triple:
    """A triple pattern of a group, as text, with the variables it mentions."""

    text: str
    variables: set[str]
    objects: set[str]


@dataclass
class SpatialFilter:
    """A FILTER conjunct ``geof:rel(a, b)`` that a spatial index can answer.

    Attributes
    ----------
    relation
        Local name of the relation (``sfIntersects``...).
    left, right
        Variable names (``?x``) or, for a constant, ``None``.
    constant
        ``(lexical, datatype IRI)`` of the constant argument of a selection, and its
        position (0: first argument) in ``constant_position``.
    span
        ``(start, end)`` character span of the conjunct in the query.
    filter_span
        Span of the whole ``FILTER(...)``; ``only_conjunct`` tells whether the conjunct
        is the whole condition.
    domains
        For each variable, the text of the group's triple patterns connected to it.
    """

    relation: str
    left: str | None
    right: str | None
    constant: tuple[str, str] | None
    constant_position: int
    span: tuple[int, int]
    filter_span: tuple[int, int]
    only_conjunct: bool
    domains: dict[str, list[str]] = field(default_factory=dict)
    group_start: int = 0


def _skip_group_item(tokens: list[Token], i: int, end: int) -> int:
    """Index after a non-triple element (FILTER, BIND, OPTIONAL {...}, VALUES ...) starting at ``i``."""
    word = tokens[i].text.upper()
    if word in ("FILTER", "BIND"):
        j = i + 1
        if tokens[j].kind in ("iri", "pname", "word") and tokens[j + 1].text == "(":
            j += 1
        if tokens[j].text != "(":
            raise TokenizeError("FILTER without parentheses")
        return _matching(tokens, j) + 1
    if word == "VALUES":
        j = i + 1
        if tokens[j].text == "(":
            j = _matching(tokens, j)
        j += 1
        return _matching(tokens, j) + 1
    j = i
    while j < end and tokens[j].text != "{":
        j += 1
    return _matching(tokens, j) + 1


def _parse_term(tokens: list[Token], i: int) -> int:
    """Index after the RDF term (var, IRI, literal with tag/datatype, number) at ``i``."""
    tok = tokens[i]
    if tok.kind in ("var", "iri", "pname", "num") or (tok.kind == "word" and tok.text in ("true", "false")):
        return i + 1
    if tok.kind == "str":
        if tokens[i + 1].kind == "lang":
            return i + 2
        if tokens[i + 1].text == "^^":
            return i + 3
        return i + 1
    raise TokenizeError(f"unsupported term {tok.text!r} in a triple pattern")


def _parse_predicate(tokens: list[Token], j: int) -> int:
    """Index after the predicate (variable or property path) at ``j``."""
    if tokens[j].kind == "var":
        return j + 1
    while True:
        while tokens[j].text in ("^", "!"):
            j += 1
        if tokens[j].text == "(":
            j = _matching(tokens, j) + 1
        elif tokens[j].kind in ("iri", "pname") or tokens[j].text == "a":
            j += 1
        else:
            raise TokenizeError(f"unsupported predicate {tokens[j].text!r}")
        if tokens[j].text in ("*", "+", "?"):
            j += 1
        if tokens[j].text in ("/", "|"):
            j += 1
            continue
        return j


def _group_triples(tokens: list[Token], query: str, start: int, end: int) -> list[Triple] | None:
    """Triple patterns at the top level of the group ``tokens[start] == '{'`` .. ``end``; None if unparsable."""
    triples: list[Triple] = []
    i = start + 1
    try:
        while i < end:
            tok = tokens[i]
            if tok.text == "." and tok.kind == "punct":
                i += 1
                continue
            if tok.text == "{" or (tok.kind == "word" and tok.text.upper() in _GROUP_KEYWORDS):
                i = _skip_group_item(tokens, i, end)
                continue
            subject_end = _parse_term(tokens, i)
            subject = query[tok.start : tokens[subject_end - 1].end]
            j = subject_end
            while True:
                p = j
                j = _parse_predicate(tokens, j)
                predicate = query[tokens[p].start : tokens[j - 1].end]
                while True:
                    o_end = _parse_term(tokens, j)
                    obj = query[tokens[j].start : tokens[o_end - 1].end]
                    variables = {t.text for t in tokens[i:o_end] if t.kind == "var"}
                    variables |= {t for t in (subject,) if t.startswith(("?", "$"))}
                    objects = {obj} if tokens[j].kind == "var" else set()
                    triples.append(Triple(f"{subject} {predicate} {obj} .", variables, objects))
                    j = o_end
                    if tokens[j].text == ",":
                        j += 1
                        continue
                    break
                if tokens[j].text == ";":
                    j += 1
                    while tokens[j].text == ";":
                        j += 1
                    if tokens[j].text in (".", "}"):
                        break
                    continue
                break
            i = j
    except (TokenizeError, IndexError):
        return None
    return triples


def _component(triples: list[Triple], variable: str) -> list[str]:
    chosen: list[Triple] = []
    frontier = {variable}
    remaining = list(triples)
    changed = True
    while changed:
        changed = False
        for triple in list(remaining):
            if triple.variables & frontier:
                chosen.append(triple)
                frontier |= triple.variables
                remaining.remove(triple)
                changed = True
    return [t.text for t in chosen]


def _split_top_level(tokens: list[Token], start: int, end: int, *, separator: str) -> list[tuple[int, int]]:
    """Token index ranges of tokens ``start..end`` (exclusive) split at top-level ``separator``."""
    parts: list[tuple[int, int]] = []
    depth = 0
    begin = start
    for i in range(start, end):
        text = tokens[i].text
        if text in ("(", "{", "["):
            depth += 1
        elif text in (")", "}", "]"):
            depth -= 1
        elif text == separator and depth == 0:
            parts.append((begin, i))
            begin = i + 1
    parts.append((begin, end))
    return parts


def _strip_parens(tokens: list[Token], a: int, b: int) -> tuple[int, int]:
    while b - a >= 2 and tokens[a].text == "(" and _matching(tokens, a) == b - 1:
        a, b = a + 1, b - 1
    return a, b


def _argument(tokens: list[Token], a: int, b: int, prefixes: dict[str, str]) -> tuple[str | None, tuple[str, str] | None]:
    if b - a == 1 and tokens[a].kind == "var":
        return tokens[a].text, None
    if b - a == 3 and tokens[a].kind == "str" and tokens[a + 1].text == "^^":
        datatype = resolve(tokens[a + 2], prefixes)
        lexical = string_value(tokens[a].text)
        if datatype:
            return None, (lexical, datatype)
    raise TokenizeError("argument is neither a variable nor a typed literal")


def find_spatial_filters(query: str, *, indexable: frozenset[str]) -> list[SpatialFilter]:
    """The FILTER conjuncts of ``query`` that an index over geometry literals can answer.

    A conjunct qualifies when it is ``geof:rel(?x, ?y)`` or ``geof:rel(?x, literal)``
    (or the literal first), ``rel`` is in ``indexable``, and each variable is the
    object of a triple pattern of the same group (so it only takes values stored in
    the store). At most one conjunct per FILTER is returned.
    """
    try:
        tokens = tokenize(query)
    except TokenizeError:
        return []
    prefixes = prefixes_of(tokens)
    found: list[SpatialFilter] = []
    stack: list[int] = []
    groups: list[tuple[int, int]] = []
    for i, tok in enumerate(tokens):
        if tok.kind == "punct" and tok.text == "{":
            stack.append(i)
        elif tok.kind == "punct" and tok.text == "}" and stack:
            groups.append((stack.pop(), i))
    for start, end in groups:
        triples = _group_triples(tokens, query, start, end)
        if triples is None:
            continue
        bound_objects = set().union(*(t.objects for t in triples)) if triples else set()
        depth = 0
        i = start + 1
        while i < end:
            tok = tokens[i]
            if tok.text in ("{", "(", "["):
                depth += 1
            elif tok.text in ("}", ")", "]"):
                depth -= 1
            elif depth == 0 and tok.kind == "word" and tok.text.upper() == "FILTER":
                try:
                    spatial = _filter_at(tokens, i, prefixes, indexable, bound_objects)
                except (TokenizeError, IndexError):
                    spatial = None
                if spatial is not None:
                    for var in (spatial.left, spatial.right):
                        if var is not None:
                            spatial.domains[var] = _component(triples, var)
                    spatial.span = (tokens[spatial.span[0]].start, tokens[spatial.span[1] - 1].end)
                    spatial.group_start = tokens[start].end
                    found.append(spatial)
            i += 1
    return found


def _filter_at(
    tokens: list[Token], i: int, prefixes: dict[str, str], indexable: frozenset[str], bound: set[str]
) -> SpatialFilter | None:
    j = i + 1
    if tokens[j].text == "(":
        close = _matching(tokens, j)
        body = (j + 1, close)
    else:  # FILTER geof:rel(...)
        close = _matching(tokens, j + 1)
        body = (j, close + 1)
    filter_span = (tokens[i].start, tokens[close].end)
    conjuncts = _split_top_level(tokens, *body, separator="&&")
    for a, b in conjuncts:
        a, b = _strip_parens(tokens, a, b)
        name = _FUNCTIONS.get(resolve(tokens[a], prefixes) or "") if tokens[a].kind in ("iri", "pname") else None
        if name is None or name not in indexable or tokens[a + 1].text != "(" or _matching(tokens, a + 1) != b - 1:
            continue
        args = _split_top_level(tokens, a + 2, b - 1, separator=",")
        if len(args) != 2:
            continue
        try:
            (v1, c1), (v2, c2) = (_argument(tokens, x, y, prefixes) for x, y in args)
        except TokenizeError:
            continue
        if any(v is not None and v not in bound for v in (v1, v2)):
            continue
        if v1 is not None and v2 is not None and v1 != v2:
            return SpatialFilter(name, v1, v2, None, -1, (a, b), filter_span, len(conjuncts) == 1)
        if (v1 is None) != (v2 is None):
            constant = c1 if c1 is not None else c2
            return SpatialFilter(
                name, v1, v2, constant, 0 if c1 is not None else 1, (a, b), filter_span, len(conjuncts) == 1
            )
    return None
