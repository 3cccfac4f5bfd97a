"""What a processor is, and the pure validation of its inputs.

A processor (like a pygeoapi process) is a description — id, title, version,
inputs and outputs as JSON Schema — plus an ``execute`` function. Every
processor takes the same core inputs::

    {"region": {"bbox": [w, s, e, n]} | GeoJSON Polygon/MultiPolygon (EPSG:4326),
     "start": "YYYY-MM-DD", "end": "YYYY-MM-DD",
     "model": {"name": "seaice", "version": 3 | "champion"} | {"path": "/exported/model"},
     "mode": "embedded" | "remote", "serving_url": "http://...", "api_key": "...",
     "options": {...processor-specific...}}

:func:`validate_inputs` turns that raw mapping (the body of an OGC API
execution request, the state of the map panel, notebook parameters) into a
:class:`ProcessorInputs`, or raises :class:`InputError` naming the bad input.
It does no I/O: the check that a model exists is a function the caller passes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from workbench.processors.products import Product

__all__ = [
    "INPUT_NAMES",
    "MODES",
    "InputError",
    "ModelRef",
    "Processor",
    "ProcessorInputs",
    "ProgressCallback",
    "UnknownProcessorError",
    "core_inputs_schema",
    "get_processor",
    "list_processors",
    "validate_inputs",
]

#: Names accepted at the top level of the raw inputs.
INPUT_NAMES: tuple[str, ...] = ("region", "start", "end", "model", "mode", "serving_url", "api_key", "options")
MODES: tuple[str, ...] = ("embedded", "remote")
#: Modules holding one processor each (``PROCESSOR`` attribute), imported on first use.
PROCESSOR_MODULES: tuple[str, ...] = (
    "workbench.processors.sea_ice_chart",
    "workbench.processors.crop_type_map",
)

ProgressCallback = Callable[[float, str], None]
ModelLookup = Callable[["ModelRef"], Any]


class InputError(WorkbenchError, ValueError):
    """An input of a processor is missing or invalid.

    Attributes
    ----------
    input
        Name of the bad input (``"region"``, ``"start"``, ``"model"``, ``"options.stride"``...).
    reason
        What is wrong, without the input's name.
    """

    def __init__(self, input: str, reason: str) -> None:
        self.input = input
        self.reason = reason
        super().__init__(f"input {input!r}: {reason}")


class UnknownProcessorError(InputError, LookupError):
    """No processor has the requested id."""


@dataclass(frozen=True)
class ModelRef:
    """A model: a registered ``name`` with a ``version`` number or an ``alias`` (neither: the latest),
    or the ``path`` of a model exported with :func:`workbench.registry.export`."""

    name: str | None = None
    version: int | None = None
    alias: str | None = None
    path: str | None = None

    @property
    def label(self) -> str:
        """Short human form: ``seaice v3``, ``seaice@champion``, ``seaice (latest)`` or the path."""
        if self.path is not None:
            return self.path
        if self.version is not None:
            return f"{self.name} v{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return f"{self.name} (latest)"

    def to_raw(self) -> dict[str, Any]:
        """The raw (JSON) form accepted by :func:`validate_inputs`."""
        if self.path is not None:
            return {"path": self.path}
        raw: dict[str, Any] = {"name": self.name}
        if self.version is not None:
            raw["version"] = self.version
        elif self.alias is not None:
            raw["version"] = self.alias
        return raw


@dataclass(frozen=True)
class ProcessorInputs:
    """Validated inputs of one processor run (see :func:`validate_inputs`)."""

    region: BaseGeometry
    start: dt.date
    end: dt.date
    model: ModelRef
    mode: str = "embedded"
    serving_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the region."""
        w, s, e, n = self.region.bounds
        return (float(w), float(s), float(e), float(n))

    def to_raw(self, *, secrets: bool = False) -> dict[str, Any]:
        """JSON form (round-trips through :func:`validate_inputs`); the API key only when ``secrets``."""
        import shapely.geometry

        raw: dict[str, Any] = {
            "region": shapely.geometry.mapping(self.region),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "model": self.model.to_raw(),
            "mode": self.mode,
            "options": dict(self.options),
        }
        raw["region"] = _plain(raw["region"])
        if self.serving_url is not None:
            raw["serving_url"] = self.serving_url
        if secrets and self.api_key is not None:
            raw["api_key"] = self.api_key
        return raw


def _plain(value: Any) -> Any:
    """Tuples → lists, recursively (shapely's ``mapping`` gives tuples)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- validation (pure) ------------------------------------------------------------------------


def _did_you_mean(name: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown input {name!r}{hint} (known: {', '.join(known)})"


def _number(value: Any, what: str, input_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InputError(input_name, f"{what} must be a finite number, got {value!r}")
    return float(value)


def _check_lonlat(lon: float, lat: float, input_name: str) -> None:
    if not -180.0 <= lon <= 180.0:
        raise InputError(input_name, f"longitude {lon:g} is outside [-180, 180] (coordinates are EPSG:4326 lon, lat)")
    if not -90.0 <= lat <= 90.0:
        raise InputError(input_name, f"latitude {lat:g} is outside [-90, 90] (coordinates are EPSG:4326 lon, lat)")


def _bbox_region(bbox: Any) -> BaseGeometry:
    import shapely.geometry

    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise InputError("region", f"bbox must be [west, south, east, north] (4 numbers), got {bbox!r}")
    w, s, e, n = (_number(v, "every bbox value", "region") for v in bbox)
    _check_lonlat(w, s, "region")
    _check_lonlat(e, n, "region")
    if w >= e:
        raise InputError(
            "region", f"bbox west ({w:g}) must be less than east ({e:g}); the area is empty "
            "(a box across the antimeridian must be given as a MultiPolygon)"
        )
    if s >= n:
        raise InputError("region", f"bbox south ({s:g}) must be less than north ({n:g}); the area is empty")
    return shapely.geometry.box(w, s, e, n)


def _geojson_region(geometry: Mapping[str, Any]) -> BaseGeometry:
    import numpy as np
    import shapely
    import shapely.geometry
    import shapely.validation

    kind = geometry.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        raise InputError(
            "region", f"a GeoJSON region must be a Polygon or MultiPolygon, got type {kind!r} "
            "(or give {\"bbox\": [west, south, east, north]})"
        )
    if "coordinates" not in geometry:
        raise InputError("region", f"the GeoJSON {kind} has no 'coordinates'")
    try:
        geom = shapely.geometry.shape({"type": kind, "coordinates": geometry["coordinates"]})
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException) as exc:
        raise InputError("region", f"malformed GeoJSON {kind} coordinates: {exc}") from None
    coords = shapely.get_coordinates(geom)
    if len(coords) == 0 or geom.is_empty:
        raise InputError("region", f"the {kind} is empty")
    if not np.isfinite(coords).all():
        raise InputError("region", "every coordinate must be a finite number")
    for lon, lat in coords[[coords[:, 0].argmin(), coords[:, 0].argmax()]].tolist() + \
            coords[[coords[:, 1].argmin(), coords[:, 1].argmax()]].tolist():
        _check_lonlat(lon, lat, "region")
    if not geom.is_valid:
        raise InputError("region", f"the {kind} is not valid: {shapely.validation.explain_validity(geom)}")
    if not geom.area > 0:
        raise InputError("region", f"the {kind} has no area")
    return geom


def _region(raw: Any) -> BaseGeometry:
    from shapely.geometry.base import BaseGeometry

    if isinstance(raw, BaseGeometry):
        import shapely.geometry

        return _geojson_region(shapely.geometry.mapping(raw))
    if isinstance(raw, (list, tuple)):
        return _bbox_region(raw)
    if not isinstance(raw, Mapping):
        raise InputError(
            "region", f"expected {{\"bbox\": [w, s, e, n]}} or a GeoJSON Polygon/MultiPolygon, got {type(raw).__name__}"
        )
    if raw.get("type") == "Feature":
        geometry = raw.get("geometry")
        if not isinstance(geometry, Mapping):
            raise InputError("region", "the GeoJSON Feature has no geometry object")
        return _geojson_region(geometry)
    if "bbox" in raw and "type" not in raw:
        extra = sorted(set(raw) - {"bbox", "crs"})
        if extra:
            raise InputError("region", f"a bbox region takes only 'bbox', got also {extra}")
        crs = raw.get("crs")
        if crs not in (None, "EPSG:4326", "http://www.opengis.net/def/crs/OGC/1.3/CRS84"):
            raise InputError("region", f"the bbox must be in EPSG:4326 (lon, lat), got crs {crs!r}")
        return _bbox_region(raw["bbox"])
    if "type" in raw:
        return _geojson_region(raw)
    raise InputError("region", f"expected a 'bbox' or a GeoJSON 'type', got keys {sorted(raw)}")


def _date(raw: Any, name: str) -> dt.date:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if not isinstance(raw, str):
        raise InputError(name, f"expected a date 'YYYY-MM-DD', got {type(raw).__name__} {raw!r}")
    text = raw.strip()
    try:
        if len(text) > 10 and text[10] in "T ":
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(name, f"expected a date 'YYYY-MM-DD', got {raw!r}") from None


_MODEL_KEYS = ("name", "version", "path")


def _model(raw: Any) -> ModelRef:
    if isinstance(raw, ModelRef):
        raw = raw.to_raw()
    if isinstance(raw, str) and raw.strip():
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise InputError("model", f"expected {{\"name\": ..., \"version\": ...}} or {{\"path\": ...}}, got {raw!r}")
    for key in raw:
        if key not in _MODEL_KEYS:
            raise InputError("model", _did_you_mean(str(key), _MODEL_KEYS).replace("input", "model key", 1))
    if "path" in raw:
        if "name" in raw or "version" in raw:
            raise InputError("model", "give either a 'path' or a 'name' (with 'version'), not both")
        path = raw["path"]
        if not isinstance(path, str) or not path.strip():
            raise InputError("model", f"path must be a non-empty string, got {path!r}")
        return ModelRef(path=path)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError("model", f"name must be a registered model name (non-empty string), got {name!r}")
    name = name.strip()
    if any(c in name for c in "/\\'\"") or len(name) > 128:
        raise InputError("model", f"name {name!r} is not a model name (no slashes or quotes; give a 'path' for a file)")
    version = raw.get("version")
    if version is None or version == "" or version == "latest":
        return ModelRef(name=name)
    if isinstance(version, bool):
        raise InputError("model", f"version must be an integer >= 1 or an alias, got {version!r}")
    if isinstance(version, int) or (isinstance(version, str) and version.strip().isdigit()):
        number = int(version)
        if number < 1:
            raise InputError("model", f"version must be an integer >= 1, got {version!r}")
        return ModelRef(name=name, version=number)
    if isinstance(version, str):
        alias = version.strip()
        if not alias[:1].isalpha() or not all(c.isalnum() or c in "_-" for c in alias) or len(alias) > 64:
            raise InputError("model", f"version alias must look like 'champion', got {version!r}")
        return ModelRef(name=name, alias=alias)
    raise InputError("model", f"version must be an integer >= 1 or an alias, got {version!r}")


def _serving_url(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InputError("serving_url", f"expected an http(s) URL of the model server, got {raw!r}")
    url = raw.strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError("serving_url", f"expected an http(s) URL like http://127.0.0.1:8500, got {raw!r}")
    try:
        parsed.port
    except ValueError:
        raise InputError("serving_url", f"the port of {raw!r} is not a number in 0..65535") from None
    return url.rstrip("/")


def _check_options(options: Any, schema: Mapping[str, Any]) -> dict[str, Any]:
    import jsonschema

    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise InputError("options", f"expected an object of processor options, got {type(options).__name__}")
    known = tuple(schema.get("properties", {}))
    for key in options:
        if key not in known:
            msg = _did_you_mean(str(key), known) if known else f"unknown input {key!r} (this processor has no options)"
            raise InputError(f"options.{key}", msg.replace("unknown input", "unknown option", 1))
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(dict(options)), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path)
        raise InputError(f"options.{where}" if where else "options", error.message)
    defaults = {k: v["default"] for k, v in schema.get("properties", {}).items() if "default" in v}
    return {**defaults, **dict(options)}


def validate_inputs(
    processor_id: str,
    raw: Mapping[str, Any],
    *,
    model_lookup: ModelLookup | None = None,
    processor: Processor | None = None,
) -> ProcessorInputs:
    """Check the raw inputs of a processor run and return them typed.

    Parameters
    ----------
    processor_id
        ``sea_ice_chart`` or ``crop_type_map`` (see :func:`list_processors`).
    raw
        The raw inputs (see the module docstring); dates as ``YYYY-MM-DD``
        strings or :class:`datetime.date`, the region also as a shapely geometry.
    model_lookup
        Called with the :class:`ModelRef` when given; it raises (any
        :class:`~workbench.errors.WorkbenchError` or :class:`LookupError`)
        when the model does not exist. This is the only place I/O may enter.
    processor
        The processor description (default: :func:`get_processor` of ``processor_id``).

    Returns
    -------
    ProcessorInputs

    Raises
    ------
    UnknownProcessorError
        ``processor_id`` names no processor.
    InputError
        An input is missing or invalid; ``.input`` names it.
    """
    proc = processor or get_processor(processor_id)
    if not isinstance(raw, Mapping):
        raise InputError("inputs", f"expected an object of named inputs, got {type(raw).__name__}")
    for key in raw:
        if key not in INPUT_NAMES:
            raise InputError(str(key), _did_you_mean(str(key), INPUT_NAMES))
    for key in ("region", "start", "end", "model"):
        if raw.get(key) is None:
            raise InputError(key, "is required")
    region = _region(raw["region"])
    start = _date(raw["start"], "start")
    end = _date(raw["end"], "end")
    if end < start:
        raise InputError("end", f"the time range is empty: end {end.isoformat()} is before start {start.isoformat()}")
    model = _model(raw["model"])
    mode = raw.get("mode", "embedded")
    if mode is None:
        mode = "embedded"
    if mode not in MODES:
        close = difflib.get_close_matches(str(mode), MODES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError("mode", f"expected 'embedded' or 'remote', got {mode!r}{hint}")
    serving_url = raw.get("serving_url")
    api_key = raw.get("api_key")
    if mode == "remote":
        serving_url = _serving_url(serving_url)
        if not isinstance(api_key, str) or not api_key.strip():
            raise InputError("api_key", "remote mode needs the API key of the model server (scope serving:infer)")
        if model.path is not None:
            raise InputError("model", "remote mode needs a registered model name and version, not an exported path")
        api_key = api_key.strip()
    else:
        if serving_url not in (None, ""):
            serving_url = _serving_url(serving_url)
        else:
            serving_url = None
        if api_key is not None and not isinstance(api_key, str):
            raise InputError("api_key", f"expected a string, got {type(api_key).__name__}")
        api_key = api_key or None
    options = _check_options(raw.get("options"), proc.options_schema)
    if model_lookup is not None:
        try:
            model_lookup(model)
        except InputError:
            raise
        except (WorkbenchError, LookupError, OSError) as exc:
            raise InputError("model", f"model {model.label} not found: {exc}") from None
    return ProcessorInputs(
        region=region, start=start, end=end, model=model, mode=mode,
        serving_url=serving_url, api_key=api_key, options=options,
    )


# --- descriptions -----------------------------------------------------------------------------


def core_inputs_schema() -> dict[str, dict[str, Any]]:
    """JSON Schema of each core input (shared by every processor)."""
    position = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3}
    ring = {"type": "array", "items": position, "minItems": 4}
    polygon = {"type": "array", "items": ring, "minItems": 1}
    return {
        "region": {
            "title": "Region",
            "description": "Area of interest in EPSG:4326: a bbox [west, south, east, north] or a GeoJSON "
                           "Polygon/MultiPolygon (valid, non-empty).",
            "oneOf": [
                {"type": "object", "required": ["bbox"], "additionalProperties": False,
                 "properties": {"bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                                "crs": {"type": "string", "enum": ["EPSG:4326",
                                                                   "http://www.opengis.net/def/crs/OGC/1.3/CRS84"]}}},
                {"type": "object", "required": ["type", "coordinates"],
                 "properties": {"type": {"type": "string", "enum": ["Polygon"]}, "coordinates": polygon}},
                {"type": "object", "required": ["type", "coordinates"],
                 "properties": {"type": {"type": "string", "enum": ["MultiPolygon"]},
                                "coordinates": {"type": "array", "items": polygon, "minItems": 1}}},
            ],
        },
        "start": {"title": "Start date", "type": "string", "format": "date",
                  "description": "First day of the time range (YYYY-MM-DD)."},
        "end": {"title": "End date", "type": "string", "format": "date",
                "description": "Last day of the time range (YYYY-MM-DD), not before start."},
        "model": {
            "title": "Model",
            "description": "A registered model (name, and version number or alias; none: the latest) or the path "
                           "of an exported model.",
            "oneOf": [
                {"type": "object", "required": ["name"], "additionalProperties": False,
                 "properties": {"name": {"type": "string", "minLength": 1},
                                "version": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}}},
                {"type": "object", "required": ["path"], "additionalProperties": False,
                 "properties": {"path": {"type": "string", "minLength": 1}}},
            ],
        },
        "mode": {"title": "Mode", "type": "string", "enum": list(MODES), "default": "embedded",
                 "description": "embedded: the exported model runs in the processor; remote: inference requests "
                                "to the model server."},
        "serving_url": {"title": "Model server URL", "type": "string", "format": "uri",
                        "description": "Base URL of the model server (remote mode)."},
        "api_key": {"title": "Model server API key", "type": "string", "format": "password",
                    "description": "API key with scope serving:infer (remote mode)."},
    }


_REQUIRED = ("region", "start", "end", "model")


@dataclass(frozen=True)
class Processor:
    """A processor: its description and the function that runs it.

    Attributes
    ----------
    id, title, description, version
        What the OGC API lists.
    options_schema
        JSON Schema (``type: object``) of the processor-specific ``options``.
    outputs_schema
        JSON Schema of each output (name → schema).
    run
        ``run(inputs, *, out_dir, progress, client) -> Product``.
    keywords
        Keywords for the process description.
    """

    id: str
    title: str
    description: str
    version: str
    options_schema: dict[str, Any]
    outputs_schema: dict[str, dict[str, Any]]
    run: Callable[..., Product] = field(repr=False)
    keywords: tuple[str, ...] = ()

    @property
    def inputs_schema(self) -> dict[str, dict[str, Any]]:
        """JSON Schema of each input (name → schema), ``options`` included."""
        schemas = core_inputs_schema()
        schemas["options"] = {"title": "Options", **self.options_schema}
        return schemas

    @property
    def required_inputs(self) -> tuple[str, ...]:
        """Inputs that must be given."""
        return _REQUIRED

    def json_schema(self) -> dict[str, Any]:
        """One JSON Schema (``type: object``) of the whole raw inputs mapping."""
        return {
            "type": "object",
            "required": list(_REQUIRED),
            "additionalProperties": False,
            "properties": self.inputs_schema,
        }

    def validate(self, raw: Mapping[str, Any], *, model_lookup: ModelLookup | None = None) -> ProcessorInputs:
        """:func:`validate_inputs` for this processor."""
        return validate_inputs(self.id, raw, model_lookup=model_lookup, processor=self)

    def execute(
        self,
        inputs: ProcessorInputs,
        *,
        out_dir: str | Path,
        progress: ProgressCallback | None = None,
        client: Any = None,
    ) -> Product:
        """Run the processor on validated inputs; returns the :class:`~workbench.processors.products.Product`.

        Parameters
        ----------
        inputs
            From :func:`validate_inputs`.
        out_dir
            Folder receiving the product's files (created).
        progress
            Called with (fraction 0–1, message) as the run advances.
        client
            Dask client (default :func:`workbench.cluster.get_client`).
        """
        if not isinstance(inputs, ProcessorInputs):
            raise InputError("inputs", f"expected ProcessorInputs (from validate_inputs), got {type(inputs).__name__}")
        return self.run(inputs, out_dir=Path(out_dir), progress=progress, client=client)

    def with_run(self, run: Callable[..., Product]) -> Processor:
        """A copy running ``run`` instead (e.g. a wrapper adding logging)."""
        return dataclasses.replace(self, run=run)


_registry: dict[str, Processor] = {}


def _load() -> dict[str, Processor]:
    if not _registry:
        for name in PROCESSOR_MODULES:
            proc = importlib.import_module(name).PROCESSOR
            _registry[proc.id] = proc
    return _registry


def list_processors() -> list[Processor]:
    """Every processor, sorted by id."""
    return [p for _, p in sorted(_load().items())]


def get_processor(processor_id: str) -> Processor:
    """The processor ``processor_id``; :class:`UnknownProcessorError` (with a "did you mean") if none."""
    procs = _load()
    if not isinstance(processor_id, str) or processor_id not in procs:
        known = tuple(sorted(procs))
        close = difflib.get_close_matches(str(processor_id), known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownProcessorError("processor", f"no processor {processor_id!r}{hint} (known: {', '.join(known)})")
    return procs[processor_id]
