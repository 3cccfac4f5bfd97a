"""Geometry literals of GeoSPARQL 1.0/1.1: parse and write WKT, GML, GeoJSON and KML, with their CRS.

Pure functions, no I/O. Every parsed geometry is held in CRS84 (longitude,
latitude) so that geometries of different CRSs and serialisations compare;
:class:`GeoValue` remembers the CRS and the serialisation of the literal it came
from so that a function's result is written back in the CRS and the kind (WKT,
GML, GeoJSON or KML) of its first argument, as GeoSPARQL asks. One entry point,
:func:`parse_literal`, dispatches on the datatype IRI.

GeoJSON (``geo:geoJSONLiteral``, RFC 7946) and KML (``geo:kmlLiteral``, OGC KML 2.2)
are always CRS84 (KML altitude is kept as Z). GeoJSON is read by GEOS
(``shapely.from_geojson``: geometries, a ``Feature`` or a ``FeatureCollection``);
KML geometry elements (``Point``, ``LineString``, ``LinearRing``, ``Polygon``,
``MultiGeometry``, also inside a ``Placemark``) by the standard-library XML parser.
DGGS literals (``geo:dggsLiteral``) name cells of a discrete global grid: the AusPIX DGGS
(``<https://w3id.org/dggs/auspix> CELLLIST ((R1 R23))`` or ``CELL (R1)``; the rHEALPix grid
of ``rhealpixdggs``' ``WGS84_003``: WGS84 ellipsoid, N_side 3, both polar squares 0) is read
as the union of its cells' boundaries in CRS84; other DGGSs are an unsupported serialisation.

CRS rules: a WKT literal without a leading ``<IRI>`` is in CRS84. The CRS IRIs
``http://www.opengis.net/def/crs/EPSG/0/N`` follow the EPSG axis order, so
``EPSG/0/4326`` coordinates are (latitude, longitude); ``OGC/1.3/CRS84`` is
(longitude, latitude). GML ``srsName`` may also be ``EPSG:N`` or
``urn:ogc:def:crs:EPSG::N``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache

import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from workbench.errors import DataError
from workbench.linked.vocab import (
    CRS84,
    DGGS_LITERAL,
    EPSG_PREFIX,
    GEO,
    GEOJSON_LITERAL,
    GML_LITERAL,
    KML_LITERAL,
    WKT_LITERAL,
)

__all__ = [
    "GeoValue",
    "GeometryLiteralError",
    "UnsupportedSerialisationError",
    "KINDS",
    "parse_literal",
    "parse_wkt_literal",
    "parse_gml",
    "parse_geojson",
    "parse_kml",
    "parse_dggs",
    "AUSPIX",
    "write_geojson",
    "write_kml",
    "write_as",
    "to_crs84",
    "from_crs84",
    "write_wkt",
    "write_gml",
    "write_gml_envelope",
    "write_literal",
    "crs_of",
]

GML_NS = "http://www.opengis.net/ont/gml"
_GML_NAMESPACES = (GML_NS, "http://www.opengis.net/gml", "http://www.opengis.net/gml/3.2")
_WKT_CRS = re.compile(r"^\s*<([^>]*)>\s*(.*)$", re.S)


class GeometryLiteralError(DataError):
    """A geometry literal cannot be parsed, or names an unknown CRS."""


class UnsupportedSerialisationError(GeometryLiteralError):
    """A geometry literal of a GeoSPARQL serialisation this store cannot read (DGGS)."""


KML_NS = "http://www.opengis.net/kml/2.2"
AUSPIX = "https://w3id.org/dggs/auspix"

#: serialisation kind -> datatype IRI of its literal
KINDS: dict[str, str] = {
    "wkt": WKT_LITERAL,
    "gml": GML_LITERAL,
    "geojson": GEOJSON_LITERAL,
    "kml": KML_LITERAL,
}


@dataclass(frozen=True)
class GeoValue:
    """A parsed geometry literal.

    Attributes
    ----------
    geom
        The geometry in CRS84 (longitude, latitude), or in the literal's own
        CRS when that CRS is not geographic-convertible (never the case for EPSG codes).
    crs
        The CRS IRI of the literal (CRS84 when it named none).
    kind
        ``"wkt"``, ``"gml"``, ``"geojson"`` or ``"kml"``: the serialisation of the literal.
    explicit_crs
        Whether the literal named its CRS.
    """

    geom: BaseGeometry
    crs: str
    kind: str
    explicit_crs: bool


def crs_of(iri: str) -> CRS:
    """The pyproj CRS of a CRS IRI (``.../EPSG/0/N``, ``.../OGC/1.3/CRS84``, ``EPSG:N``, URN forms)."""
    return _crs(_normalise_crs_iri(iri))


def _normalise_crs_iri(iri: str) -> str:
    iri = iri.strip()
    if iri in (CRS84, "CRS84", "OGC:CRS84", "urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84"):
        return CRS84
    match = re.match(r"^(?:EPSG:|urn:ogc:def:crs:EPSG:[^:]*:|http://www\.opengis\.net/def/crs/EPSG/\d+/)(\d+)$", iri)
    if match:
        return EPSG_PREFIX + match.group(1)
    return iri


@lru_cache(maxsize=64)
def _crs(iri: str) -> CRS:
    if iri == CRS84:
        return CRS.from_user_input("OGC:CRS84")
    if iri.startswith(EPSG_PREFIX):
        return CRS.from_epsg(int(iri[len(EPSG_PREFIX):]))
    raise GeometryLiteralError(
        f"unknown CRS {iri!r}: expected {CRS84} or {EPSG_PREFIX}<code> (or EPSG:<code>)"
    )


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(_crs(src), _crs(dst), always_xy=False)


def _reproject(geom: BaseGeometry, src: str, dst: str) -> BaseGeometry:
    if src == dst or geom.is_empty:
        return geom
    transformer = _transformer(src, dst)
    return shapely.transform(geom, lambda xy: _apply(transformer, xy))


def to_crs84(geom: BaseGeometry, crs: str) -> BaseGeometry:
    """Reproject ``geom`` given in ``crs`` (with that CRS's axis order) to CRS84 lon/lat."""
    return _reproject(geom, _normalise_crs_iri(crs), CRS84)


def from_crs84(geom: BaseGeometry, crs: str) -> BaseGeometry:
    """Reproject a CRS84 geometry to ``crs`` (with that CRS's axis order)."""
    return _reproject(geom, CRS84, _normalise_crs_iri(crs))


def _apply(transformer: Transformer, xy):  # type: ignore[no-untyped-def]
    import numpy as np

    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def parse_wkt_literal(lexical: str) -> GeoValue:
    """Parse the lexical form of a ``geo:wktLiteral`` (optional ``<crs>`` then WKT).

    Raises
    ------
    GeometryLiteralError
        If the WKT is malformed or the CRS unknown.
    """
    text = lexical.strip()
    crs = CRS84
    explicit = False
    match = _WKT_CRS.match(text)
    if match:
        crs = _normalise_crs_iri(match.group(1))
        text = match.group(2)
        explicit = True
    if not text:
        geom: BaseGeometry = shapely.from_wkt("GEOMETRYCOLLECTION EMPTY")
    else:
        try:
            geom = shapely.from_wkt(text)
        except shapely.errors.GEOSException as exc:
            raise GeometryLiteralError(f"malformed WKT literal {lexical[:80]!r}: {exc}") from exc
    _crs(crs)
    return GeoValue(to_crs84(geom, crs), crs, "wkt", explicit)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _coords(text: str, dim: int = 2, *, tuples_by_comma: bool = False) -> list[tuple[float, ...]]:
    if tuples_by_comma or re.search(r"\d,-?\d", text):
        # gml:coordinates: "x,y x,y" (tuples separated by blanks, values by commas)
        return [tuple(float(v) for v in p.split(",")) for p in text.split() if p]
    values = [float(v) for v in text.split()]
    if len(values) % dim:
        raise GeometryLiteralError(f"GML coordinate list of {len(values)} numbers is not a multiple of {dim}")
    return [tuple(values[i : i + dim]) for i in range(0, len(values), dim)]


def _ring_coords(elem: ET.Element) -> list[tuple[float, ...]]:
    for child in elem.iter():
        name = _local(child.tag)
        if name in ("posList", "coordinates") and child.text:
            dim = int(child.get("srsDimension", child.get("dimension", "2")))
            return _coords(child.text, dim, tuples_by_comma=name == "coordinates")
    positions = [child for child in elem.iter() if _local(child.tag) == "pos" and child.text]
    if positions:
        return [tuple(float(v) for v in p.text.split()) for p in positions]  # type: ignore[union-attr]
    raise GeometryLiteralError(f"GML element {_local(elem.tag)} has no coordinates")


def _gml_geometry(elem: ET.Element) -> BaseGeometry:
    name = _local(elem.tag)
    if not any(_local(c.tag) in ("pos", "posList", "coordinates", "lowerCorner") and (c.text or "").strip()
               for c in elem.iter()):
        empty = {"Point": "POINT EMPTY", "LineString": "LINESTRING EMPTY", "Polygon": "POLYGON EMPTY"}
        return shapely.from_wkt(empty.get(name, "GEOMETRYCOLLECTION EMPTY"))
    if name == "Point":
        return shapely.Point(_ring_coords(elem)[0])
    if name in ("LineString", "LinearRing", "Curve"):
        coords = _ring_coords(elem)
        return shapely.LineString(coords)
    if name in ("Polygon", "Surface", "PolygonPatch"):
        shell: list[tuple[float, ...]] | None = None
        holes: list[list[tuple[float, ...]]] = []
        for child in elem.iter():
            cname = _local(child.tag)
            if cname in ("exterior", "outerBoundaryIs"):
                shell = _ring_coords(child)
            elif cname in ("interior", "innerBoundaryIs"):
                holes.append(_ring_coords(child))
        if shell is None:
            raise GeometryLiteralError("GML Polygon without an exterior ring")
        return shapely.Polygon(shell, holes)
    if name == "Envelope":
        lower = upper = None
        for child in elem:
            if _local(child.tag) == "lowerCorner" and child.text:
                lower = [float(v) for v in child.text.split()]
            elif _local(child.tag) == "upperCorner" and child.text:
                upper = [float(v) for v in child.text.split()]
        if lower is None or upper is None:
            raise GeometryLiteralError("GML Envelope needs lowerCorner and upperCorner")
        return shapely.box(lower[0], lower[1], upper[0], upper[1])
    if name in ("MultiPoint", "MultiCurve", "MultiLineString", "MultiSurface", "MultiPolygon", "MultiGeometry"):
        members: list[BaseGeometry] = []
        for member in elem:
            if _local(member.tag).endswith("Members"):
                members.extend(_gml_geometry(g) for g in member)
            else:
                members.extend(_gml_geometry(g) for g in member)
        if name == "MultiPoint":
            return shapely.MultiPoint(members)
        if name in ("MultiCurve", "MultiLineString"):
            return shapely.MultiLineString(members)
        if name in ("MultiSurface", "MultiPolygon"):
            return shapely.MultiPolygon(members)
        return shapely.GeometryCollection(members)
    raise GeometryLiteralError(f"unsupported GML geometry element gml:{name}")


def parse_gml(lexical: str) -> GeoValue:
    """Parse the lexical form of a ``geo:gmlLiteral`` (GML 2/3 simple-features profile).

    The ``gml`` prefix may be undeclared (as in many published datasets); it is then
    bound to the GeoSPARQL GML namespace before parsing.
    """
    text = lexical.strip()
    if not text:
        return GeoValue(shapely.from_wkt("GEOMETRYCOLLECTION EMPTY"), CRS84, "gml", False)
    if re.search(r"<gml:", text) and "xmlns:gml" not in text:
        text = re.sub(r"^<(gml:\w+)", rf'<\1 xmlns:gml="{GML_NS}"', text, count=1)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise GeometryLiteralError(f"malformed GML literal {lexical[:80]!r}: {exc}") from exc
    srs = root.get("srsName")
    explicit = srs is not None
    crs = _normalise_crs_iri(srs) if srs else CRS84
    _crs(crs)
    geom = _gml_geometry(root)
    return GeoValue(to_crs84(geom, crs), crs, "gml", explicit)


def parse_geojson(lexical: str) -> GeoValue:
    """Parse the lexical form of a ``geo:geoJSONLiteral`` (a geometry, ``Feature`` or ``FeatureCollection``).

    GeoJSON coordinates are CRS84 longitude/latitude (RFC 7946); an empty lexical form
    is the empty geometry.

    Raises
    ------
    GeometryLiteralError
        If the text is not GeoJSON.
    """
    text = lexical.strip()
    if not text:
        return GeoValue(shapely.from_wkt("GEOMETRYCOLLECTION EMPTY"), CRS84, "geojson", False)
    try:
        geom = shapely.from_geojson(text)
    except (shapely.errors.GEOSException, ValueError, TypeError) as exc:
        raise GeometryLiteralError(f"malformed GeoJSON literal {lexical[:80]!r}: {exc}") from exc
    if geom is None:
        raise GeometryLiteralError(f"GeoJSON literal {lexical[:80]!r} holds no geometry")
    return GeoValue(geom, CRS84, "geojson", False)


def _kml_coords(elem: ET.Element) -> list[tuple[float, ...]]:
    node = next((c for c in elem.iter() if _local(c.tag) == "coordinates"), None)
    if node is None or not (node.text or "").strip():
        return []
    try:
        return [tuple(float(v) for v in t.split(",")) for t in node.text.split() if t]  # type: ignore[union-attr]
    except ValueError as exc:
        raise GeometryLiteralError(f"KML coordinates {node.text.strip()[:60]!r} are not lon,lat[,alt] tuples") from exc


def _kml_geometry(elem: ET.Element) -> BaseGeometry:
    name = _local(elem.tag)
    if name in ("Placemark", "kml", "Document", "Folder"):
        found = [g for g in elem if _local(g.tag) in _KML_GEOMETRIES or _local(g.tag) in ("Placemark", "Document", "Folder")]
        if not found:
            raise GeometryLiteralError(f"KML element {name} holds no geometry")
        parts = [_kml_geometry(g) for g in found]
        return parts[0] if len(parts) == 1 else shapely.GeometryCollection(parts)
    if name == "Point":
        coords = _kml_coords(elem)
        return shapely.Point(coords[0]) if coords else shapely.from_wkt("POINT EMPTY")
    if name in ("LineString", "LinearRing"):
        coords = _kml_coords(elem)
        return shapely.LineString(coords) if coords else shapely.from_wkt("LINESTRING EMPTY")
    if name == "Polygon":
        shell: list[tuple[float, ...]] = []
        holes: list[list[tuple[float, ...]]] = []
        for child in elem:
            if _local(child.tag) == "outerBoundaryIs":
                shell = _kml_coords(child)
            elif _local(child.tag) == "innerBoundaryIs":
                holes.append(_kml_coords(child))
        if not shell:
            return shapely.from_wkt("POLYGON EMPTY")
        return shapely.Polygon(shell, holes)
    if name == "MultiGeometry":
        members = [_kml_geometry(g) for g in elem if _local(g.tag) in _KML_GEOMETRIES]
        kinds = {m.geom_type for m in members}
        if members and kinds == {"Point"}:
            return shapely.MultiPoint(members)
        if members and kinds == {"LineString"}:
            return shapely.MultiLineString(members)
        if members and kinds == {"Polygon"}:
            return shapely.MultiPolygon(members)
        return shapely.GeometryCollection(members)
    raise GeometryLiteralError(
        f"unsupported KML element kml:{name}: expected Point, LineString, LinearRing, Polygon or MultiGeometry"
    )


_KML_GEOMETRIES = frozenset({"Point", "LineString", "LinearRing", "Polygon", "MultiGeometry"})


def parse_kml(lexical: str) -> GeoValue:
    """Parse the lexical form of a ``geo:kmlLiteral`` (a KML 2.2 geometry element, possibly in a ``Placemark``).

    KML coordinates are ``lon,lat[,alt]`` in CRS84 (altitude becomes Z); the KML namespace
    may be declared or not. An empty lexical form is the empty geometry.

    Raises
    ------
    GeometryLiteralError
        If the text is not well-formed XML or not a KML geometry.
    """
    text = lexical.strip()
    if not text:
        return GeoValue(shapely.from_wkt("GEOMETRYCOLLECTION EMPTY"), CRS84, "kml", False)
    if re.search(r"<kml:", text) and "xmlns:kml" not in text:
        text = re.sub(r"^<(kml:\w+)", rf'<\1 xmlns:kml="{KML_NS}"', text, count=1)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise GeometryLiteralError(f"malformed KML literal {lexical[:80]!r}: {exc}") from exc
    try:
        geom = _kml_geometry(root)
    except (ValueError, TypeError, IndexError, shapely.errors.GEOSException) as exc:
        raise GeometryLiteralError(f"invalid KML geometry {lexical[:80]!r}: {exc}") from exc
    return GeoValue(geom, CRS84, "kml", False)


_DGGS_BODY = re.compile(r"^(CELLLIST|CELL)\s*\(\s*\(?([^()]*)\)?\s*\)$", re.I)
_AUSPIX_CELL = re.compile(r"^([NOPQRS])([0-8]*)$")


def parse_dggs(lexical: str) -> GeoValue:
    """Parse an AusPIX ``geo:dggsLiteral`` (``[<https://w3id.org/dggs/auspix>] CELLLIST ((R1 R23 ...))`` or ``CELL (R1)``).

    The geometry is the union of the cells (each cell's boundary on the WGS84 ellipsoid,
    from ``rhealpixdggs``; a polar cap cell reaches the pole). An empty cell list is the
    empty geometry.

    Raises
    ------
    UnsupportedSerialisationError
        For a DGGS other than AusPIX, or a cell crossing the antimeridian.
    GeometryLiteralError
        If the text is not an AusPIX cell list or names an invalid cell.
    """
    text = lexical.strip()
    dggs = AUSPIX
    match = _WKT_CRS.match(text)
    if match:
        dggs, text = match.group(1).strip(), match.group(2).strip()
    if dggs.rstrip("/") != AUSPIX:
        raise UnsupportedSerialisationError(
            f"unsupported serialisation: geo:dggsLiteral of the DGGS <{dggs}>; this store reads AusPIX (<{AUSPIX}>)"
        )
    if not text:
        return GeoValue(shapely.from_wkt("GEOMETRYCOLLECTION EMPTY"), CRS84, "dggs", False)
    body = _DGGS_BODY.match(text)
    if body is None:
        raise GeometryLiteralError(f"malformed DGGS literal {lexical[:80]!r}: expected CELLLIST ((R1 R2 ...)) or CELL (R1)")
    names = body.group(2).split()
    if body.group(1).upper() == "CELL" and len(names) != 1:
        raise GeometryLiteralError(f"DGGS CELL literal {lexical[:80]!r} must name exactly one cell")
    if not names:
        return GeoValue(shapely.from_wkt("GEOMETRYCOLLECTION EMPTY"), CRS84, "dggs", False)
    cells = [_auspix_cell(name) for name in names]
    geom = cells[0] if len(cells) == 1 else shapely.union_all(cells)
    return GeoValue(geom, CRS84, "dggs", False)


@lru_cache(maxsize=65_536)
def _auspix_cell(name: str) -> BaseGeometry:
    from rhealpixdggs.dggs import WGS84_003

    match = _AUSPIX_CELL.match(name)
    if match is None:
        raise GeometryLiteralError(f"invalid AusPIX cell {name!r}: expected one of N O P Q R S and digits 0-8")
    if len(match.group(2)) > WGS84_003.max_resolution:
        raise GeometryLiteralError(f"AusPIX cell {name!r} is finer than resolution {WGS84_003.max_resolution}")
    cell = WGS84_003.cell((match.group(1), *(int(d) for d in match.group(2))))
    samples = 2 if cell.region() == "equatorial" else 48  # polar cells have curved edges in lon/lat
    points = [(float(x), float(y)) for x, y in cell.boundary(n=samples, plane=False)]
    lons = [x for x, _ in points]
    if cell.ellipsoidal_shape == "cap":  # bounded by a parallel, holding the pole
        lat = min(y for _, y in points) if cell.region() == "north_polar" else max(y for _, y in points)
        pole = 90.0 if cell.region() == "north_polar" else -90.0
        cap = shapely.box(-180.0, min(lat, pole), 180.0, max(lat, pole))
    else:
        if max(lons) - min(lons) > 180.0:
            raise UnsupportedSerialisationError(f"AusPIX cell {name!r} crosses the antimeridian: not supported")
        cap = shapely.Polygon(points)
    # edges along parallels are straight in lon/lat; vertices every degree keep geodesic measures close too
    return shapely.segmentize(cap, max_segment_length=1.0)


@lru_cache(maxsize=200_000)
def parse_literal(lexical: str, datatype: str) -> GeoValue:
    """Parse a geometry literal given its lexical form and datatype IRI (cached).

    The one parser behind every function and relation: WKT, GML, GeoJSON and KML
    literals all become CRS84 geometries, so any two of them compare.

    Raises
    ------
    UnsupportedSerialisationError
        For a ``geo:dggsLiteral`` (or another ``geo:`` literal type this store does not read).
    GeometryLiteralError
        If the datatype is not a geometry literal type or the text is malformed.
    """
    parser = _PARSERS.get(datatype)
    if parser is not None:
        return parser(lexical)
    if datatype.startswith(GEO) and datatype.endswith("Literal"):
        local = datatype[len(GEO):] if datatype.startswith(GEO) else datatype
        raise UnsupportedSerialisationError(
            f"unsupported serialisation geo:{local} (<{datatype}>): this store reads geo:wktLiteral, "
            "geo:gmlLiteral, geo:geoJSONLiteral, geo:kmlLiteral and (AusPIX) geo:dggsLiteral"
        )
    raise GeometryLiteralError(
        f"literal of datatype <{datatype}> is not a geometry literal: expected geo:wktLiteral, geo:gmlLiteral, "
        "geo:geoJSONLiteral, geo:kmlLiteral or geo:dggsLiteral"
    )


_PARSERS = {
    WKT_LITERAL: parse_wkt_literal,
    GML_LITERAL: parse_gml,
    GEOJSON_LITERAL: parse_geojson,
    KML_LITERAL: parse_kml,
    DGGS_LITERAL: parse_dggs,
}


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    rounded = round(value, 12)
    if rounded == 0:
        rounded = 0.0
    return repr(rounded)


def write_wkt(geom: BaseGeometry, crs: str = CRS84, *, explicit_crs: bool = True) -> str:
    """WKT lexical form for a CRS84 geometry, reprojected to ``crs`` and prefixed by ``<crs>``."""
    native = from_crs84(geom, crs)
    text = shapely.to_wkt(native, rounding_precision=12, trim=True)
    if explicit_crs or crs != CRS84:
        return f"<{crs}> {text}"
    return text


def _pos_list(coords) -> str:  # type: ignore[no-untyped-def]
    return " ".join(" ".join(_num(v) for v in c) for c in coords)


def _gml_body(geom: BaseGeometry, srs_attr: str) -> str:
    kind = geom.geom_type
    pos_list = '<gml:posList srsDimension="3">' if geom.has_z else "<gml:posList>"  # Z kept (GML 3)
    if kind == "Point":
        return f"<gml:Point{srs_attr}><gml:pos>{_pos_list(geom.coords)}</gml:pos></gml:Point>"
    if kind in ("LineString", "LinearRing"):
        return f"<gml:LineString{srs_attr}>{pos_list}{_pos_list(geom.coords)}</gml:posList></gml:LineString>"
    if kind == "Polygon":
        inner = "".join(
            f"<gml:interior><gml:LinearRing>{pos_list}{_pos_list(r.coords)}</gml:posList></gml:LinearRing></gml:interior>"
            for r in geom.interiors
        )
        return (
            f"<gml:Polygon{srs_attr}><gml:exterior><gml:LinearRing>{pos_list}{_pos_list(geom.exterior.coords)}"
            f"</gml:posList></gml:LinearRing></gml:exterior>{inner}</gml:Polygon>"
        )
    members = "".join(_gml_body(g, "") for g in geom.geoms)  # type: ignore[attr-defined]
    tag, member = {
        "MultiPoint": ("MultiPoint", "pointMember"),
        "MultiLineString": ("MultiCurve", "curveMember"),
        "MultiPolygon": ("MultiSurface", "surfaceMember"),
    }.get(kind, ("MultiGeometry", "geometryMember"))
    members = "".join(f"<gml:{member}>{_gml_body(g, '')}</gml:{member}>" for g in geom.geoms)  # type: ignore[attr-defined]
    return f"<gml:{tag}{srs_attr}>{members}</gml:{tag}>"


def write_gml(geom: BaseGeometry, crs: str = CRS84) -> str:
    """GML 3 lexical form (GeoSPARQL's GML namespace, ``srsName`` = ``crs``) of a CRS84 geometry."""
    native = from_crs84(geom, crs)
    if native.geom_type == "Polygon":
        attrs = f' xmlns:gml="{GML_NS}" srsName="{crs}"'
    else:
        attrs = f' srsName="{crs}" xmlns:gml="{GML_NS}"'
    return _gml_body(native, attrs)


def write_gml_envelope(geom: BaseGeometry, crs: str = CRS84) -> str:
    """``gml:Envelope`` (``lowerCorner``/``upperCorner`` in ``crs``'s axis order) of a CRS84 geometry.

    GML's own form of a bounding box: the envelope of a ``geo:gmlLiteral`` is written
    this way rather than as the equivalent five-vertex ``gml:Polygon``.

    Raises
    ------
    GeometryLiteralError
        If the geometry is empty (an empty geometry has no envelope).
    """
    if geom.is_empty:
        raise GeometryLiteralError("the envelope of an empty geometry is undefined")
    minx, miny, maxx, maxy = from_crs84(geom, crs).bounds
    return (
        f'<gml:Envelope srsName="{crs}" xmlns:gml="{GML_NS}">'
        f"<gml:lowerCorner>{_num(minx)} {_num(miny)}</gml:lowerCorner>"
        f"<gml:upperCorner>{_num(maxx)} {_num(maxy)}</gml:upperCorner></gml:Envelope>"
    )


def write_geojson(geom: BaseGeometry) -> str:
    """GeoJSON lexical form (RFC 7946, CRS84) of a CRS84 geometry."""
    return shapely.to_geojson(geom)


def _kml_tuples(coords) -> str:  # type: ignore[no-untyped-def]
    return " ".join(",".join(_num(v) for v in c) for c in coords)


def _kml_body(geom: BaseGeometry) -> str:
    kind = geom.geom_type
    if geom.is_empty and kind != "GeometryCollection":
        return f"<{kind if kind in _KML_GEOMETRIES else 'MultiGeometry'}/>"
    if kind == "Point":
        return f"<Point><coordinates>{_kml_tuples(geom.coords)}</coordinates></Point>"
    if kind in ("LineString", "LinearRing"):
        return f"<{kind}><coordinates>{_kml_tuples(geom.coords)}</coordinates></{kind}>"
    if kind == "Polygon":
        inner = "".join(
            f"<innerBoundaryIs><LinearRing><coordinates>{_kml_tuples(r.coords)}</coordinates></LinearRing>"
            "</innerBoundaryIs>" for r in geom.interiors
        )
        return (f"<Polygon><outerBoundaryIs><LinearRing><coordinates>{_kml_tuples(geom.exterior.coords)}"
                f"</coordinates></LinearRing></outerBoundaryIs>{inner}</Polygon>")
    return "<MultiGeometry>" + "".join(_kml_body(g) for g in geom.geoms) + "</MultiGeometry>"  # type: ignore[attr-defined]


def write_kml(geom: BaseGeometry) -> str:
    """KML 2.2 geometry element (``lon,lat[,alt]`` coordinates, CRS84) of a CRS84 geometry."""
    return re.sub(r"^<(\w+)", rf'<\1 xmlns="{KML_NS}"', _kml_body(geom), count=1)


def write_as(geom: BaseGeometry, kind: str, crs: str = CRS84, *, explicit_crs: bool = True) -> tuple[str, str]:
    """Lexical form and datatype of a CRS84 geometry in serialisation ``kind`` (GeoJSON and KML: always CRS84).

    Raises
    ------
    GeometryLiteralError
        If ``kind`` is not one of :data:`KINDS`.
    """
    if kind == "gml":
        return write_gml(geom, crs), GML_LITERAL
    if kind == "wkt":
        return write_wkt(geom, crs, explicit_crs=explicit_crs), WKT_LITERAL
    if kind == "geojson":
        return write_geojson(geom), GEOJSON_LITERAL
    if kind == "kml":
        return write_kml(geom), KML_LITERAL
    raise GeometryLiteralError(f"unknown serialisation {kind!r}: expected one of {', '.join(KINDS)}")


def write_literal(geom: BaseGeometry, like: GeoValue) -> tuple[str, str]:
    """Lexical form and datatype of ``geom`` written as ``like`` was (same kind and CRS).

    A result computed from a DGGS literal is written as CRS84 WKT: an arbitrary geometry
    is no set of grid cells.
    """
    if like.kind == "dggs":
        return write_wkt(geom, CRS84, explicit_crs=False), WKT_LITERAL
    return write_as(geom, like.kind, like.crs, explicit_crs=like.explicit_crs)
