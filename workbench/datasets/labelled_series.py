"""Readers of the real labelled pixel series that live beside the project (``../shared/data``).

Both return ``(x, y, groups, class_names)``: series ``(n, steps, bands)``
float32, labels ``0 .. k − 1``, a group id per row for grouped hold-outs
(:mod:`workbench.training.protocol`) and the class names. The data are read
in place, never copied.

* :func:`read_formosat2` — the temporalCNN Formosat-2 sample (13 classes,
  149 gap-filled dates × NIR/R/G; train and test CSV joined, the polygon id
  is the group: up to 12 rows come from one polygon);
* :func:`read_slovenia_ndvi` — the eo-learn Slovenia patch: 68 Sentinel-2
  NDVI dates composited into 12 monthly medians of the valid (cloud-free)
  observations (:func:`workbench.sentinel2.monthly_composite`), the land-cover
  classes with enough pixels, spatial blocks as groups.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from workbench.errors import DataError

__all__ = ["FORMOSAT2_FILES", "SLOVENIA_CLASSES", "read_formosat2", "read_slovenia_ndvi"]

FORMOSAT2_FILES = ("train_dataset.csv", "test_dataset.csv")

#: Slovenia land-cover codes used (code → name); cultivated land (11 pixels) is too rare to evaluate.
SLOVENIA_CLASSES: dict[int, str] = {2: "forest", 3: "grassland", 4: "shrubland", 8: "artificial"}


def _folder(folder: str | Path, needed: tuple[str, ...]) -> Path:
    path = Path(folder)
    missing = [n for n in needed if not (path / n).exists()]
    if missing:
        raise DataError(f"{path} lacks {missing}: is the shared data folder there?")
    return path


def read_formosat2(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """The Formosat-2 series of both CSV files; groups are the polygon ids (disjoint between the files)."""
    import pandas as pd

    path = _folder(folder, FORMOSAT2_FILES)
    tables = [pd.read_csv(path / name, header=None).to_numpy() for name in FORMOSAT2_FILES]
    table = np.concatenate(tables)
    if (table.shape[1] - 2) % 3:
        raise DataError(f"{path}: rows must be class, polygon, then NIR/R/G per date; got {table.shape[1]} columns")
    x = table[:, 2:].astype(np.float32).reshape(len(table), -1, 3)
    codes = table[:, 0].astype(np.int64)
    classes, y = np.unique(codes, return_inverse=True)
    return x, y.astype(np.int32), table[:, 1].astype(np.int64), tuple(f"class {c}" for c in classes)


def read_slovenia_ndvi(
    folder: str | Path, *, agronomic_year: int = 2016, block: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Monthly NDVI composites (12 × 1) of the labelled pixels; groups are ``block``² pixel squares."""
    import xarray as xr

    from workbench.sentinel2 import monthly_composite
    from workbench.training.protocol import spatial_blocks

    path = _folder(folder, ("timestamps.json", "data/NDVI.npy", "mask/IS_VALID.npy", "mask/CLM.npy",
                            "mask_timeless/LULC.npy"))
    times = np.array(json.loads((path / "timestamps.json").read_text()), dtype="datetime64[ns]")
    ndvi = np.load(path / "data" / "NDVI.npy")[..., 0]
    valid = np.load(path / "mask" / "IS_VALID.npy")[..., 0].astype(bool) & (np.load(path / "mask" / "CLM.npy")[..., 0] == 0)
    lulc = np.load(path / "mask_timeless" / "LULC.npy")[..., 0]
    cube = xr.DataArray(np.where(valid, ndvi, np.nan)[:, None], dims=("time", "band", "y", "x"),
                        coords={"time": times, "band": ["NDVI"]})
    comp = monthly_composite(cube, agronomic_year=agronomic_year, chunk=64).compute()
    series = comp["reflectance"].values.transpose(2, 3, 0, 1)  # (y, x, month, band)
    groups = spatial_blocks(lulc.shape, block=block)
    labels = np.full(lulc.shape, -1)
    for i, code in enumerate(SLOVENIA_CLASSES):
        labels[lulc == code] = i
    keep = (labels >= 0) & np.isfinite(series).all(axis=(2, 3))
    return (series[keep].astype(np.float32), labels[keep].astype(np.int32), groups[keep],
            tuple(SLOVENIA_CLASSES.values()))
