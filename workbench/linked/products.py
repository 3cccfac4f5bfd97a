"""Adapters from the workbench's own vector products to the columns the shipped mappings read.

* the sea-ice chart polygons of ``workbench.sentinel1.classify`` (GeoParquet with
  ``class_id``, ``class_name``) → ``id``, ``ice_class`` (a ``polar:`` class local name),
  ``concentration`` (empty: a chart has none), ``image_id``;
* the parcel labels of ``workbench.processors.crops`` (``parcel_id``, ``predicted_name``
  or ``crop_name``, ``agreement``) → ``id``, ``crop`` (a ``foodsec:`` class local name),
  ``confidence``, ``image_id``.

Pure frame-to-frame functions, plus :func:`prepare_product` that reads a product and
writes the adapted GeoParquet next to the RDF outputs.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from workbench import storage
from workbench.errors import DataError

__all__ = ["ICE_CLASSES", "local_name", "ice_chart_frame", "parcel_frame", "prepare_product"]

#: Class names of the Polar use case (and binary charts) -> ``polar:`` local names.
ICE_CLASSES: dict[str, str] = {
    "water": "OpenWater",
    "brash_pancake_ice": "BrashPancakeIce",
    "young_ice": "YoungIce",
    "level_first_year_ice": "LevelFirstYearIce",
    "deformed_ice": "DeformedIce",
    "ice": "SeaIce",
}
_FIVE = ("water", "brash_pancake_ice", "young_ice", "level_first_year_ice", "deformed_ice")


def local_name(label: str) -> str:
    """CamelCase ontology local name of a class label (``"winter wheat"`` → ``WinterWheat``)."""
    return "".join(part.capitalize() for part in str(label).replace("_", " ").replace("-", " ").split())


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} lacks column(s) {missing}; columns: {list(frame.columns)}")


def ice_chart_frame(frame: gpd.GeoDataFrame, *, image_id: str) -> gpd.GeoDataFrame:
    """Sea-ice chart polygons (``class_id``/``class_name``) as the ``sea_ice_chart`` mapping reads them."""
    _require(frame, ("class_id",), "the sea-ice chart")
    ids = frame["class_id"].astype(int).to_numpy()
    if "class_name" in frame.columns:
        names = frame["class_name"].astype(str).to_numpy()
    else:
        names = np.array([_FIVE[i] if i < len(_FIVE) else str(i) for i in ids], dtype=object)
    unknown = sorted(set(names) - set(ICE_CLASSES))
    if unknown:
        raise DataError(f"the sea-ice chart has classes {unknown} that the Polar ontology does not know "
                        f"(expected {sorted(ICE_CLASSES)})")
    return gpd.GeoDataFrame({
        "id": [f"{image_id}_{i}_{n}" for n, i in enumerate(ids)],
        "ice_class": [ICE_CLASSES[name] for name in names],
        "concentration": np.full(len(frame), np.nan),
        "image_id": image_id,
    }, geometry=frame.geometry.to_numpy(), crs=frame.crs)


def parcel_frame(frame: gpd.GeoDataFrame, *, image_id: str) -> gpd.GeoDataFrame:
    """Parcel crop labels as the ``crop_parcels`` mapping reads them (unlabelled parcels are dropped)."""
    _require(frame, ("parcel_id",), "the parcel labels")
    label = "predicted_name" if "predicted_name" in frame.columns else "crop_name"
    _require(frame, (label,), "the parcel labels")
    keep = frame[label].notna().to_numpy()
    kept = frame[keep]
    confidence = kept["agreement"] if "agreement" in kept.columns else pd.Series(np.nan, index=kept.index)
    return gpd.GeoDataFrame({
        "id": kept["parcel_id"].astype(str).to_numpy(),
        "crop": [local_name(v) for v in kept[label]],
        "confidence": confidence.to_numpy(dtype=float),
        "image_id": image_id,
    }, geometry=kept.geometry.to_numpy(), crs=kept.crs)


def prepare_product(url: str | Path, *, kind: str, out_dir: str | Path, image_id: str | None = None) -> Path:
    """Read a product (GeoParquet, local or ``s3://``), adapt it, write ``out_dir/<kind>.parquet``.

    Parameters
    ----------
    url
        The product: sea-ice chart polygons (``kind="sea_ice_chart"``) or parcel labels (``"crop_parcels"``).
    image_id
        Catalogue id of the image the product comes from (default: the file's stem).
    """
    adapters = {"sea_ice_chart": ice_chart_frame, "crop_parcels": parcel_frame}
    if kind not in adapters:
        raise DataError(f"unknown product kind {kind!r}: expected one of {sorted(adapters)}")
    frame = storage.read_geoparquet(str(url))
    adapted = adapters[kind](frame, image_id=image_id or Path(str(url)).stem)
    out = Path(out_dir) / f"{kind}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    adapted.to_parquet(tmp)
    tmp.replace(out)
    return out
