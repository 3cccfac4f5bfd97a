"""Interlinking inputs: every reader, CRS handling, invalid geometries, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import dask_geopandas
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from workbench.errors import WorkbenchError
from workbench.linked.interlink import interlink
from workbench.linked.interlink.errors import InterlinkError
from workbench.linked.synthetic import interlink_cases


@pytest.fixture(scope="module")
def cases():
    source, target = interlink_cases(seed=9, random_count=10)
    return source.set_crs("EPSG:4326", allow_override=True), target.set_crs("EPSG:4326", allow_override=True)


@pytest.fixture(scope="module")
def reference(cases):
    return interlink(*cases)


def _link_set(result) -> set[tuple[str, str, str]]:
    return set(zip(result.links.source_id.astype(str), result.links.target_id.astype(str), result.links.relation.astype(str)))


def test_files_series_and_dask_frames_read_alike(cases, reference, tmp_path: Path) -> None:
    source, target = cases
    source.to_parquet(tmp_path / "s.parquet")
    target.to_file(tmp_path / "t.geojson", driver="GeoJSON")
    from_files = interlink(tmp_path / "s.parquet", str(tmp_path / "t.geojson"))
    assert _link_set(from_files) == _link_set(reference)
    lazy = interlink(dask_geopandas.from_geopandas(source, npartitions=3), target)
    assert _link_set(lazy) == _link_set(reference)
    series = interlink(gpd.GeoSeries(source.geometry.to_numpy(), crs="EPSG:4326"), target)
    assert len(series.links) == len(reference.links)  # ids are then the rows
    csv = pd.DataFrame({"id": target["id"], "wkt": target.geometry.to_wkt()})
    csv.to_csv(tmp_path / "t.csv", index=False)
    assert _link_set(interlink(source, tmp_path / "t.csv")) == _link_set(reference)
    pts = target[target.geom_type == "Point"]
    pd.DataFrame({"id": pts["id"], "lon": pts.geometry.x, "lat": pts.geometry.y}).to_csv(tmp_path / "p.csv", index=False)
    by_lonlat = interlink(source, tmp_path / "p.csv")
    ref_points = reference.links[reference.links.target_id.isin(set(pts["id"]))]
    assert len(by_lonlat.links) == len(ref_points)


def test_target_in_another_crs_is_reprojected_and_the_crs_stated(cases, reference) -> None:
    source, target = cases
    projected = target.to_crs("EPSG:3857")
    result = interlink(source, projected)
    assert result.crs == "EPSG:4326"
    # the same as reprojecting by hand (exact touching cases do not survive a round trip, so compare so)
    assert _link_set(result) == _link_set(interlink(source, projected.to_crs("EPSG:4326")))
    assert result.stats["related"] > 0
    assert interlink(source, target, crs="EPSG:3857").crs == "EPSG:3857"


def test_invalid_geometries_are_refused_repaired_or_skipped_and_counted(cases) -> None:
    source, target = cases
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    bad = pd.concat([source, gpd.GeoDataFrame({"id": ["bad"]}, geometry=[bowtie], crs="EPSG:4326")], ignore_index=True)
    with pytest.raises(InterlinkError, match=r"source has 1 invalid geometries \(first: id 'bad': Self-intersection"):
        interlink(bad, target)
    repaired = interlink(bad, target, invalid="repair")
    assert repaired.stats["source_repaired"] == 1 and "bad" in set(repaired.links.source_id)
    skipped = interlink(bad, target, invalid="skip")
    assert skipped.stats["source_skipped"] == 1 and "bad" not in set(skipped.links.source_id)
    assert "skipped 1+0" in skipped.summary()
    with pytest.raises(InterlinkError, match="unknown invalid-geometry policy 'fix'"):
        interlink(source, target, invalid="fix")


def test_missing_and_empty_geometries_are_dropped_and_counted(cases) -> None:
    source, target = cases
    holes = gpd.GeoDataFrame({"id": ["none", "empty"]}, geometry=[None, shapely.Polygon()], crs="EPSG:4326")
    result = interlink(pd.concat([source, holes], ignore_index=True), target)
    assert result.stats["source_empty"] == 2
    with pytest.raises(InterlinkError, match="the target is empty.*2 missing/empty"):
        interlink(source, holes)
    with pytest.raises(InterlinkError, match="the source is empty"):
        interlink(source.iloc[:0], target)


def test_mixed_crs_is_an_error(cases) -> None:
    source, target = cases
    with pytest.raises(InterlinkError, match="mixed CRS: the source is in EPSG:4326 but the target has no CRS"):
        interlink(source, target.set_crs(None, allow_override=True))
    with pytest.raises(InterlinkError, match="unknown CRS 'EPSG:999999'"):
        interlink(source, target, crs="EPSG:999999")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"budget": 0}, "budget must be a positive number of pairs to verify, got 0"),
    ({"budget": -5}, "budget must be a positive number"),
    ({"budget": 2.5}, "budget must be a positive whole number"),
    ({"budget": "ten"}, "budget must be a positive whole number"),
    ({"budget": 10, "weighting": "chi3"}, "unknown weighting 'chi3'"),
    ({"budget": 10, "weighting": "chi2*fancy"}, "unknown weighting 'fancy' in 'chi2\\*fancy'"),
    ({"budget": 10, "weighting": ""}, "weighting '' is empty"),
    ({"weighting": "mbro"}, "give budget=N too"),
    ({"relations": ["sfNear"]}, "unknown relation 'sfNear'"),
    ({"relations": ["sfCovers"]}, "GeoSPARQL 1.0 calls covering ehCovers"),
    ({"relations": ["sfDisjoint"]}, "counts disjoint pairs instead"),
    ({"relations": []}, "no relation given"),
    ({"filter": "quadtree"}, "unknown filter 'quadtree': expected one of grid, strtree"),
    ({"partitions": 0}, "partitions must be a positive whole number"),
    ({"source_id": "nope"}, "the source has no id column 'nope'"),
])
def test_bad_options_are_clear_errors(cases, kwargs: dict, message: str) -> None:
    with pytest.raises(InterlinkError, match=message) as info:
        interlink(*cases, **kwargs)
    assert isinstance(info.value, WorkbenchError)


def test_bad_sources_are_clear_errors(cases, tmp_path: Path) -> None:
    source, target = cases
    with pytest.raises(InterlinkError, match="does not exist"):
        interlink(tmp_path / "missing.parquet", target)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InterlinkError, match="unknown format '.txt'"):
        interlink(tmp_path / "x.txt", target)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InterlinkError, match="cannot read input"):
        interlink(tmp_path / "broken.parquet", target)
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "plain.csv", index=False)
    with pytest.raises(InterlinkError, match="neither lon/lat nor wkt"):
        interlink(source, tmp_path / "plain.csv")
    with pytest.raises(InterlinkError, match="the target is a list"):
        interlink(source, [1, 2])
    dup = source.assign(id="same")
    with pytest.raises(InterlinkError, match="duplicate ids"):
        interlink(dup, target)


def test_points_only_source_gets_a_grid(cases) -> None:
    source, target = cases
    points = source[source.geom_type == "Point"]
    result = interlink(points, target)
    a, b = points.geometry.to_numpy()[:, None], target.geometry.to_numpy()[None, :]
    assert result.stats["related"] == int(np.count_nonzero(shapely.intersects(a, b)))
