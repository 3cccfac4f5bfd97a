"""Sentinel-2 L2A preprocessing: SCL cloud mask, monthly composites, tile harmonisation.

>>> from workbench.sentinel2 import composite_tiles
>>> paths = composite_tiles(items, "workbench-data/sentinel2/composites", agronomic_year=2023)

Every tile's irregular, cloudy time series becomes one Zarr cube with the same
12 monthly median composites (September to August) of the valid observations,
a per-month count of valid observations and a flag for interpolated months.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports

_EXPORTS = {
    "N_MONTHS": "workbench.sentinel2.composite",
    "agronomic_months": "workbench.sentinel2.composite",
    "check_has_valid": "workbench.sentinel2.composite",
    "fill_gaps": "workbench.sentinel2.composite",
    "month_index": "workbench.sentinel2.composite",
    "monthly_composite": "workbench.sentinel2.composite",
    "monthly_count": "workbench.sentinel2.composite",
    "monthly_median": "workbench.sentinel2.composite",
    "nanmedian_axis0": "workbench.sentinel2.composite",
    "DEFAULT_BANDS": "workbench.sentinel2.load",
    "asset_key": "workbench.sentinel2.load",
    "group_by_tile": "workbench.sentinel2.load",
    "item_tile": "workbench.sentinel2.load",
    "load_cube": "workbench.sentinel2.load",
    "DEFAULT_INVALID_SCL": "workbench.sentinel2.masking",
    "invalid_classes": "workbench.sentinel2.masking",
    "to_reflectance": "workbench.sentinel2.masking",
    "valid_mask": "workbench.sentinel2.masking",
    "chunk_progress": "workbench.sentinel2.progress",
    "composite_tile": "workbench.sentinel2.tiles",
    "composite_tiles": "workbench.sentinel2.tiles",
    "list_composites": "workbench.sentinel2.tiles",
    "mask_cube": "workbench.sentinel2.tiles",
    "ndvi": "workbench.sentinel2.tiles",
    "rgb": "workbench.sentinel2.tiles",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # the names for type checkers and IDEs
    from workbench.sentinel2.composite import (
        N_MONTHS,
        agronomic_months,
        check_has_valid,
        fill_gaps,
        month_index,
        monthly_composite,
        monthly_count,
        monthly_median,
        nanmedian_axis0,
    )
    from workbench.sentinel2.load import DEFAULT_BANDS, asset_key, group_by_tile, item_tile, load_cube
    from workbench.sentinel2.masking import DEFAULT_INVALID_SCL, invalid_classes, to_reflectance, valid_mask
    from workbench.sentinel2.progress import chunk_progress
    from workbench.sentinel2.tiles import composite_tile, composite_tiles, list_composites, mask_cube, ndvi, rgb

__all__ = [
    "N_MONTHS",
    "DEFAULT_BANDS",
    "DEFAULT_INVALID_SCL",
    "agronomic_months",
    "asset_key",
    "check_has_valid",
    "chunk_progress",
    "composite_tile",
    "composite_tiles",
    "fill_gaps",
    "group_by_tile",
    "invalid_classes",
    "item_tile",
    "list_composites",
    "load_cube",
    "mask_cube",
    "month_index",
    "monthly_composite",
    "monthly_count",
    "monthly_median",
    "nanmedian_axis0",
    "ndvi",
    "rgb",
    "to_reflectance",
    "valid_mask",
]
