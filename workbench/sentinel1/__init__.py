"""Sentinel-1 GRD preprocessing for the polar use case.

Read a SAFE (local or ``s3://``), calibrate to σ⁰ with thermal-noise removal,
multilook, boxcar-filter, convert to dB, add the incidence angle and the
geolocation, mask land, and write an analysis-ready Zarr cube
``(y, x, band = HH_db, HV_db, incidence)``; classify a cube with a sea-ice CNN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_FLOOR_DB": "workbench.sentinel1.calibration",
    "GridLUT": "workbench.sentinel1.calibration",
    "azimuth_noise": "workbench.sentinel1.calibration",
    "dn_from_sigma0": "workbench.sentinel1.calibration",
    "interp_grid": "workbench.sentinel1.calibration",
    "sigma0_db": "workbench.sentinel1.calibration",
    "sigma0_linear": "workbench.sentinel1.calibration",
    "to_db": "workbench.sentinel1.calibration",
    "SceneClassification": "workbench.sentinel1.classify",
    "classify_scene": "workbench.sentinel1.classify",
    "block_mean": "workbench.sentinel1.filters",
    "boxcar": "workbench.sentinel1.filters",
    "apply_land_mask": "workbench.sentinel1.landmask",
    "land_mask": "workbench.sentinel1.landmask",
    "rasterize_on_swath": "workbench.sentinel1.landmask",
    "BANDS": "workbench.sentinel1.preprocess",
    "open_cube": "workbench.sentinel1.preprocess",
    "preprocess": "workbench.sentinel1.preprocess",
    "write_cube": "workbench.sentinel1.preprocess",
    "SafeProduct": "workbench.sentinel1.safe",
    "Sentinel1Metadata": "workbench.sentinel1.safe",
    "Window": "workbench.sentinel1.safe",
    "open_safe": "workbench.sentinel1.safe",
    "read_metadata": "workbench.sentinel1.safe",
    "read_window": "workbench.sentinel1.safe",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # the names for type checkers and IDEs
    from workbench.sentinel1.calibration import (
        DEFAULT_FLOOR_DB,
        GridLUT,
        azimuth_noise,
        dn_from_sigma0,
        interp_grid,
        sigma0_db,
        sigma0_linear,
        to_db,
    )
    from workbench.sentinel1.classify import SceneClassification, classify_scene
    from workbench.sentinel1.filters import block_mean, boxcar
    from workbench.sentinel1.landmask import apply_land_mask, land_mask, rasterize_on_swath
    from workbench.sentinel1.preprocess import BANDS, open_cube, preprocess, write_cube
    from workbench.sentinel1.safe import SafeProduct, Sentinel1Metadata, Window, open_safe, read_metadata, read_window

__all__ = [
    "BANDS",
    "DEFAULT_FLOOR_DB",
    "GridLUT",
    "SafeProduct",
    "SceneClassification",
    "Sentinel1Metadata",
    "Window",
    "apply_land_mask",
    "azimuth_noise",
    "block_mean",
    "boxcar",
    "classify_scene",
    "dn_from_sigma0",
    "interp_grid",
    "land_mask",
    "open_cube",
    "open_safe",
    "preprocess",
    "rasterize_on_swath",
    "read_metadata",
    "read_window",
    "sigma0_db",
    "sigma0_linear",
    "to_db",
    "write_cube",
]
