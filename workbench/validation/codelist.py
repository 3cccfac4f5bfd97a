"""The LUCAS land-cover code list, its mapping to the 16 crop classes, and both as RDF (SKOS).

The in-situ survey speaks its own code list (``B11`` common wheat, ``B13`` barley,
``E20`` grassland, ``F40`` bare soil ...); the crop-type map speaks the 16 crop
classes of the Food-security use case. The mapping between them is many-to-many:
``B13`` (barley) covers winter and spring barley, grassland is recorded as ``E20`` or
``B55`` (temporary grassland), and some codes (bare soil, roads) map to no crop at all.

As RDF, the code list is a ``skos:ConceptScheme`` of ``skos:Concept`` codes (with
``skos:notation`` and ``skos:prefLabel``) and the mapping is SKOS mapping relations
from a code to ``foodsec:`` crop classes: ``skos:exactMatch`` where code and class
correspond one to one, ``skos:closeMatch`` otherwise, each with its super-property
``skos:mappingRelation`` materialised (so that a plain SPARQL endpoint without RDFS
entailment answers the validation query, which asks for ``skos:mappingRelation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from workbench.errors import DataError
from workbench.linked.products import local_name
from workbench.linked.vocab import FOODSEC, RDF
from workbench.samples.insitu import ABSENT_CROP_CODES, CROP_TO_LUCAS, LUCAS_CODES
from workbench.samples.sentinel2 import CROP_CLASSES

__all__ = [
    "DEFAULT_CODE_MAP",
    "LUCAS",
    "LUCAS_CODE",
    "LUCAS_SCHEME",
    "SKOS",
    "CodeMap",
    "code_iri",
    "code_map_ntriples",
    "codelist_ntriples",
    "crop_iri",
    "crop_of_iri",
    "normalise_code_map",
]

SKOS = "http://www.w3.org/2004/02/skos/core#"
#: Vocabulary of the in-situ survey (points, their land-cover code, the survey date).
LUCAS = "http://extremeearth.eu/ontology/lucas#"
#: Namespace of the LUCAS land-cover codes (``<LUCAS_CODE>B11``).
LUCAS_CODE = "http://extremeearth.eu/codelist/lucas/"
LUCAS_SCHEME = "http://extremeearth.eu/codelist/lucas"

#: LUCAS code -> the crop classes it maps to (empty: the code maps to no crop class).
CodeMap = Mapping[str, tuple[str, ...]]


def _default_code_map() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {code: [] for code in LUCAS_CODES}
    for crop in CROP_CLASSES:
        out[CROP_TO_LUCAS[crop]].append(crop)
    out["B55"] = ["grassland"]  # temporary grassland is grassland for the crop map
    for code in ABSENT_CROP_CODES:
        out[code] = []
    return {code: tuple(sorted(classes)) for code, classes in sorted(out.items())}


#: The mapping of the LUCAS codes of :data:`workbench.samples.insitu.LUCAS_CODES` to the 16 crop classes.
DEFAULT_CODE_MAP: dict[str, tuple[str, ...]] = _default_code_map()


def normalise_code_map(code_map: Mapping[str, str | Iterable[str] | None], *,
                       classes: Iterable[str] = CROP_CLASSES) -> dict[str, tuple[str, ...]]:
    """``code -> sorted tuple of crop classes`` from a mapping whose values are a class, classes or None.

    Raises
    ------
    DataError
        If ``code_map`` is empty or not a mapping, a code is not a non-empty string, or a
        class is not one of ``classes``.
    """
    if not isinstance(code_map, Mapping) or not code_map:
        raise DataError(f"code_map must be a non-empty mapping of LUCAS code -> crop class(es), got {code_map!r}")
    known = set(classes)
    out: dict[str, tuple[str, ...]] = {}
    for code, value in code_map.items():
        if not isinstance(code, str) or not code.strip():
            raise DataError(f"code_map keys must be non-empty LUCAS codes (strings), got {code!r}")
        values = () if value is None else (value,) if isinstance(value, str) else tuple(value)
        bad = [v for v in values if v not in known]
        if bad:
            raise DataError(f"code_map[{code!r}] names unknown crop class(es) {bad}; expected among {sorted(known)}")
        out[code] = tuple(sorted(set(values)))
    return out


def code_iri(code: str) -> str:
    """IRI of a LUCAS code (``B11`` -> ``http://extremeearth.eu/codelist/lucas/B11``)."""
    return LUCAS_CODE + code


def crop_iri(crop: str) -> str:
    """``foodsec:`` IRI of a crop class name (``"winter wheat"`` -> ``foodsec:WinterWheat``)."""
    return FOODSEC + local_name(crop)


def crop_of_iri(iri: str, *, classes: Iterable[str] = CROP_CLASSES) -> str:
    """The crop class name of a ``foodsec:`` class IRI (inverse of :func:`crop_iri`).

    Raises
    ------
    DataError
        If the IRI is not the IRI of one of ``classes``.
    """
    names = {crop_iri(c): c for c in classes}
    if iri not in names:
        raise DataError(f"{iri} is not the IRI of a crop class (expected one of {sorted(names)})")
    return names[iri]


def _literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def codelist_ntriples(codes: Mapping[str, str] = LUCAS_CODES) -> str:
    """The LUCAS code list (code -> label) as N-Triples: a SKOS concept scheme of concepts."""
    if not codes:
        raise DataError("the code list is empty: expected code -> label")
    scheme = f"<{LUCAS_SCHEME}>"
    lines = [f"{scheme} <{RDF}type> <{SKOS}ConceptScheme> .",
             f"{scheme} <{SKOS}prefLabel> {_literal('LUCAS land cover (sample subset)')}@en ."]
    for code, label in sorted(codes.items()):
        s = f"<{code_iri(code)}>"
        lines += [f"{s} <{RDF}type> <{SKOS}Concept> .", f"{s} <{SKOS}inScheme> {scheme} .",
                  f"{s} <{SKOS}notation> {_literal(code)} .", f"{s} <{SKOS}prefLabel> {_literal(label)}@en ."]
    return "\n".join(lines) + "\n"


def code_map_ntriples(code_map: Mapping[str, str | Iterable[str] | None]) -> str:
    """The code-list mapping as N-Triples: SKOS mapping relations from LUCAS codes to ``foodsec:`` classes.

    ``skos:exactMatch`` where a code maps to one class that no other code maps to,
    ``skos:closeMatch`` otherwise; ``skos:mappingRelation`` is stated for every pair.
    """
    mapping = normalise_code_map(code_map)
    sources: dict[str, int] = {}
    for classes in mapping.values():
        for crop in classes:
            sources[crop] = sources.get(crop, 0) + 1
    lines = []
    for code, classes in sorted(mapping.items()):
        for crop in classes:
            relation = "exactMatch" if len(classes) == 1 and sources[crop] == 1 else "closeMatch"
            s, o = f"<{code_iri(code)}>", f"<{crop_iri(crop)}>"
            lines += [f"{s} <{SKOS}{relation}> {o} .", f"{s} <{SKOS}mappingRelation> {o} ."]
    return "\n".join(lines) + "\n"
