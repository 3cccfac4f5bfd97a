"""A synthetic crop map at any scale: hexagonal parcels of about 1 ha in UTM metres, roads between them.

For tests and benchmarks of the validation (``workbench.linked.synthetic.hexagons``
moved to UTM zone 33N and shrunk to leave roads): every parcel has a true crop
(``crop_name``) and the map's label (``predicted_name``), wrong for a share of parcels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import DataError
from workbench.samples.sentinel2 import CROP_CLASSES

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["synthetic_crop_map"]


def synthetic_crop_map(n: int, *, seed: int = 0, parcel_area: float = 10_000.0, road: float = 6.0,
                       error_rate: float = 0.15, origin: tuple[float, float] = (500_000.0, 5_100_000.0),
                       crs: str = "EPSG:32633") -> gpd.GeoDataFrame:
    """About ``n`` hexagonal parcels with their true crop and a map label wrong for ``error_rate`` of them.

    Parameters
    ----------
    n
        Number of parcels (> 0).
    seed
        Seed of the random crops and errors.
    parcel_area
        Area of a hexagon before the roads are cut out, square metres.
    road
        Width of the roads between neighbouring parcels, metres.
    error_rate
        Share of parcels whose map label is drawn at random (it may hit the true crop).
    origin, crs
        Lower-left corner of the map in ``crs`` (a projected CRS in metres).

    Returns
    -------
    geopandas.GeoDataFrame
        ``parcel_id, crop_name, predicted_name, geometry``.
    """
    import geopandas as gpd
    import shapely

    from workbench.linked.synthetic import hexagons

    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise DataError(f"n must be a positive number of parcels, got {n!r}")
    if parcel_area <= 0 or road < 0 or not 0 <= error_rate <= 1:
        raise DataError(f"need parcel_area > 0, road >= 0 and error_rate in [0, 1]; got {parcel_area}, {road}, "
                        f"{error_rate}")
    rng = np.random.default_rng(seed)
    extent = float(np.sqrt(n * parcel_area))
    cells = shapely.transform(hexagons(int(n), extent=extent), lambda xy: xy + np.asarray(origin))
    cells = shapely.buffer(cells, -road / 2, join_style="mitre") if road else cells
    truth = rng.choice(np.asarray(CROP_CLASSES, dtype=object), size=len(cells))
    wrong = rng.random(len(cells)) < error_rate
    predicted = np.where(wrong, rng.choice(np.asarray(CROP_CLASSES, dtype=object), size=len(cells)), truth)
    width = len(str(len(cells)))
    return gpd.GeoDataFrame({"parcel_id": [f"S-{i:0{width}d}" for i in range(len(cells))], "crop_name": truth,
                             "predicted_name": predicted}, geometry=cells, crs=crs)
