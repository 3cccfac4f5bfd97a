"""The three sources of the federated validation, as RDF files and GeoSPARQL stores.

* ``crop_map``: the crop-type map's parcels (``foodsec:Parcel`` with ``foodsec:hasCropType``
  and a polygon), mapped with the shipped ``crop_parcels`` RML mapping;
* ``insitu``: the LUCAS-style survey points (``lucas:SurveyPoint`` with ``lucas:landCover``,
  a code of the survey's own code list, and a point) mapped with
  ``mappings/lucas_points.rml.ttl``, plus that code list (SKOS concepts with labels);
* ``codelist``: the code-list mapping (SKOS mapping relations from LUCAS codes to the
  ``foodsec:`` crop classes).

Each goes to its own N-Triples files (atomic writes); :func:`load_stores` loads them into
one in-memory :class:`~workbench.linked.GeoStore` per source (for one endpoint each), and
:func:`union_store` into one store holding the union (the reference answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.samples.insitu import LUCAS_CODES
from workbench.validation.codelist import DEFAULT_CODE_MAP, code_map_ntriples, codelist_ntriples
from workbench.validation.report import ValidationError
from workbench.validation.truth import parcel_crop_column

if TYPE_CHECKING:
    import geopandas as gpd

    from workbench.linked.store import GeoStore

__all__ = ["MEMBERS", "POINTS_MAPPING", "load_stores", "union_store", "write_validation_rdf"]

#: The RML mapping of the survey points.
POINTS_MAPPING = Path(__file__).parent / "mappings" / "lucas_points.rml.ttl"
#: The names of the three sources (endpoints) of the validation.
MEMBERS = ("crop_map", "insitu", "codelist")


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _write_parquet(frame: gpd.GeoDataFrame, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def write_validation_rdf(
    parcels: gpd.GeoDataFrame,
    points: gpd.GeoDataFrame,
    out_dir: str | Path,
    *,
    code_map: Mapping[str, str | Iterable[str] | None] = DEFAULT_CODE_MAP,
    codes: Mapping[str, str] = LUCAS_CODES,
    crop_column: str | None = None,
    image_id: str = "crop_map",
) -> dict[str, tuple[Path, ...]]:
    """Map the crop map, the survey (with its code list) and the code-list mapping to N-Triples files.

    Parameters
    ----------
    parcels
        The crop map's parcels (``parcel_id``, a crop class column, polygons in any CRS).
    points
        The survey points (``point_id``, ``lucas_code``, optional ``survey_date``, points).
    out_dir
        Folder of the files (created).
    code_map, codes
        The code-list mapping and the code list (code -> label).
    crop_column
        The parcels' crop class column (default ``predicted_name``, else ``crop_name``).
    image_id
        ``foodsec:hasImageID`` of the parcels.

    Returns
    -------
    dict
        Source name (:data:`MEMBERS`) -> its N-Triples files.

    Raises
    ------
    ValidationError
        If a frame lacks a column or the point set is empty.
    """
    import geopandas as gpd

    from workbench.linked.mapping import map_to_file
    from workbench.linked.products import local_name

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    column = parcel_crop_column(parcels, crop_column)
    for what, frame, columns in (("parcels", parcels, ("parcel_id",)), ("points", points, ("point_id", "lucas_code"))):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValidationError(f"{what} lack column(s) {missing}; columns: {list(frame.columns)}")
    if len(points) == 0:
        raise ValidationError("the point set is empty: nothing to publish")
    if points.crs is None or parcels.crs is None:
        raise ValidationError("parcels and points need a CRS to be published as GeoSPARQL literals")
    labelled = parcels[parcels[column].notna()]
    confidence = labelled["agreement"].to_numpy(dtype=float) if "agreement" in labelled.columns else np.nan
    crop_frame = gpd.GeoDataFrame({
        "id": labelled["parcel_id"].astype(str).to_numpy(),
        "crop": [local_name(v) for v in labelled[column]],
        "confidence": confidence,
        "image_id": image_id,
    }, geometry=labelled.geometry.to_numpy(), crs=labelled.crs)
    point_frame = gpd.GeoDataFrame({
        "point_id": points["point_id"].astype(str).to_numpy(),
        "lucas_code": points["lucas_code"].astype(str).to_numpy(),
        "survey_date": points["survey_date"].astype(str).to_numpy() if "survey_date" in points.columns else None,
    }, geometry=points.geometry.to_crs(4326).to_numpy(), crs=4326)
    if "survey_date" not in points.columns:
        point_frame = point_frame.drop(columns="survey_date")
    crop_source = _write_parquet(crop_frame, out / "crop_map_parcels.parquet")
    point_source = _write_parquet(point_frame, out / "lucas_points.parquet")
    files: dict[str, tuple[Path, ...]] = {}
    map_to_file("crop_parcels", out / "crop_map.nt", source=crop_source, invalid="repair")
    files["crop_map"] = (out / "crop_map.nt",)
    map_to_file(POINTS_MAPPING, out / "insitu_points.nt", source=point_source, invalid="error")
    files["insitu"] = (out / "insitu_points.nt", _write_text(out / "lucas_codes.nt", codelist_ntriples(codes)))
    files["codelist"] = (_write_text(out / "lucas_code_map.nt", code_map_ntriples(code_map)),)
    return files


def load_stores(files: Mapping[str, Sequence[str | Path]], *, plain: Iterable[str] = ()) -> dict[str, GeoStore]:
    """One in-memory GeoStore per source, each holding that source's files.

    Sources named in ``plain`` get a store without the GeoSPARQL functions (a plain
    SPARQL member: the federator evaluates ``geof:`` functions for it).
    """
    from workbench.linked.store import GeoStore

    plain = set(plain)
    unknown = plain - set(files)
    if unknown:
        raise ValidationError(f"plain names unknown source(s) {sorted(unknown)}; sources: {sorted(files)}")
    stores = {}
    for name, paths in files.items():
        store = GeoStore(entailment="none", geosparql=name not in plain)
        for path in paths:
            store.load(path, progress=False)
        stores[name] = store
    return stores


def union_store(files: Mapping[str, Sequence[str | Path]]) -> GeoStore:
    """One in-memory GeoStore holding the union of every source's files (the reference answer)."""
    from workbench.linked.store import GeoStore

    store = GeoStore(entailment="none")
    for paths in files.values():
        for path in paths:
            store.load(path, progress=False)
    return store
