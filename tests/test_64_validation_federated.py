"""The validation as ONE federated GeoSPARQL query over three endpoints on loopback (crop map, survey, code map).

The federated report must equal the one from a single store holding the union of
the data, and the geopandas truth; the crop-map member is a plain SPARQL endpoint
(no geof: functions), so the federator evaluates geof:distance itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest

from tests.conftest import free_port
from tests.test_64_validation import UTM, X0, Y0, _check_expected, edge_case  # noqa: F401 - the fixture
from workbench.linked import EndpointServer
from workbench.samples.insitu import generate_lucas_points
from workbench.validation import (
    ValidationError,
    federated_validation,
    load_stores,
    synthetic_crop_map,
    union_store,
    validate_crop_map,
    write_validation_rdf,
)


def _crop_map(n: int, *, seed: int) -> gpd.GeoDataFrame:
    """Hexagon parcels with roads between them, their true crop and a map label wrong for about 15 %."""
    return synthetic_crop_map(n, seed=seed, road=6.0, error_rate=0.15)


def _serve(files: dict, *, plain: tuple[str, ...]) -> tuple[dict[str, EndpointServer], object]:
    from workbench.linked.federation import Federation

    stores = load_stores(files, plain=plain)
    servers = {name: EndpointServer(store, port=free_port()).start() for name, store in stores.items()}
    return servers, Federation({name: s.url for name, s in servers.items()}, timeout=60.0)


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    parcels = _crop_map(250, seed=3)
    points = generate_lucas_points(parcels, fraction=0.6, wrong_share=0.08, absent_share=0.08, seed=4)
    files = write_validation_rdf(parcels, points, tmp_path_factory.mktemp("validation-rdf"))
    servers, federation = _serve(files, plain=("crop_map",))
    try:
        yield {"parcels": parcels, "points": points, "files": files, "federation": federation}
    finally:
        federation.close()  # type: ignore[attr-defined]
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("form", ["optional", "union"])
def test_federated_equals_union_store_and_truth(survey: dict, form: str) -> None:
    truth = validate_crop_map(survey["parcels"], survey["points"])
    federated = federated_validation(survey["federation"], form=form)
    union = survey.setdefault("union", federated_validation(union_store(survey["files"]), form="optional",
                                                            method="union store"))
    assert federated.differences(union) == []
    assert federated.differences(truth) == []
    assert federated == union == truth
    total = truth.total.iloc[0]
    assert 0 < total.negative < total.points  # map errors, survey errors and absent crops leave negatives
    # the members saw only sub-queries: no single member holds both the points and the parcels
    assert federated.meta["rows"] >= len(truth.points)


def test_federated_edge_cases(edge_case: dict, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    files = write_validation_rdf(edge_case["parcels"], edge_case["points"], tmp_path)
    servers, federation = _serve(files, plain=())
    try:
        report = federated_validation(federation, distance_m=10.0)
        _check_expected(report, edge_case["expected"])
        assert report == validate_crop_map(edge_case["parcels"], edge_case["points"])
        wide = federated_validation(federation, distance_m=10.2).points.set_index("point_id")
        assert wide.at["b-10.1m", "status"] == "confirmed"
    finally:
        federation.close()  # type: ignore[attr-defined]
        for server in servers.values():
            server.stop()


def test_a_member_down_is_a_clear_error(edge_case: dict, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    from workbench.linked.federation import Federation, FederationError

    files = write_validation_rdf(edge_case["parcels"], edge_case["points"], tmp_path)
    stores = load_stores(files)
    servers = {n: EndpointServer(s, port=free_port()).start() for n, s in stores.items() if n != "crop_map"}
    members = {n: s.url for n, s in servers.items()} | {"crop_map": f"http://127.0.0.1:{free_port()}/sparql"}
    try:
        with pytest.raises(FederationError, match="crop_map"):
            federated_validation(Federation(members, timeout=5.0))
        # a partial answer (the crop map left out) would make every point negative: refused
        with pytest.raises(ValidationError, match="only in part.*crop_map"):
            federated_validation(Federation(members, timeout=5.0, partial=True))
    finally:
        for server in servers.values():
            server.stop()
    with pytest.raises(Exception, match="unknown source"):
        load_stores(files, plain=("nope",))
