"""Validation of the crop map against in-situ points: the geopandas truth, the query on one union store, the report.

The federated run (three endpoints on loopback) is in test_64_validation_federated.py,
the notebook in test_64_validation_notebook.py.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from workbench.errors import DataError
from workbench.linked.synthetic import hexagons
from workbench.samples.insitu import ABSENT_CROP_CODES, generate_lucas_points
from workbench.samples.sentinel2 import CROP_CLASSES
from workbench.validation import (
    DEFAULT_CODE_MAP,
    ValidationError,
    ValidationReport,
    federated_validation,
    union_store,
    validate_crop_map,
    validation_query,
    write_validation_rdf,
)

UTM = "EPSG:32633"
X0, Y0 = 500_000.0, 5_100_000.0  # on the zone's central meridian, in Slovenia's latitude band


def _box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


@pytest.fixture(scope="module")
def edge_case() -> dict:
    """Hand-made parcels and points whose statuses are known by construction."""
    parcels = gpd.GeoDataFrame({
        "parcel_id": ["P1", "P2", "P3", "P4", "P5", "P6", "P7"],
        "predicted_name": ["maize", "winter wheat", "spring barley", "maize", "maize", "maize", "grassland"],
    }, geometry=[_box(0, 0, 100, 100), _box(120, 0, 220, 100), _box(0, 150, 100, 250), _box(240, 0, 340, 100),
                 _box(400, 0, 500, 100), _box(510, 0, 610, 100), _box(0, 300, 100, 400)], crs=UTM)
    cases = [  # point id, code, x, y, expected status, expected n_parcels, expected parcel
        ("a-9.9m", "B16", 109.9, 50, "confirmed", 1, "P1"),  # 9.9 m from maize P1 (10.1 m from wheat P2)
        ("b-10.1m", "B16", 110.1, 50, "negative", 0, None),  # 10.1 m from maize P1 (9.9 m from wheat P2)
        ("c-other-crop", "B16", 170, 50, "negative", 0, None),  # inside wheat P2; maize 70 m away
        ("d-unmapped", "F40", 50, 50, "negative", 0, None),  # bare soil inside maize P1: no crop maps to F40
        ("e-barley", "B13", 50, 200, "confirmed", 1, "P3"),  # barley covers spring barley
        ("f-road", "B16", 235, 50, "confirmed", 1, "P4"),  # on the road, 5 m from maize P4
        ("g-two", "B16", 505, 50, "confirmed", 2, "P5"),  # 5 m from maize P5 and P6
        ("h-far", "E20", 1000, 1000, "negative", 0, None),  # nothing near
        ("i-temporary", "B55", 50, 350, "confirmed", 1, "P7"),  # temporary grassland is grassland
    ]
    points = gpd.GeoDataFrame({"point_id": [c[0] for c in cases], "lucas_code": [c[1] for c in cases],
                               "survey_date": "2024-06-01"},
                              geometry=[shapely.Point(X0 + c[2], Y0 + c[3]) for c in cases], crs=UTM).to_crs(4326)
    expected = pd.DataFrame(cases, columns=["point_id", "code", "x", "y", "status", "n_parcels", "parcel_id"])
    return {"parcels": parcels, "points": points, "expected": expected.set_index("point_id")}


def _check_expected(report: ValidationReport, expected: pd.DataFrame) -> None:
    got = report.points.set_index("point_id")
    assert list(got.index) == sorted(expected.index)
    for pid, row in expected.iterrows():
        assert got.at[pid, "status"] == row["status"], pid
        assert got.at[pid, "confirmed"] == (row["status"] == "confirmed"), pid
        assert got.at[pid, "n_parcels"] == row["n_parcels"], pid
        expected_parcel = row["parcel_id"] if isinstance(row["parcel_id"], str) else None
        assert got.at[pid, "parcel_id"] == expected_parcel, pid


def test_truth_on_the_edge_cases(edge_case: dict) -> None:
    report = validate_crop_map(edge_case["parcels"], edge_case["points"], code_map=DEFAULT_CODE_MAP, distance_m=10.0)
    _check_expected(report, edge_case["expected"])
    # the point CRS does not matter, the parcels' metric CRS is the one distances are taken in
    assert validate_crop_map(edge_case["parcels"], edge_case["points"].to_crs(UTM)) == report
    total = report.total.iloc[0]
    assert (total.points, total.confirmed, total.negative) == (9, 5, 4)
    per_class = report.per_class.set_index("lucas_code")
    assert per_class.loc["B16", ["points", "confirmed", "negative"]].tolist() == [5, 3, 2]
    assert per_class.loc["F40", "confirmed_share"] == 0.0
    # a wider distance confirms the 10.1 m point; zero keeps only points inside a parcel of their crop
    wide = validate_crop_map(edge_case["parcels"], edge_case["points"], distance_m=10.2).points.set_index("point_id")
    assert wide.at["b-10.1m", "status"] == "confirmed"
    zero = validate_crop_map(edge_case["parcels"], edge_case["points"], distance_m=0).points
    assert set(zero.loc[zero.confirmed, "point_id"]) == {"e-barley", "i-temporary"}
    # the crop map's label is what is validated: with the true crops as the label nothing changes here
    relabelled = edge_case["parcels"].rename(columns={"predicted_name": "crop_name"})
    assert validate_crop_map(relabelled, edge_case["points"]) == report


@pytest.mark.parametrize("form", ["optional", "union"])
def test_query_on_the_union_store_equals_the_truth(edge_case: dict, tmp_path: Path, form: str) -> None:
    files = write_validation_rdf(edge_case["parcels"], edge_case["points"], tmp_path)
    store = union_store(files)
    report = federated_validation(store, form=form, method="union store")
    truth = validate_crop_map(edge_case["parcels"], edge_case["points"])
    assert report.differences(truth) == []
    assert report == truth
    _check_expected(report, edge_case["expected"])
    assert "geof:distance(?pwkt, ?wkt, uom:metre) <= 10.0" in report.meta["query"] and report.meta["form"] == form
    wide = federated_validation(store, form=form, distance_m=10.2).points.set_index("point_id")
    assert wide.at["b-10.1m", "status"] == "confirmed"


def _hexagon_parcels(n: int, *, seed: int, road: float = 4.0) -> gpd.GeoDataFrame:
    """``n`` hexagonal parcels (about 1 ha) in UTM metres with roads between them, random crops."""
    rng = np.random.default_rng(seed)
    extent = float(np.sqrt(n * 10_000.0))
    cells = shapely.buffer(shapely.transform(hexagons(n, extent=extent), lambda xy: xy + [X0, Y0]), -road / 2)
    crops = rng.choice(CROP_CLASSES, size=len(cells))
    return gpd.GeoDataFrame({"parcel_id": [f"H{i:05d}" for i in range(len(cells))], "crop_name": crops},
                            geometry=cells, crs=UTM)


def _oracle(parcels: gpd.GeoDataFrame, points: gpd.GeoDataFrame, distance: float) -> pd.DataFrame:
    """Every point against every parcel (no index), in the parcels' CRS."""
    xy = points.to_crs(parcels.crs).geometry.to_numpy()
    dist = shapely.distance(xy[:, None], parcels.geometry.to_numpy()[None, :])
    allowed = np.array([[crop in DEFAULT_CODE_MAP[code] for crop in parcels["crop_name"]]
                        for code in points["lucas_code"]])
    hit = (dist <= distance) & allowed
    ids = parcels["parcel_id"].to_numpy()
    return pd.DataFrame({"point_id": points["point_id"].to_numpy(), "n_parcels": hit.sum(axis=1),
                         "parcel_id": [min(ids[row]) if row.any() else None for row in hit]}).set_index("point_id")


def test_generated_survey_against_an_exhaustive_oracle() -> None:
    parcels = _hexagon_parcels(300, seed=1)
    points = generate_lucas_points(parcels, fraction=0.6, road_share=0.5, wrong_share=0.1, absent_share=0.1, seed=2)
    assert len(points) > 0.5 * 0.6 * 300
    assert set(points["position"]) == {"field", "road"} and set(points["recorded"]) == {"right", "wrong", "absent"}
    assert set(points.loc[points.recorded == "absent", "lucas_code"]) <= set(ABSENT_CROP_CODES)
    report = validate_crop_map(parcels, points, distance_m=10.0)
    oracle = _oracle(parcels, points, 10.0)
    got = report.points.set_index("point_id")
    assert (got["n_parcels"] == oracle.loc[got.index, "n_parcels"]).all()
    assert (got["parcel_id"].fillna("-") == oracle.loc[got.index, "parcel_id"].fillna("-")).all()
    by_kind = report.points.merge(points[["point_id", "recorded", "position"]], on="point_id")
    assert not by_kind.loc[by_kind.recorded == "absent", "confirmed"].any()  # no crop maps to an absent-crop code
    right_field = by_kind[(by_kind.recorded == "right") & (by_kind.position == "field")]
    assert right_field["confirmed"].all()  # the map here is the truth: a right code in its field is confirmed
    assert 0 < report.total.iloc[0].negative < len(points)
    # no point lies within the generator's margin of 10 m from any parcel: UTM and geodesic metres agree
    xy = points.to_crs(UTM).geometry.to_numpy()
    dist = shapely.distance(xy[:, None], parcels.geometry.to_numpy()[None, :])
    assert not (np.abs(dist - 10.0) <= 0.05).any()
    # (the same survey through a union store and a federation: test_64_validation_federated.py)


def test_report_outputs(edge_case: dict, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    report = validate_crop_map(edge_case["parcels"], edge_case["points"])
    path = report.to_parquet(tmp_path / "report.parquet")
    back = ValidationReport.read_parquet(path)
    assert back == report and back.distance_m == 10.0
    assert not list(tmp_path.glob("*.tmp"))
    tables = report.tables_to_parquet(tmp_path / "tables")
    assert pd.read_parquet(tables["per_class"]).equals(report.per_class)
    assert pd.read_parquet(tables["total"])["confirmed"].iloc[0] == 5
    fig = report.plot_bars()
    assert len(fig.axes[0].patches) == 2 * len(report.per_class)
    html = report.map(edge_case["parcels"]).get_root().render()
    assert html.count("circle_marker") >= len(report.points) and "P1" in html
    # a changed status is a difference that names the point
    changed = validate_crop_map(edge_case["parcels"], edge_case["points"])
    changed.points.loc[0, ["status", "confirmed"]] = ["negative", False]
    assert changed != report and "a-9.9m" in " ".join(changed.differences(report))
    assert "5 confirmed" in repr(report)


def test_bad_input(edge_case: dict, tmp_path: Path) -> None:
    parcels, points = edge_case["parcels"], edge_case["points"]
    with pytest.raises(ValidationError, match="empty"):
        validate_crop_map(parcels, points.iloc[:0])
    with pytest.raises(ValidationError, match="lucas_code"):
        validate_crop_map(parcels, points.drop(columns="lucas_code"))
    with pytest.raises(ValidationError, match="parcel_id"):
        validate_crop_map(parcels.drop(columns="parcel_id"), points)
    with pytest.raises(ValidationError, match="predicted_name"):
        validate_crop_map(parcels.drop(columns="predicted_name"), points)
    with pytest.raises(ValidationError, match="GeoDataFrame"):
        validate_crop_map(parcels, pd.DataFrame(points.drop(columns="geometry")))
    unknown = points.copy()
    unknown.loc[0, "lucas_code"] = "Z99"
    with pytest.raises(ValidationError, match="Z99"):
        validate_crop_map(parcels, unknown)
    with pytest.raises(ValidationError, match="projected CRS in metres"):
        validate_crop_map(parcels.to_crs(4326), points)
    with pytest.raises(ValidationError, match="projected CRS in metres"):
        validate_crop_map(parcels.set_crs(None, allow_override=True), points)
    with pytest.raises(ValidationError, match="projected CRS in metres"):
        validate_crop_map(parcels.to_crs("EPSG:2249"), points)  # US survey feet
    with pytest.raises(ValidationError, match="no CRS"):
        validate_crop_map(parcels, points.set_crs(None, allow_override=True))
    for bad in (-1.0, float("nan"), "ten"):
        with pytest.raises(ValidationError, match="distance_m"):
            validate_crop_map(parcels, points, distance_m=bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="distance_m"):
            validation_query(distance_m=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unique"):
        validate_crop_map(parcels, pd.concat([points, points.iloc[:1]]))
    with pytest.raises(DataError, match="unknown crop class"):
        validate_crop_map(parcels, points, code_map={**DEFAULT_CODE_MAP, "B16": ("corn",)})
    with pytest.raises(DataError, match="non-empty mapping"):
        validate_crop_map(parcels, points, code_map={})
    odd = parcels.copy()
    odd.loc[0, "predicted_name"] = "corn"
    with pytest.raises(ValidationError, match="corn"):
        validate_crop_map(odd, points)
    lines = points.copy()
    lines.loc[0, "geometry"] = shapely.LineString([(14, 46), (14.1, 46)])
    with pytest.raises(ValidationError, match="point geometry"):
        validate_crop_map(parcels, lines)
    with pytest.raises(ValidationError, match="form"):
        validation_query(form="minus")
    from workbench.linked.store import GeoStore

    with pytest.raises(ValidationError, match="no survey point"):
        federated_validation(GeoStore(entailment="none"))
    with pytest.raises(ValidationError, match="select"):
        federated_validation(object())  # type: ignore[arg-type]
    other = tmp_path / "other.parquet"
    parcels.to_parquet(other)
    with pytest.raises(ValidationError, match="not a validation report"):
        ValidationReport.read_parquet(other)


def test_generator_bad_input() -> None:
    parcels = _hexagon_parcels(20, seed=0)
    with pytest.raises(DataError, match="empty"):
        generate_lucas_points(parcels.iloc[:0])
    with pytest.raises(DataError, match="projected CRS"):
        generate_lucas_points(parcels.to_crs(4326))
    with pytest.raises(DataError, match="crop_name"):
        generate_lucas_points(parcels.drop(columns="crop_name"))
    with pytest.raises(DataError, match="road_share"):
        generate_lucas_points(parcels, road_share=1.5)
    with pytest.raises(DataError, match="at most 1"):
        generate_lucas_points(parcels, wrong_share=0.6, absent_share=0.6)
    with pytest.raises(DataError, match="margin"):
        generate_lucas_points(parcels, margin=20.0)
    odd = parcels.copy()
    odd.loc[0, "crop_name"] = "corn"
    with pytest.raises(DataError, match="corn"):
        generate_lucas_points(odd)
    same = generate_lucas_points(parcels, seed=5), generate_lucas_points(parcels, seed=5)
    assert same[0].equals(same[1])  # seeded
    from workbench.validation import synthetic_crop_map

    for bad in ({"n": 0}, {"n": 10, "error_rate": 2.0}, {"n": 10, "road": -1.0}):
        with pytest.raises(DataError):
            synthetic_crop_map(**bad)  # type: ignore[arg-type]
    crop_map = synthetic_crop_map(50, seed=1, error_rate=0.0)
    assert (crop_map["crop_name"] == crop_map["predicted_name"]).all() and crop_map.crs.to_epsg() == 32633
