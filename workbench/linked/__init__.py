"""Linked geospatial data: ontologies, RML mapping to RDF, a GeoSPARQL store with a spatial index, an endpoint.

Public face::

    from workbench.linked import GeoStore, EndpointServer, map_to_store, load_mapping
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports

_EXPORTS = {
    "EndpointServer": "workbench.linked.endpoint",
    "create_app": "workbench.linked.endpoint",
    "serve": "workbench.linked.endpoint",
    "MappingError": "workbench.linked.mapping",
    "MappingReport": "workbench.linked.mapping",
    "load_mapping": "workbench.linked.mapping",
    "map_to_file": "workbench.linked.mapping",
    "map_to_store": "workbench.linked.mapping",
    "GeoStore": "workbench.linked.store",
    "QuerySyntaxError": "workbench.linked.store",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # the names for type checkers and IDEs
    from workbench.linked.endpoint import EndpointServer, create_app, serve
    from workbench.linked.mapping import MappingError, MappingReport, load_mapping, map_to_file, map_to_store
    from workbench.linked.store import GeoStore, QuerySyntaxError

__all__ = [
    "GeoStore",
    "QuerySyntaxError",
    "EndpointServer",
    "create_app",
    "serve",
    "MappingError",
    "MappingReport",
    "load_mapping",
    "map_to_file",
    "map_to_store",
    "ONTOLOGY_DIR",
]

#: Folder of the shipped ontologies (``polar.ttl``, ``foodsec.ttl``).
ONTOLOGY_DIR = Path(__file__).parent / "ontology"
