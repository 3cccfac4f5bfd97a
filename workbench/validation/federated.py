"""The validation as one GeoSPARQL query over the three sources, and the report built from its answer.

The query asks, for every survey point of the in-situ source, for the parcels of
the crop map whose crop class the point's LUCAS code maps to (through the
code-list mapping of the third source) and that lie within ``distance_m`` metres
(``geof:distance(..., uom:metre)``). Two equivalent shapes are offered:

* ``"union"`` (default): a ``UNION`` of two BGP groups, the survey points, and the
  confirmed (point, parcel) pairs (BGP + code-list join + a FILTER with the crop equality
  and the distance): only BGPs and FILTERs, which a federator decomposes, and points and
  parcels joined by geometry (a spatial index join at the federator);
* ``"optional"``: the survey BGP, and an ``OPTIONAL`` group with the code-list join, the
  parcel BGP and the distance FILTER (the form a user would write first; the federator
  joins the parcels by crop there, then measures every pair).

Either runs unchanged on a federation (:class:`workbench.linked.federation.Federation`),
on one GeoStore holding the union of the data, or on anything with ``select(query)``
that returns rows of variable -> term (or value).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote

import numpy as np
import pandas as pd

from workbench.linked.vocab import FOODSEC, GEO, GEOF, UOM
from workbench.validation.codelist import LUCAS, LUCAS_CODE, SKOS
from workbench.validation.report import CONFIRMED, NEGATIVE, ValidationError, ValidationReport
from workbench.validation.truth import check_distance

__all__ = [
    "PARCEL_IRI",
    "POINT_IRI",
    "QUERY_FORMS",
    "Selectable",
    "federated_validation",
    "report_from_rows",
    "validation_query",
]

log = logging.getLogger(__name__)

POINT_IRI = "http://extremeearth.eu/resource/lucas/point/"
PARCEL_IRI = "http://extremeearth.eu/resource/parcel/"
QUERY_FORMS = ("optional", "union")

_PROLOGUE = (f"PREFIX geo: <{GEO}>\nPREFIX geof: <{GEOF}>\nPREFIX uom: <{UOM}>\nPREFIX skos: <{SKOS}>\n"
             f"PREFIX lucas: <{LUCAS}>\nPREFIX foodsec: <{FOODSEC}>\n")
_SURVEY = ("?point a lucas:SurveyPoint ; lucas:landCover ?code ; geo:hasGeometry ?pgeom .\n"
           "    ?pgeom geo:asWKT ?pwkt .\n")
_MATCH = ("?code skos:mappingRelation ?crop .\n"
          "    ?parcel foodsec:hasCropType ?crop ; geo:hasGeometry ?geom .\n"
          "    ?geom geo:asWKT ?wkt .\n"
          "    FILTER(geof:distance(?pwkt, ?wkt, uom:metre) <= {distance})\n")
# the union form's pairs: the crop equality sits in the FILTER beside the distance, so that the points and
# the parcels share no variable and a federator joins them by geometry (an index join on the distance)
# instead of by crop (every point paired with every parcel of its crop, each pair measured)
_PAIRS = ("?code skos:mappingRelation ?crop .\n"
          "    ?parcel foodsec:hasCropType ?pcrop ; geo:hasGeometry ?geom .\n"
          "    ?geom geo:asWKT ?wkt .\n"
          "    FILTER(?pcrop = ?crop && geof:distance(?pwkt, ?wkt, uom:metre) <= {distance})\n")


class Selectable(Protocol):
    """Anything that answers a SPARQL SELECT query with rows (a Federation, a GeoStore ...)."""

    def select(self, query: str) -> Any:  # pragma: no cover - a protocol
        ...


def validation_query(*, distance_m: float = 10.0, form: str = "union") -> str:
    """The validation query text (see the module docstring for the two forms).

    Raises
    ------
    ValidationError
        For a negative distance or an unknown form.
    """
    distance = check_distance(distance_m)
    if form not in QUERY_FORMS:
        raise ValidationError(f"unknown query form {form!r}: expected one of {QUERY_FORMS}")
    head = "SELECT ?point ?code ?label ?pwkt ?parcel WHERE {\n"
    if form == "optional":
        match = _MATCH.replace("{distance}", repr(distance))
        body = f"  {_SURVEY}  ?code skos:prefLabel ?label .\n  OPTIONAL {{\n    {match}  }}\n"
    else:
        pairs = _PAIRS.replace("{distance}", repr(distance))
        body = (f"  {{\n    {_SURVEY}    ?code skos:prefLabel ?label .\n  }}\n  UNION\n"
                f"  {{\n    {_SURVEY}    {pairs}  }}\n")
    return _PROLOGUE + head + body + "}\n"


def _value(term: Any) -> str | None:
    if term is None:
        return None
    return str(getattr(term, "value", term))


def _rows(result: Any) -> list[dict[str, str | None]]:
    """Rows as dicts of variable -> lexical value, from a list of dicts or a result object with ``variables``."""
    if isinstance(result, list):
        return [{str(k).lstrip("?"): _value(v) for k, v in row.items()} for row in result]
    names = [str(getattr(v, "value", v)).lstrip("?") for v in getattr(result, "variables", [])]
    if not names:
        raise ValidationError(f"cannot read rows from a {type(result).__name__}: expected a list of dicts or "
                              "a result with .variables")
    out = []
    for row in result:
        if isinstance(row, Mapping):
            out.append({str(k).lstrip("?"): _value(v) for k, v in row.items()})
        else:
            out.append({n: _value(row[n]) for n in names})
    return out


def _suffix(iri: str | None, prefix: str, what: str) -> str | None:
    if iri is None or (isinstance(iri, float) and np.isnan(iri)):
        return None
    if not iri.startswith(prefix):
        raise ValidationError(f"the answer names {what} {iri!r}, which is not under {prefix}")
    return unquote(iri[len(prefix):])


def report_from_rows(rows: Iterable[Mapping[str, str | None]], *, distance_m: float,
                     method: str = "federated") -> ValidationReport:
    """Build the report from the rows of :func:`validation_query` (either form).

    Raises
    ------
    ValidationError
        If no survey point came back, or a point came back without a geometry.
    """
    import geopandas as gpd

    from workbench.linked.geometry import parse_wkt_literal

    frame = pd.DataFrame(list(rows), columns=["point", "code", "label", "pwkt", "parcel"])
    if frame.empty:
        raise ValidationError("the validation query found no survey point: is the in-situ source a member "
                              "(lucas:SurveyPoint with lucas:landCover and a geometry)?")
    frame["point_id"] = [_suffix(v, POINT_IRI, "point") for v in frame["point"]]
    frame["lucas_code"] = [_suffix(v, LUCAS_CODE, "code") for v in frame["code"]]
    frame["parcel_id"] = [_suffix(v, PARCEL_IRI, "parcel") for v in frame["parcel"]]
    survey = frame[frame["label"].notna()].groupby("point_id", sort=True).agg(
        lucas_code=("lucas_code", "min"), lucas_label=("label", "min"), pwkt=("pwkt", "min"))
    missing = sorted(set(frame["point_id"]) - set(survey.index))
    if missing:
        raise ValidationError(f"survey points {missing[:5]} came back without a label of their code")
    if survey["pwkt"].isna().any():
        raise ValidationError(f"survey points {survey.index[survey['pwkt'].isna()][:5].tolist()} have no geometry")
    matches = frame[frame["parcel_id"].notna()].groupby("point_id").agg(
        n_parcels=("parcel_id", "nunique"), parcel_id=("parcel_id", "min"))
    n_parcels = matches["n_parcels"].reindex(survey.index, fill_value=0).to_numpy()
    first = matches["parcel_id"].reindex(survey.index).to_numpy(dtype=object)
    confirmed = n_parcels > 0
    geometry = [parse_wkt_literal(w).geom for w in survey["pwkt"]]
    points = gpd.GeoDataFrame({
        "point_id": survey.index.to_numpy(dtype=object),
        "lucas_code": survey["lucas_code"].to_numpy(dtype=object),
        "lucas_label": survey["lucas_label"].to_numpy(dtype=object),
        "status": np.where(confirmed, CONFIRMED, NEGATIVE),
        "confirmed": confirmed,
        "n_parcels": n_parcels.astype("int64"),
        "parcel_id": np.where(confirmed, first, None),
    }, geometry=geometry, crs=4326)
    return ValidationReport(points, distance_m=distance_m, method=method)


def federated_validation(federation: Selectable, *, distance_m: float = 10.0, form: str = "union",
                         method: str = "federated") -> ValidationReport:
    """Validate the crop map with ONE GeoSPARQL query over the sources, and build the report.

    Parameters
    ----------
    federation
        A :class:`workbench.linked.federation.Federation` over the crop-map, in-situ and
        code-list endpoints (or one store holding their union: anything with ``select``).
    distance_m
        A point is confirmed when a parcel of a mapped crop lies within this many metres
        (``geof:distance`` in ``uom:metre``).
    form
        The query shape, ``"union"`` (default: BGP groups and FILTERs only, which the federator
        answers with a spatial join) or ``"optional"`` (the same answer).
    method
        Recorded in the report (``"federated"``, ``"union store"`` ...).

    Returns
    -------
    ValidationReport
        Equal to :func:`workbench.validation.validate_crop_map` on the same data.

    Raises
    ------
    ValidationError
        For a negative distance, an unknown form, an answer without survey points, or a
        partial answer (a federation with ``partial=True`` that left a member out).
    """
    if not hasattr(federation, "select"):
        raise ValidationError(f"federation must have a select(query) method, got {type(federation).__name__}")
    distance = check_distance(distance_m)
    query = validation_query(distance_m=distance, form=form)
    start = time.perf_counter()
    result = federation.select(query)
    warnings = list(getattr(result, "warnings", []) or [])
    if getattr(result, "partial", False) or warnings:
        # a member left out would turn its confirmations into negatives: no report rather than a wrong one
        raise ValidationError(f"the federation answered only in part ({'; '.join(warnings) or 'members left out'}): "
                              "a validation needs every member's answer")
    rows = _rows(result)
    seconds = time.perf_counter() - start
    log.info("validation query (%s form): %d rows in %.2fs", form, len(rows), seconds)
    report = report_from_rows(rows, distance_m=distance, method=method)
    report.meta.update({"query": query, "rows": len(rows), "query_seconds": seconds, "form": form})
    return report
