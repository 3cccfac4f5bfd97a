"""Validation of the crop-type map against LUCAS-style in-situ points (issue 12, paper §VIII-B).

A survey point is confirmed when a parcel of a crop its LUCAS code maps to lies
within 10 m, else it is a negative validation point. Computed two ways that give
the same :class:`ValidationReport`:

* :func:`validate_crop_map`: geopandas on the two GeoDataFrames (the truth);
* :func:`federated_validation`: ONE federated GeoSPARQL query over three endpoints
  (crop map, in-situ points with their code list, code-list mapping).

Public face::

    from workbench.validation import validate_crop_map, federated_validation, ValidationReport
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports

_EXPORTS = {
    "ValidationReport": "workbench.validation.report",
    "ValidationError": "workbench.validation.report",
    "validate_crop_map": "workbench.validation.truth",
    "federated_validation": "workbench.validation.federated",
    "validation_query": "workbench.validation.federated",
    "report_from_rows": "workbench.validation.federated",
    "DEFAULT_CODE_MAP": "workbench.validation.codelist",
    "normalise_code_map": "workbench.validation.codelist",
    "code_map_ntriples": "workbench.validation.codelist",
    "codelist_ntriples": "workbench.validation.codelist",
    "write_validation_rdf": "workbench.validation.rdf",
    "load_stores": "workbench.validation.rdf",
    "union_store": "workbench.validation.rdf",
    "synthetic_crop_map": "workbench.validation.synthetic",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from workbench.validation.codelist import (
        DEFAULT_CODE_MAP,
        code_map_ntriples,
        codelist_ntriples,
        normalise_code_map,
    )
    from workbench.validation.federated import federated_validation, report_from_rows, validation_query
    from workbench.validation.rdf import load_stores, union_store, write_validation_rdf
    from workbench.validation.report import ValidationError, ValidationReport
    from workbench.validation.synthetic import synthetic_crop_map
    from workbench.validation.truth import validate_crop_map

__all__ = [
    "DEFAULT_CODE_MAP",
    "ValidationError",
    "ValidationReport",
    "code_map_ntriples",
    "codelist_ntriples",
    "federated_validation",
    "load_stores",
    "normalise_code_map",
    "report_from_rows",
    "synthetic_crop_map",
    "union_store",
    "validate_crop_map",
    "validation_query",
    "write_validation_rdf",
]
