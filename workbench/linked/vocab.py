"""IRIs of the vocabularies the linked-data layer uses (GeoSPARQL 1.0/1.1, units, CRSs, workbench ontologies)."""

from __future__ import annotations

__all__ = [
    "GEO",
    "GEOF",
    "SF",
    "UOM",
    "XSD",
    "RDF",
    "RDFS",
    "WKT_LITERAL",
    "GML_LITERAL",
    "GEOJSON_LITERAL",
    "KML_LITERAL",
    "DGGS_LITERAL",
    "GEOMETRY_LITERALS",
    "QUDT_UNIT",
    "CRS84",
    "EPSG_PREFIX",
    "TOPOLOGY_RELATIONS",
    "POLAR",
    "FOODSEC",
    "WB",
    "PREFIXES",
]

GEO = "http://www.opengis.net/ont/geosparql#"
GEOF = "http://www.opengis.net/def/function/geosparql/"
SF = "http://www.opengis.net/ont/sf#"
UOM = "http://www.opengis.net/def/uom/OGC/1.0/"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
WKT_LITERAL = GEO + "wktLiteral"
GML_LITERAL = GEO + "gmlLiteral"
GEOJSON_LITERAL = GEO + "geoJSONLiteral"
KML_LITERAL = GEO + "kmlLiteral"
DGGS_LITERAL = GEO + "dggsLiteral"
#: The geometry literal datatypes the store parses (the GeoSPARQL 1.1 serialisations; DGGS: AusPIX only).
GEOMETRY_LITERALS: tuple[str, ...] = (WKT_LITERAL, GML_LITERAL, GEOJSON_LITERAL, KML_LITERAL, DGGS_LITERAL)
QUDT_UNIT = "http://qudt.org/vocab/unit/"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_PREFIX = "http://www.opengis.net/def/crs/EPSG/0/"
POLAR = "http://extremeearth.eu/ontology/polar#"
FOODSEC = "http://extremeearth.eu/ontology/foodsec#"
WB = "http://extremeearth.eu/resource/"

#: The 24 topological relations of GeoSPARQL 1.0 (Simple Features, Egenhofer, RCC8): the
#: local names shared by the ``geo:`` properties and the ``geof:`` functions.
TOPOLOGY_RELATIONS: tuple[str, ...] = (
    "sfEquals", "sfDisjoint", "sfIntersects", "sfTouches", "sfCrosses", "sfWithin", "sfContains", "sfOverlaps",
    "ehEquals", "ehDisjoint", "ehMeet", "ehOverlap", "ehCovers", "ehCoveredBy", "ehInside", "ehContains",
    "rcc8eq", "rcc8dc", "rcc8ec", "rcc8po", "rcc8tppi", "rcc8tpp", "rcc8ntpp", "rcc8ntppi",
)

PREFIXES: dict[str, str] = {
    "geo": GEO,
    "geof": GEOF,
    "sf": SF,
    "uom": UOM,
    "unit": QUDT_UNIT,
    "xsd": XSD,
    "rdf": RDF,
    "rdfs": RDFS,
    "polar": POLAR,
    "foodsec": FOODSEC,
}
