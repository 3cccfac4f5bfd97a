"""Pure validation of processor inputs: every bad input is refused with an error naming it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import shapely.geometry

from workbench.errors import WorkbenchError
from workbench.processors import (
    InputError,
    ModelRef,
    UnknownProcessorError,
    get_processor,
    list_processors,
    validate_inputs,
)

GOOD: dict[str, Any] = {
    "region": {"bbox": [12.0, 42.0, 12.5, 42.5]},
    "start": "2021-12-01",
    "end": "2021-12-31",
    "model": {"name": "seaice_adhoc", "version": 2},
}


def _with(**changes: Any) -> dict[str, Any]:
    raw = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def test_processors_are_listed_and_described() -> None:
    ids = [p.id for p in list_processors()]
    assert ids == ["crop_type_map", "sea_ice_chart"]
    for proc in list_processors():
        schema = proc.inputs_schema
        assert {"region", "start", "end", "model", "mode", "serving_url", "api_key", "options"} <= set(schema)
        assert proc.options_schema["type"] == "object"
        assert "product" in proc.outputs_schema
        assert proc.version and proc.title and proc.description


def test_unknown_processor_suggests_the_close_one() -> None:
    with pytest.raises(UnknownProcessorError, match="did you mean 'sea_ice_chart'"):
        get_processor("sea_ice_chrt")
    with pytest.raises(UnknownProcessorError) as info:
        validate_inputs("nope", GOOD)
    assert info.value.input == "processor"


def test_good_inputs_are_typed_with_defaults() -> None:
    inputs = validate_inputs("sea_ice_chart", GOOD)
    assert inputs.start == dt.date(2021, 12, 1) and inputs.end == dt.date(2021, 12, 31)
    assert inputs.region.equals(shapely.geometry.box(12.0, 42.0, 12.5, 42.5))
    assert inputs.model == ModelRef(name="seaice_adhoc", version=2)
    assert inputs.mode == "embedded" and inputs.api_key is None
    assert inputs.options["batch_size"] == 256 and inputs.options["collection"] == "sentinel-1-grd"
    assert inputs.bbox == (12.0, 42.0, 12.5, 42.5)
    again = validate_inputs("sea_ice_chart", inputs.to_raw())
    assert again == inputs


def test_other_accepted_forms() -> None:
    polygon = {"type": "Polygon", "coordinates": [[[12, 42], [12.5, 42], [12.5, 42.5], [12, 42]]]}
    feature = {"type": "Feature", "properties": {}, "geometry": polygon}
    multi = {"type": "MultiPolygon", "coordinates": [polygon["coordinates"]]}
    for region in (polygon, feature, multi, [12, 42, 12.5, 42.5], shapely.geometry.box(12, 42, 13, 43)):
        assert validate_inputs("crop_type_map", _with(region=region)).region.area > 0
    alias = validate_inputs("sea_ice_chart", _with(model={"name": "m", "version": "champion"}))
    assert alias.model == ModelRef(name="m", alias="champion")
    latest = validate_inputs("sea_ice_chart", _with(model="m"))
    assert latest.model == ModelRef(name="m")
    path = validate_inputs("sea_ice_chart", _with(model={"path": "/tmp/exported"}))
    assert path.model.path == "/tmp/exported"
    remote = validate_inputs("sea_ice_chart", _with(mode="remote", serving_url="http://127.0.0.1:8500/",
                                                   api_key="k" * 20))
    assert remote.serving_url == "http://127.0.0.1:8500" and remote.api_key == "k" * 20
    assert "api_key" not in remote.to_raw() and remote.to_raw(secrets=True)["api_key"] == "k" * 20
    same_day = validate_inputs("sea_ice_chart", _with(start=dt.date(2021, 1, 1), end="2021-01-01T10:00:00Z"))
    assert same_day.start == same_day.end


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("inputs", ["not", "a", "mapping"], "object of named inputs"),  # type: ignore[list-item]
    ("regoin", _with(regoin=GOOD["region"]), "did you mean 'region'"),
    ("region", _with(region=...), "required"),
    ("region", _with(region={"bbox": [12, 42, 12.5]}), "4 numbers"),
    ("region", _with(region={"bbox": [12, 42, "x", 43]}), "finite number"),
    ("region", _with(region={"bbox": [12, 42, float("nan"), 43]}), "finite number"),
    ("region", _with(region={"bbox": [-200, 42, 12.5, 42.5]}), r"outside \[-180, 180\]"),
    ("region", _with(region={"bbox": [12, 42, 12.5, 95]}), r"outside \[-90, 90\]"),
    ("region", _with(region={"bbox": [12.5, 42, 12.0, 42.5]}), "west .* less than east"),
    ("region", _with(region={"bbox": [12, 42, 12, 42.5]}), "empty"),
    ("region", _with(region={"bbox": [12, 42.5, 12.5, 42.5]}), "south .* less than north"),
    ("region", _with(region={"bbox": [12, 42, 13, 43], "crs": "EPSG:3857"}), "EPSG:4326"),
    ("region", _with(region={"type": "Point", "coordinates": [12, 42]}), "Polygon or MultiPolygon"),
    ("region", _with(region={"type": "Polygon"}), "no 'coordinates'"),
    ("region", _with(region={"type": "Polygon", "coordinates": [[[12, 42], [13]]]}), "malformed"),
    ("region", _with(region={"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}),
     "not valid: Self-intersection"),
    ("region", _with(region={"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]}),
     "not valid|no area"),
    ("region", _with(region={"type": "Polygon", "coordinates": [[[170, 0], [190, 0], [190, 5], [170, 0]]]}),
     r"outside \[-180, 180\]"),
    ("region", _with(region="somewhere"), "expected"),
    ("region", _with(region={"foo": 1}), "expected a 'bbox'"),
    ("start", _with(start="2021-13-01"), "YYYY-MM-DD"),
    ("start", _with(start=20211201), "YYYY-MM-DD"),
    ("end", _with(end=...), "required"),
    ("end", _with(start="2021-12-31", end="2021-12-01"), "time range is empty"),
    ("model", _with(model=...), "required"),
    ("model", _with(model={"nmae": "x"}), "did you mean 'name'"),
    ("model", _with(model={"name": ""}), "registered model name"),
    ("model", _with(model={"name": "a/b"}), "not a model name"),
    ("model", _with(model={"name": "m", "version": 0}), ">= 1"),
    ("model", _with(model={"name": "m", "version": True}), "integer >= 1 or an alias"),
    ("model", _with(model={"name": "m", "version": "v 1!"}), "alias"),
    ("model", _with(model={"name": "m", "path": "/x"}), "not both"),
    ("model", _with(model={"path": ""}), "non-empty"),
    ("mode", _with(mode="remot"), "did you mean 'remote'"),
    ("serving_url", _with(mode="remote", api_key="k"), "URL of the model server"),
    ("serving_url", _with(mode="remote", serving_url="ftp://x", api_key="k"), "http"),
    ("serving_url", _with(mode="remote", serving_url="http://h:99999", api_key="k"), "port"),
    ("api_key", _with(mode="remote", serving_url="http://127.0.0.1:1"), "API key"),
    ("api_key", _with(mode="remote", serving_url="http://127.0.0.1:1", api_key="  "), "API key"),
    ("model", _with(mode="remote", serving_url="http://127.0.0.1:1", api_key="k", model={"path": "/m"}),
     "registered model name"),
    ("options", _with(options=[1]), "object of processor options"),
    ("options.strid", _with(options={"strid": 2}), "did you mean 'stride'"),
    ("options.stride", _with(options={"stride": -1}), "minimum"),
    ("options.batch_size", _with(options={"batch_size": "many"}), "not of type 'integer'"),
    ("options.mask_land", _with(options={"mask_land": "yes"}), "boolean"),
]


@pytest.mark.parametrize("name, raw, message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_refused_naming_it(name: str, raw: Any, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        validate_inputs("sea_ice_chart", raw)
    assert info.value.input == name
    assert isinstance(info.value, WorkbenchError) and isinstance(info.value, ValueError)
    assert repr(name) in str(info.value)


def test_crop_options_are_checked_by_their_own_schema() -> None:
    with pytest.raises(InputError) as info:
        validate_inputs("crop_type_map", _with(options={"stride": 2}))
    assert info.value.input == "options.stride"
    ok = validate_inputs("crop_type_map", _with(options={"agronomic_year": 2023}))
    assert ok.options["agronomic_year"] == 2023 and ok.options["collection"] == "sentinel-2-l2a"


def test_model_lookup_is_injected_and_its_failure_names_the_model() -> None:
    seen = []

    def lookup(ref: ModelRef) -> None:
        seen.append(ref)
        if ref.name == "missing":
            raise LookupError("not registered")

    validate_inputs("sea_ice_chart", GOOD, model_lookup=lookup)
    assert seen == [ModelRef(name="seaice_adhoc", version=2)]
    with pytest.raises(InputError, match="model missing v3 not found: not registered") as info:
        validate_inputs("sea_ice_chart", _with(model={"name": "missing", "version": 3}), model_lookup=lookup)
    assert info.value.input == "model"


def test_whole_inputs_json_schema_accepts_what_validation_accepts() -> None:
    import jsonschema

    proc = get_processor("sea_ice_chart")
    jsonschema.validate(GOOD, proc.json_schema())
    jsonschema.validate(validate_inputs("sea_ice_chart", GOOD).to_raw(), proc.json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_with(regoin=1), proc.json_schema())
