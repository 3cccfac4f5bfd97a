"""GeoTriples-style RDF mapping of vector data with RML mapping files, vectorised over partitions.

Supported RML subset (everything else in a mapping file is an error naming it):

* ``rml:logicalSource`` with ``rml:source`` (a path, relative to the mapping file or the
  ``source=`` argument) of CSV (point columns ``lon``/``lat`` or a ``wkt`` column),
  GeoJSON, Shapefile or GeoParquet; ``rml:referenceFormulation`` is read from the suffix.
* ``rr:subjectMap`` with ``rr:template`` (``{column}`` placeholders, IRI-escaped) and
  ``rr:class`` (any number).
* ``rr:predicateObjectMap`` with ``rr:predicate`` and ``rr:objectMap`` holding one of
  ``rml:reference`` (a column), ``rr:template`` or ``rr:constant``, and optionally
  ``rr:datatype``, ``rr:language``, ``rr:termType rr:IRI``; or the ``rr:object`` shortcut.
* Geometry references (GeoTriples' geometry properties): ``geometry`` (a WKT literal
  with its CRS IRI), ``geometry.gml``, ``geometry.dimension``, ``geometry.isEmpty``,
  ``geometry.isSimple``, ``geometry.coordinateDimension``.

Every triples map is executed on a GeoDataFrame partition with vectorised pandas/
shapely string operations (no Python loop per row); partitions run in parallel on
Dask for large inputs. Invalid geometries raise an error naming the feature, or are
repaired (``make_valid``) or skipped by option, and counted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyoxigraph as ox
import shapely

from workbench.errors import DataError
from workbench.linked.geometry import write_gml
from workbench.linked.vocab import CRS84, EPSG_PREFIX, GML_LITERAL, RDF, WKT_LITERAL, XSD

__all__ = ["Mapping", "MappingError", "MappingReport", "TriplesMap", "load_mapping", "read_source", "map_frame",
           "map_to_file", "map_to_store", "SHIPPED_MAPPINGS"]

log = logging.getLogger(__name__)

RR = "http://www.w3.org/ns/r2rml#"
RML = "http://semweb.mmlab.be/ns/rml#"
SHIPPED_MAPPINGS = {p.name.removesuffix(".rml.ttl"): p for p in (Path(__file__).parent / "mappings").glob("*.rml.ttl")}
_GEOMETRY_REFS = {"geometry", "geometry.gml", "geometry.dimension", "geometry.isEmpty", "geometry.isSimple",
                  "geometry.coordinateDimension"}
_TEMPLATE_VAR = re.compile(r"\{([^{}]+)\}")


class MappingError(DataError):
    """A mapping file is invalid, or the data does not fit it."""


@dataclass(frozen=True)
class TermMap:
    """How one RDF term is made from a row: a column, a template or a constant."""

    kind: str  # "reference" | "template" | "constant"
    value: str
    term_type: str = "literal"  # "iri" | "literal"
    datatype: str | None = None
    language: str | None = None
    line: int = 0


@dataclass(frozen=True)
class TriplesMap:
    """One RML triples map."""

    name: str
    source: Path
    subject: TermMap
    classes: tuple[str, ...]
    predicate_objects: tuple[tuple[str, TermMap], ...]


@dataclass(frozen=True)
class Mapping:
    """The triples maps of a mapping file."""

    path: Path
    maps: tuple[TriplesMap, ...]


@dataclass
class MappingReport:
    """What a mapping run produced."""

    features: int = 0
    triples: int = 0
    invalid_geometries: int = 0
    repaired: int = 0
    skipped: int = 0
    outputs: list[str] = field(default_factory=list)


def _line_of(text: str, needle: str) -> int:
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    return 0


def load_mapping(path: str | Path, *, source: str | Path | None = None) -> Mapping:
    """Read an RML mapping file (Turtle).

    Parameters
    ----------
    path
        The mapping file, or the name of a shipped mapping (``sea_ice_chart``, ``crop_parcels``, ``insitu_points``).
    source
        Input data file overriding every ``rml:source`` of the mapping.

    Raises
    ------
    MappingError
        If the file is not Turtle or uses RML the mapper does not support (names the line).
    """
    path = SHIPPED_MAPPINGS.get(str(path), Path(path))
    if not path.is_file():
        raise MappingError(f"mapping file {path} does not exist (shipped: {', '.join(sorted(SHIPPED_MAPPINGS))})")
    text = path.read_text(encoding="utf-8")
    try:
        triples = [q.triple for q in ox.parse(text, ox.RdfFormat.TURTLE, base_iri=path.resolve().as_uri())]
    except SyntaxError as exc:
        raise MappingError(f"mapping {path} is not valid Turtle: {exc}") from exc
    by_subject: dict[object, dict[str, list]] = {}
    for t in triples:
        by_subject.setdefault(t.subject, {}).setdefault(t.predicate.value, []).append(t.object)

    def one(node: object, prop: str) -> object | None:
        values = by_subject.get(node, {}).get(prop, [])
        return values[0] if values else None

    def term_map(node: object, *, subject: bool = False) -> TermMap:
        props = by_subject.get(node, {})
        term_type = "iri" if subject else "literal"
        tt = one(node, RR + "termType")
        if tt is not None:
            term_type = {"IRI": "iri", "Literal": "literal"}.get(tt.value.rsplit("#", 1)[-1], "bad")  # type: ignore[attr-defined]
            if term_type == "bad":
                raise MappingError(f"{path}:{_line_of(text, 'termType')}: unsupported rr:termType {tt}")
        dt = one(node, RR + "datatype")
        lang = one(node, RR + "language")
        for prop, kind in ((RML + "reference", "reference"), (RR + "template", "template"), (RR + "constant", "constant")):
            if prop in props:
                value = props[prop][0]
                if kind == "template":
                    term_type = "iri" if tt is None else term_type
                if kind == "constant" and isinstance(value, ox.NamedNode):
                    term_type = "iri"
                line = _line_of(text, f'"{value.value}"')
                return TermMap(kind, value.value, term_type, dt.value if dt else None, lang.value if lang else None, line)
        unknown = [p for p in props if p.startswith((RR, RML)) and p not in (RR + "termType", RR + "datatype",
                   RR + "language", RR + "class")]
        raise MappingError(
            f"{path}:{_line_of(text, str(unknown[0]).rsplit('#', 1)[-1]) if unknown else 0}: a term map needs "
            f"rml:reference, rr:template or rr:constant (has {', '.join(unknown) or 'none'})"
        )

    maps: list[TriplesMap] = []
    for node, props in by_subject.items():
        if RML + "logicalSource" not in props:
            continue
        name = getattr(node, "value", str(node))
        ls = props[RML + "logicalSource"][0]
        src = one(ls, RML + "source")
        if source is not None:
            src_path = Path(source)
        elif src is None:
            raise MappingError(f"{path}:{_line_of(text, 'logicalSource')}: triples map {name} has no rml:source")
        else:
            src_path = Path(src.value)  # type: ignore[attr-defined]
            if not src_path.is_absolute():
                src_path = path.parent / src_path
        sm = one(node, RR + "subjectMap")
        if sm is None:
            raise MappingError(f"{path}:{_line_of(text, name.rsplit('#', 1)[-1])}: triples map {name} has no rr:subjectMap")
        classes = tuple(c.value for c in by_subject.get(sm, {}).get(RR + "class", []))
        pos: list[tuple[str, TermMap]] = []
        for pom in props.get(RR + "predicateObjectMap", []):
            predicates = by_subject.get(pom, {}).get(RR + "predicate", [])
            if not predicates:
                raise MappingError(f"{path}:{_line_of(text, 'predicateObjectMap')}: a predicate-object map of {name} "
                                   "has no rr:predicate")
            objects = [term_map(o) for o in by_subject.get(pom, {}).get(RR + "objectMap", [])]
            objects += [TermMap("constant", o.value, "iri" if isinstance(o, ox.NamedNode) else "literal")
                        for o in by_subject.get(pom, {}).get(RR + "object", [])]
            pos.extend((p.value, o) for p in predicates for o in objects)
        maps.append(TriplesMap(name, src_path, term_map(sm, subject=True), classes, tuple(pos)))
    if not maps:
        raise MappingError(f"mapping {path} has no triples map (nothing with rml:logicalSource)")
    return Mapping(path, tuple(sorted(maps, key=lambda m: m.name)))


def read_source(path: str | Path) -> gpd.GeoDataFrame:
    """Read a logical source: CSV (``lon``/``lat`` or ``wkt`` columns), GeoJSON, Shapefile, GeoParquet."""
    path = Path(path)
    if not path.exists():
        raise MappingError(f"logical source {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
            if "wkt" in frame.columns:
                geometry = shapely.from_wkt(frame.pop("wkt").to_numpy(), on_invalid="ignore")
            elif {"lon", "lat"} <= set(frame.columns):
                geometry = shapely.points(frame["lon"].to_numpy(), frame["lat"].to_numpy())
            else:
                raise MappingError(f"CSV source {path} needs a 'wkt' column or 'lon' and 'lat' columns")
            return gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")
        if suffix in (".parquet", ".geoparquet"):
            return gpd.read_parquet(path)
        if suffix in (".geojson", ".json", ".shp", ".gpkg"):
            return gpd.read_file(path)
    except MappingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a malformed input
        raise MappingError(f"cannot read logical source {path}: {exc}") from exc
    raise MappingError(f"logical source {path}: unsupported format {suffix!r} (CSV, GeoJSON, Shapefile, GeoParquet)")


def _crs_iri(frame: gpd.GeoDataFrame) -> str:
    if frame.crs is None or frame.crs.to_epsg() == 4326:
        return CRS84  # GeoPandas keeps lon/lat order for EPSG:4326: that is CRS84
    epsg = frame.crs.to_epsg()
    if epsg is None:
        raise MappingError(f"the input CRS {frame.crs} has no EPSG code")
    return f"{EPSG_PREFIX}{epsg}"


def _arrow(values: object) -> pa.Array:
    """A large_string pyarrow array of ``values`` (pandas Series or numpy array), without a Python loop."""
    if isinstance(values, pd.Series):
        values = values.astype(str)
        array = pa.array(values.array) if hasattr(values.array, "__arrow_array__") else pa.array(values.to_numpy())
    else:
        array = pa.array(values)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string())


def _concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and constants in one pyarrow pass."""
    arrays = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*arrays, pa.scalar("", pa.large_string()))


def _escape_literal(values: pa.Array) -> pa.Array:
    if not pc.any(pc.match_substring_regex(values, r'[\\"\n\r]')).as_py():
        return values
    for old, new in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r")):
        values = pc.replace_substring(values, old, new)
    return values


def _iri_safe(values: pa.Array) -> pa.Array:
    from urllib.parse import quote

    needs = pc.match_substring_regex(values, r"[^A-Za-z0-9_.~\-]")
    if not pc.any(needs).as_py():
        return values
    series = pd.Series(values.to_pylist())
    mask = np.asarray(needs.to_numpy(zero_copy_only=False), dtype=bool)
    series[mask] = series[mask].map(lambda v: quote(v, safe=""))  # only the values that need escaping
    return _arrow(series.to_numpy(dtype=object))


def _booleans(values: np.ndarray) -> pa.Array:
    return _arrow(np.where(values, "true", "false").astype(object))


def _column(frame: gpd.GeoDataFrame, name: str, mapping: Mapping, line: int, crs: str) -> pa.Array:
    if name in _GEOMETRY_REFS:
        geoms = frame.geometry.to_numpy()
        if name == "geometry":
            return _concat(f"<{crs}> ", _arrow(shapely.to_wkt(geoms, rounding_precision=-1)))
        if name == "geometry.gml":
            return _arrow(np.array([write_gml(g) for g in geoms], dtype=object))
        if name == "geometry.dimension":
            return _arrow(shapely.get_dimensions(geoms).astype(str).astype(object))
        if name == "geometry.coordinateDimension":
            return _arrow(shapely.get_coordinate_dimension(geoms).astype(str).astype(object))
        if name == "geometry.isEmpty":
            return _booleans(shapely.is_empty(geoms))
        return _booleans(shapely.is_simple(geoms))
    if name not in frame.columns:
        raise MappingError(
            f"{mapping.path}:{line}: the mapping references column {name!r}, which the input does not have "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    return _arrow(frame[name])


def _term(frame: gpd.GeoDataFrame, tm: TermMap, mapping: Mapping, crs: str) -> pa.Array | str:
    """The N-Triples text of a term map for every row (an array), or one constant string."""
    if tm.kind == "constant":
        if tm.term_type == "iri":
            return f"<{tm.value}>"
        text: pa.Array | str = tm.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    elif tm.kind == "reference":
        text = _column(frame, tm.value, mapping, tm.line, crs)
    else:
        pieces: list[pa.Array | str] = []
        for n, part in enumerate(_TEMPLATE_VAR.split(tm.value)):
            if n % 2 == 0:
                pieces.append(part)
            else:
                column = _column(frame, part, mapping, tm.line or _line_of(mapping.path.read_text(), tm.value), crs)
                pieces.append(_iri_safe(column) if tm.term_type == "iri" else column)
        text = _concat(*pieces)
    if tm.term_type == "iri":
        return _concat("<", text, ">") if not isinstance(text, str) else f"<{text}>"
    if not isinstance(text, str):
        text = _escape_literal(text)
    datatype = tm.datatype
    if tm.kind == "reference" and tm.value in _GEOMETRY_REFS and datatype is None:
        datatype = {"geometry": WKT_LITERAL, "geometry.gml": GML_LITERAL, "geometry.isEmpty": XSD + "boolean",
                    "geometry.isSimple": XSD + "boolean"}.get(tm.value, XSD + "integer")
    suffix = f'"@{tm.language}' if tm.language else (
        f'"^^<{datatype}>' if datatype and datatype != XSD + "string" else '"')
    return '"' + text + suffix if isinstance(text, str) else _concat('"', text, suffix)


def check_geometries(frame: gpd.GeoDataFrame, *, invalid: str, id_column: str | None,
                     report: MappingReport) -> gpd.GeoDataFrame:
    """Find invalid geometries; raise (naming the feature), repair or skip them (counted in ``report``)."""
    geoms = frame.geometry.to_numpy()
    bad = ~shapely.is_valid(geoms) | shapely.is_missing(geoms)
    if not bad.any():
        return frame
    report.invalid_geometries += int(bad.sum())
    first = frame.index[bad][0]
    ident = frame.loc[first, id_column] if id_column and id_column in frame.columns else first
    if invalid == "error":
        reason = shapely.is_valid_reason(geoms[bad][0]) if geoms[bad][0] is not None else "missing geometry"
        raise MappingError(f"feature {ident!r} has an invalid geometry ({reason}); {int(bad.sum())} invalid in this "
                           "partition: use invalid='repair' or 'skip'")
    if invalid == "repair":
        fixed = frame.copy()
        repairable = bad & ~shapely.is_missing(geoms)
        fixed.loc[repairable, fixed.geometry.name] = shapely.make_valid(geoms[repairable])
        report.repaired += int(repairable.sum())
        report.skipped += int((bad & ~repairable).sum())
        return fixed[~(bad & ~repairable)]
    if invalid == "skip":
        report.skipped += int(bad.sum())
        return frame[~bad]
    raise MappingError(f"unknown invalid-geometry option {invalid!r}: expected 'error', 'repair' or 'skip'")


def _id_column(tmap: TriplesMap) -> str | None:
    names = _TEMPLATE_VAR.findall(tmap.subject.value) if tmap.subject.kind == "template" else []
    return names[0] if names else None


def map_frame(tmap: TriplesMap, frame: gpd.GeoDataFrame, *, mapping: Mapping, invalid: str = "error",
              check: bool = True, report: MappingReport | None = None) -> bytes:
    """N-Triples (UTF-8 bytes) of one triples map over one partition (vectorised).

    ``check=False`` skips the geometry check (the caller checked the whole source).
    """
    report = report if report is not None else MappingReport()
    if check:
        frame = check_geometries(frame, invalid=invalid, id_column=_id_column(tmap), report=report)
    if frame.empty:
        return b""
    crs = _crs_iri(frame)
    subject = _term(frame, tmap.subject, mapping, crs)
    columns: list[pa.Array] = []
    for cls in tmap.classes:
        columns.append(_concat(subject, f" <{RDF}type> <{cls}> .\n"))
    for predicate, om in tmap.predicate_objects:
        line = _concat(subject, f" <{predicate}> ", _term(frame, om, mapping, crs), " .\n")
        if om.kind == "reference" and om.value in frame.columns:
            line = line.filter(pa.array(frame[om.value].notna().to_numpy()))
        columns.append(line)
    report.triples += sum(len(c) for c in columns)
    # every line ends with a newline, so the arrays' character buffers are the N-Triples text
    return b"".join(_buffer_bytes(c) for c in columns)


def _buffer_bytes(array: pa.Array) -> bytes:
    if len(array) == 0:
        return b""
    array = pa.concat_arrays([array]) if array.offset else array
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[: len(array) + 1]
    data = array.buffers()[2]
    return data.to_pybytes()[offsets[0] : offsets[-1]]


def _partitions(frame: gpd.GeoDataFrame, rows: int) -> Iterator[gpd.GeoDataFrame]:
    for start in range(0, len(frame), rows):
        yield frame.iloc[start : start + rows]


def iter_ntriples(mapping: Mapping, *, invalid: str = "error", partition_rows: int = 100_000,
                  dask: bool | None = None, report: MappingReport | None = None) -> Iterator[bytes]:
    """N-Triples chunks (UTF-8 bytes) of every triples map over every partition of its source.

    With ``dask`` (default: inputs over 4 partitions), partitions are mapped in parallel
    on Dask (a LocalCluster or the configured scheduler) and yielded in order.
    """
    report = report if report is not None else MappingReport()
    by_source: dict[Path, list[TriplesMap]] = {}
    for tmap in mapping.maps:
        by_source.setdefault(tmap.source, []).append(tmap)
    for source, tmaps in by_source.items():
        frame = check_geometries(read_source(source), invalid=invalid, id_column=_id_column(tmaps[0]), report=report)
        report.features += len(frame)
        parts = list(_partitions(frame, partition_rows))
        use_dask = dask if dask is not None else len(parts) > 4
        for tmap in tmaps:
            if use_dask:
                import dask as dask_core

                tasks = [dask_core.delayed(_map_part)(mapping, tmap, p) for p in parts]
                for text, part_report in dask_core.compute(*tasks):
                    _merge(report, part_report)
                    yield text
            else:
                for part in parts:
                    yield map_frame(tmap, part, mapping=mapping, check=False, report=report)


def _map_part(mapping: Mapping, tmap: TriplesMap, part: gpd.GeoDataFrame) -> tuple[bytes, MappingReport]:
    report = MappingReport()
    return map_frame(tmap, part, mapping=mapping, check=False, report=report), report


def _merge(total: MappingReport, part: MappingReport) -> None:
    for name in ("triples", "invalid_geometries", "repaired", "skipped"):
        setattr(total, name, getattr(total, name) + getattr(part, name))


def map_to_file(mapping: str | Path | Mapping, output: str | Path, *, source: str | Path | None = None,
                invalid: str = "error", partition_rows: int = 100_000, dask: bool | None = None) -> MappingReport:
    """Map to an N-Triples (``.nt``) or Turtle (``.ttl``; N-Triples is valid Turtle) file, atomically."""
    mapping = mapping if isinstance(mapping, Mapping) else load_mapping(mapping, source=source)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    report = MappingReport()
    try:
        with tmp.open("wb") as fh:
            for chunk in iter_ntriples(mapping, invalid=invalid, partition_rows=partition_rows, dask=dask, report=report):
                fh.write(chunk)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    report.outputs.append(str(output))
    log.info("mapped %d features to %d triples in %s", report.features, report.triples, output)
    return report


def map_to_store(mapping: str | Path | Mapping, store: "GeoStore", *, source: str | Path | None = None,  # noqa: F821
                 invalid: str = "error", partition_rows: int = 100_000, dask: bool | None = None) -> MappingReport:
    """Stream the mapped triples into a :class:`~workbench.linked.store.GeoStore`."""
    mapping = mapping if isinstance(mapping, Mapping) else load_mapping(mapping, source=source)
    report = MappingReport()
    for chunk in iter_ntriples(mapping, invalid=invalid, partition_rows=partition_rows, dask=dask, report=report):
        if chunk:
            store.load_data(chunk, format="ntriples")
    return report
