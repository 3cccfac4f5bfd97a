"""Metric distances: the local projections built from PROJ pipelines equal those from the CRS database."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS, Transformer

from workbench.linked import geosparql
from workbench.linked.geometry import parse_literal

WKT = "http://www.opengis.net/ont/geosparql#wktLiteral"
METRE = "http://www.opengis.net/def/uom/OGC/1.0/metre"


@pytest.mark.parametrize("lon, lat", [(10.654321, 45.123456), (-179.5, -70.25), (0.0, 89.0), (15.0, 0.0)])
def test_pipeline_projection_is_bit_identical_to_the_crs_one(lon: float, lat: float) -> None:
    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs")
    fwd_db = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)
    inv_db = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
    geosparql._aeqd.cache_clear()
    fwd, inv = geosparql._aeqd(lon, lat)
    rng = np.random.default_rng(0)
    lons = np.clip(lon + rng.uniform(-0.5, 0.5, 500), -180, 180)
    lats = np.clip(lat + rng.uniform(-0.5, 0.5, 500), -90, 90)
    assert np.array_equal(np.array(fwd.transform(lons, lats)), np.array(fwd_db.transform(lons, lats)))
    xs, ys = rng.uniform(-20_000, 20_000, 500), rng.uniform(-20_000, 20_000, 500)
    assert np.array_equal(np.array(inv.transform(xs, ys)), np.array(inv_db.transform(xs, ys)))


def test_metric_distance_of_a_known_pair() -> None:
    # 0.001 degree of latitude at 45 N is 111.13 m on the WGS84 ellipsoid
    a = parse_literal("POINT(10 45)", WKT)
    b = parse_literal("POINT(10 45.001)", WKT)
    assert geosparql.distance(a, b, unit=METRE) == pytest.approx(111.13, abs=0.01)
